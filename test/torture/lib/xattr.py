#!/usr/bin/env python3
# Tiny xattr helper for the torture tests (node:fs has no xattr calls).
#   xattr.py set PATH NAME HEXVALUE [create|replace]   prints "ok" or the errno name
#   xattr.py remove PATH NAME                          prints "ok" or the errno name
#   xattr.py get PATH NAME                             prints "ok:HEX" or the errno name
#   xattr.py dump ROOT                                 prints JSON {relpath: {name: hex}} (no symlink following)
import errno, json, os, sys

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))

cmd = sys.argv[1]
try:
    if cmd == 'set':
        flags = {'create': os.XATTR_CREATE, 'replace': os.XATTR_REPLACE}.get(sys.argv[5] if len(sys.argv) > 5 else '', 0)
        os.setxattr(sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4]), flags)
        print('ok')
    elif cmd == 'remove':
        os.removexattr(sys.argv[2], sys.argv[3])
        print('ok')
    elif cmd == 'get':
        print('ok:' + os.getxattr(sys.argv[2], sys.argv[3]).hex())
    elif cmd == 'dump':
        root = sys.argv[2]
        out = {}
        for d, dirs, files in os.walk(root):
            for n in dirs + files:
                p = os.path.join(d, n)
                try:
                    names = sorted(os.listxattr(p, follow_symlinks=False))
                except OSError as e:
                    out[os.path.relpath(p, root)] = {'!': err(e)}
                    continue
                if names:
                    out[os.path.relpath(p, root)] = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in names}
        print(json.dumps(out, sort_keys=True))
except OSError as e:
    print(err(e))
