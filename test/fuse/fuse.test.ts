// End-to-end tests of the libfuse3 binding + adapter: a MemFs is mounted on a temp dir and driven
// through node:fs (async only: a sync call on our own mount would block the thread that has to
// answer it) and through real tools in child processes.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { constants as C, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountFs, type FuseMount } from '../../src/fuse/index.ts';
import { MemFs } from './memfs.ts';

const env = { ...process.env, TZ: 'UTC', LC_ALL: 'C' };
const SLOW_MS = 20_000;
const INO_BASE = 2 ** 40 + 7;

function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}
const sh = (script: string) => run('bash', ['-euo', 'pipefail', '-c', script]);

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, code);
    return true;
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms))),
  ]);
}

/** Last-resort cleanup so a failed run never leaves a stale mount behind. */
async function forceUnmount(mnt: string): Promise<void> {
  await run('fusermount3', ['-uz', mnt]).catch(() => undefined);
}

describe('fuse adapter over MemFs', () => {
  let tmp: string;
  let mnt: string;
  let memfs: MemFs;
  let m: FuseMount | undefined;
  let unmounted = 0;
  let slow: Promise<{ ms: number; out: string }> | undefined;
  let slowChild: ReturnType<typeof spawn> | undefined;
  const p = (...parts: string[]) => path.join(mnt, ...parts);

  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'hoardfs-fuse-'));
    mnt = path.join(tmp, 'mnt');
    await fsp.mkdir(mnt);
    memfs = new MemFs({ inoBase: INO_BASE, slowMs: SLOW_MS, entryTimeout: 1, attrTimeout: 0 });
    m = await mountFs(memfs, mnt, {
      options: ['fsname=hoardfs-test', 'subtype=hoardfs', 'default_permissions'],
      attrTimeout: 0, // every stat reaches getattr, so the throughput test measures the adapter
      onUnmount: () => unmounted++,
    });
    // Start the 20 s read first; every other test runs while it is in flight.
    await fsp.writeFile(p('slow-file'), 'patience');
    slow = new Promise((resolve, reject) => {
      const t0 = Date.now();
      const child = spawn('cat', [p('slow-file')], { env });
      slowChild = child;
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve({ ms: Date.now() - t0, out }) : reject(new Error(`cat exited ${code}`))));
    });
    slow.catch(() => undefined); // awaited (and asserted) by its own test
  });

  after(async () => {
    slowChild?.kill('SIGKILL');
    if (m) {
      try {
        await withTimeout(m.unmount(), 5000, 'unmount');
      } catch (e) {
        console.error(String(e));
        await forceUnmount(mnt);
      }
    }
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  });

  it('reads back what was written, through node:fs and cp/cat', async () => {
    await fsp.writeFile(p('hello.txt'), 'hello world\n');
    assert.equal(await fsp.readFile(p('hello.txt'), 'utf8'), 'hello world\n');
    const { stdout } = await sh(`cat ${p('hello.txt')}`);
    assert.equal(stdout, 'hello world\n');
    // A multi-MiB binary with an odd size, copied in and compared byte for byte.
    const src = '/usr/bin/bash';
    await sh(`cp ${src} ${p('bash.copy')} && cmp ${src} ${p('bash.copy')}`);
    const [a, b] = await Promise.all([fsp.readFile(src), fsp.readFile(p('bash.copy'))]);
    assert.ok(a.equals(b));
    // O_APPEND and O_TRUNC
    await fsp.appendFile(p('hello.txt'), 'again\n');
    assert.equal(await fsp.readFile(p('hello.txt'), 'utf8'), 'hello world\nagain\n');
    await fsp.writeFile(p('hello.txt'), 'x');
    assert.equal(await fsp.readFile(p('hello.txt'), 'utf8'), 'x');
  });

  it('reports errnos: ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, ENAMETOOLONG', async () => {
    await rejectsWith(fsp.stat(p('missing')), 'ENOENT');
    await rejectsWith(fsp.readFile(p('missing')), 'ENOENT');
    await fsp.mkdir(p('d1'));
    await rejectsWith(fsp.mkdir(p('d1')), 'EEXIST');
    await fsp.writeFile(p('d1', 'f'), '1');
    await rejectsWith(fsp.rmdir(p('d1')), 'ENOTEMPTY');
    await rejectsWith(fsp.readdir(p('d1', 'f')), 'ENOTDIR');
    await rejectsWith(fsp.open(p('d1', 'f'), 'wx'), 'EEXIST');
    // The kernel does not enforce NAME_MAX for FUSE (its own limit is 1024 bytes, or PATH_MAX-1
    // on newer kernels), so a 256-byte name reaches the filesystem, which must reject it itself.
    const before = memfs.stats.nameTooLong;
    await rejectsWith(fsp.writeFile(p('n'.repeat(256)), ''), 'ENAMETOOLONG');
    assert.ok(memfs.stats.nameTooLong > before, '256-byte name was checked by MemFs, not the kernel');
    await fsp.writeFile(p('n'.repeat(255)), ''); // 255 is fine
    const mid = memfs.stats.nameTooLong;
    await rejectsWith(fsp.stat(p('n'.repeat(1025))), 'ENAMETOOLONG');
    console.log(`  1025-byte name rejected by ${memfs.stats.nameTooLong > mid ? 'MemFs' : 'the kernel'}`);
  });

  it('keeps nanosecond timestamps (utimensat, stat -c %y, touch)', async () => {
    const f = p('times');
    await fsp.writeFile(f, '');
    await sh(`touch -d '2001-02-03 04:05:06.123456789' ${f}`);
    const { stdout } = await sh(`stat -c '%y|%x' ${f}`);
    assert.equal(stdout.trim(), '2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000');
    const st = await fsp.stat(f, { bigint: true });
    assert.equal(st.mtimeNs, 981173106123456789n);
    // Pre-1970 times survive the sec/nsec split.
    await sh(`touch -m -d '1969-12-31 23:59:59.5' ${f}`);
    assert.equal((await fsp.stat(f, { bigint: true })).mtimeNs, -500_000_000n);
    // utimensat(NULL) arrives as MTIME_NOW/ATIME_NOW.
    const t0 = BigInt(Date.now()) * 1_000_000n;
    await sh(`touch ${f}`);
    const st2 = await fsp.stat(f, { bigint: true });
    assert.ok(st2.mtimeNs >= t0 - 1_000_000_000n && st2.mtimeNs < t0 + 10_000_000_000n, `mtime now: ${st2.mtimeNs}`);
    assert.ok(st2.ctimeNs >= st2.mtimeNs - 1_000_000_000n);
  });

  it('uses 64-bit inode numbers', async () => {
    await fsp.writeFile(p('ino'), '');
    const st = await fsp.stat(p('ino'), { bigint: true });
    assert.ok(st.ino > 2n ** 32n, `ino ${st.ino}`);
    assert.ok(st.ino >= BigInt(INO_BASE));
    const { stdout } = await sh(`stat -c %i ${p('ino')}`);
    assert.equal(BigInt(stdout.trim()), st.ino);
    const ls = await sh(`ls -i ${p('ino')}`);
    assert.equal(BigInt(ls.stdout.trim().split(' ')[0]!), st.ino);
  });

  it('handles symlinks, hard links and setattr (chmod, chown, truncate)', async () => {
    await fsp.writeFile(p('target'), 'data');
    await sh(`ln -s target ${p('sym')} && ln ${p('target')} ${p('hard')}`);
    assert.equal(await fsp.readlink(p('sym')), 'target');
    assert.equal(await fsp.readFile(p('sym'), 'utf8'), 'data');
    const [a, b] = await Promise.all([fsp.stat(p('target')), fsp.stat(p('hard'))]);
    assert.equal(a.ino, b.ino);
    assert.equal(a.nlink, 2);
    assert.ok((await fsp.lstat(p('sym'))).isSymbolicLink());
    await sh(`chmod 4751 ${p('target')} && chown 123:456 ${p('target')} && truncate -s 2 ${p('target')}`);
    const st = await fsp.stat(p('hard'));
    assert.equal(st.mode & 0o7777, 0o751); // chown as root clears setuid, as on any fs
    assert.equal(st.mode & C.S_IFMT, C.S_IFREG);
    assert.deepEqual([st.uid, st.gid, st.size], [123, 456, 2]);
    assert.equal(await fsp.readFile(p('hard'), 'utf8'), 'da');
    await fsp.unlink(p('target'));
    assert.equal((await fsp.stat(p('hard'))).nlink, 1);
    await rejectsWith(fsp.stat(p('sym')), 'ENOENT'); // dangling now
  });

  it('supports xattrs, including size probes and ERANGE', async () => {
    const f = p('xattr');
    await fsp.writeFile(f, '');
    await sh(`setfattr -n user.color -v blue ${f} && setfattr -n user.empty ${f}`);
    const { stdout } = await sh(`getfattr --only-values -n user.color ${f}`);
    assert.equal(stdout, 'blue');
    const dump = await sh(`getfattr -d ${f}`);
    assert.match(dump.stdout, /user\.color="blue"/);
    assert.match(dump.stdout, /user\.empty/);
    // CPython first tries a 128-byte buffer and retries bigger only on ERANGE.
    const py = await run('python3', ['-c', `
import os, sys
f = sys.argv[1]
os.setxattr(f, 'user.big', b'v' * 1000)
assert os.getxattr(f, 'user.big') == b'v' * 1000
os.setxattr(f, 'user.' + 'k' * 200, b'1')
names = os.listxattr(f)
assert len(names) == 4, names
try:
    os.setxattr(f, 'user.big', b'x', os.XATTR_CREATE); print('no EEXIST')
except FileExistsError: pass
try:
    os.setxattr(f, 'user.nope', b'x', os.XATTR_REPLACE); print('no ENODATA')
except OSError as e: assert e.errno == 61, e
os.removexattr(f, 'user.big')
try:
    os.getxattr(f, 'user.big'); print('still there')
except OSError as e: assert e.errno == 61, e
print('ok')
`, f]);
    assert.equal(py.stdout.trim(), 'ok');
  });

  it('renames files and directories (plain, replacing, and RENAME_NOREPLACE via mv -n)', async () => {
    await fsp.mkdir(p('r'));
    await fsp.writeFile(p('r', 'a'), 'A');
    await fsp.writeFile(p('r', 'b'), 'B');
    await fsp.rename(p('r', 'a'), p('r', 'c'));
    await rejectsWith(fsp.stat(p('r', 'a')), 'ENOENT');
    await fsp.rename(p('r', 'c'), p('r', 'b')); // replaces
    assert.equal(await fsp.readFile(p('r', 'b'), 'utf8'), 'A');
    await fsp.writeFile(p('r', 'd'), 'D');
    await sh(`mv -n ${p('r', 'd')} ${p('r', 'b')}`).catch(() => undefined);
    assert.equal(await fsp.readFile(p('r', 'b'), 'utf8'), 'A');
    await fsp.mkdir(p('r', 'sub'));
    await fsp.writeFile(p('r', 'sub', 'x'), 'X');
    await fsp.rename(p('r', 'sub'), p('moved'));
    assert.equal(await fsp.readFile(p('moved', 'x'), 'utf8'), 'X');
    await fsp.mkdir(p('r', 'full'));
    await fsp.writeFile(p('r', 'full', 'y'), 'Y');
    await rejectsWith(fsp.rename(p('moved'), p('r', 'full')), 'ENOTEMPTY');
  });

  it('keeps an unlinked file readable and writable while it is open', async () => {
    const f = p('ghost');
    const fh = await fsp.open(f, 'w+');
    try {
      await fh.write('boo', 0);
      await fsp.unlink(f);
      await rejectsWith(fsp.stat(f), 'ENOENT');
      await fh.write('!', 3);
      const buf = Buffer.alloc(8);
      const { bytesRead } = await fh.read(buf, 0, 8, 0);
      assert.equal(buf.subarray(0, bytesRead).toString(), 'boo!');
      assert.equal((await fh.stat()).nlink, 0);
    } finally {
      await fh.close();
    }
  });

  it('delivers 1 MiB writes and read-ahead as single 1 MiB requests', async () => {
    const n = memfs.stats.writes;
    await sh(`dd if=/dev/zero of=${p('big1m')} bs=1M count=8 status=none`);
    const sizes = [...memfs.stats.writeSizes.entries()].filter(([s]) => s >= 1 << 16);
    console.log(`  largest write request: ${memfs.stats.maxWrite} bytes; negotiated ${JSON.stringify(m!.info())}`);
    assert.equal(memfs.stats.maxWrite, 1 << 20);
    assert.equal(memfs.stats.writes - n, 8, `8 writes expected, sizes ${JSON.stringify(sizes)}`);
    // Sequential reads: with the bdi read-ahead raised to 1 MiB, so are the read requests.
    await fsp.writeFile('/proc/sys/vm/drop_caches', '1').catch(() => undefined);
    await sh(`dd if=${p('big1m')} of=/dev/null bs=1M status=none`);
    console.log(`  largest read request: ${memfs.stats.maxRead} bytes`);
    assert.equal(memfs.stats.maxRead, 1 << 20);
    // Without noSecurityCapability the kernel really does ask before each write.
    assert.ok(memfs.stats.securityCapability >= 8);
  });

  it('handles sparse files larger than 4 GiB', async () => {
    const f = p('sparse');
    const off = 5 * 2 ** 30;
    const fh = await fsp.open(f, 'w+');
    try {
      await fh.write(Buffer.from('tail'), 0, 4, off);
      assert.equal((await fh.stat()).size, off + 4);
      const buf = Buffer.alloc(6);
      const { bytesRead } = await fh.read(buf, 0, 6, off - 2);
      assert.equal(bytesRead, 6);
      assert.deepEqual([...buf], [0, 0, ...Buffer.from('tail')]);
    } finally {
      await fh.close();
    }
    const { stdout } = await sh(`stat -c '%s %b' ${f}; dd if=${f} bs=1 skip=${off} count=4 status=none`);
    const [line1, line2] = stdout.split('\n');
    assert.equal(line1!.split(' ')[0], String(off + 4));
    assert.ok(Number(line1!.split(' ')[1]) < 1024, 'holes cost no blocks');
    assert.equal(line2, 'tail');
    await sh(`truncate -s 6G ${f} && fallocate -l 7G ${f}`);
    assert.equal((await fsp.stat(f)).size, 7 * 2 ** 30);
  });

  it('lists large directories across several readdir calls and forgets inodes', async () => {
    await fsp.mkdir(p('many'));
    // ~128-byte dirents: more than one kernel readdir buffer (32 KiB on recent kernels), and far
    // fewer than the maxEntries MemFs is offered, so the adapter must drop what does not fit.
    const long = 'file-with-a-long-name-' + 'x'.repeat(80) + '-';
    await sh(`cd ${p('many')} && for i in $(seq -w 1 400); do : > "${long}$i"; done`);
    const calls = memfs.stats.calls.get('readdir') ?? 0;
    const names = await fsp.readdir(p('many'));
    assert.equal(names.length, 400);
    assert.deepEqual(names.sort(), Array.from({ length: 400 }, (_, i) => `${long}${String(i + 1).padStart(3, '0')}`));
    const rd = (memfs.stats.calls.get('readdir') ?? 0) - calls;
    console.log(`  readdir calls for 400 entries: ${rd}; largest maxEntries asked: ${memfs.stats.readdirMaxEntries}`);
    assert.ok(rd >= 3, 'paged over several calls');
    const { stdout } = await sh(`ls -f ${p('many')} | wc -l; ls -la ${p('many')} > /dev/null`);
    assert.equal(stdout.split('\n')[0], '402'); // with . and ..
    // Dropping the dentry cache makes the kernel send FORGET(s) for these inodes.
    const forgets = memfs.stats.calls.get('forget') ?? 0;
    await fsp.writeFile('/proc/sys/vm/drop_caches', '2').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    console.log(`  forgets after drop_caches: ${(memfs.stats.calls.get('forget') ?? 0) - forgets}`);
  });

  it('answers statfs', async () => {
    const { stdout } = await sh(`stat -f -c '%S %b %l' ${mnt}`);
    assert.equal(stdout.trim(), `4096 ${1 << 24} 255`);
  });

  it('serves > 8000 getattr/s', async () => {
    await fsp.writeFile(p('statme'), '');
    const before = memfs.stats.calls.get('getattr') ?? 0;
    // Four client threads (os.stat drops the GIL), like a parallel `ls -l` or build would issue.
    const { stdout } = await run('python3', ['-c', `
import os, sys, threading, time
f = sys.argv[1]; n = [0] * 4
def work(i):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for _ in range(50): os.stat(f)
        n[i] += 50
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
t0 = time.perf_counter()
for t in ts: t.start()
for t in ts: t.join()
print(sum(n), time.perf_counter() - t0)
`, p('statme')]);
    const [stats, secs] = stdout.trim().split(' ').map(Number) as [number, number];
    const reached = (memfs.stats.calls.get('getattr') ?? 0) - before;
    // With attr_timeout 0 each stat() is a getattr of the file plus one of the root directory
    // (default_permissions re-validates the search permission on the way).
    const rate = reached / secs;
    console.log(`  ${(stats / secs).toFixed(0)} stat()/s from 4 threads = ${rate.toFixed(0)} getattr/s reaching MemFs`);
    assert.ok(reached >= stats, 'attr_timeout 0: each stat is at least one getattr round trip');
    assert.ok(rate > 8000, `${rate}/s`);
  });

  it('does not time out an operation that takes 20 s', { timeout: SLOW_MS + 15_000 }, async () => {
    const r = await slow!;
    assert.equal(r.out, 'patience');
    assert.ok(r.ms >= SLOW_MS - 500, `took ${r.ms} ms`);
    console.log(`  slow read answered after ${r.ms} ms`);
  });

  it('unmount() ends the session and fires onUnmount', async () => {
    await withTimeout(m!.unmount(), 5000, 'unmount');
    assert.equal(unmounted, 1);
    assert.ok(memfs.destroyed);
    const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
    assert.ok(!mounts.includes(` ${mnt} `));
    m = undefined;
  });
});

describe('second mount: external unmount and in-C security.capability', () => {
  let tmp: string;
  let mnt: string;
  let m: FuseMount | undefined;
  before(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'hoardfs-fuse2-'));
    mnt = path.join(tmp, 'mnt');
    await fsp.mkdir(mnt);
  });
  after(async () => {
    if (m) await forceUnmount(mnt);
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  });

  it('fires onUnmount after `fusermount3 -u`', async () => {
    const memfs = new MemFs();
    let fired!: () => void;
    const unmounted = new Promise<void>((r) => (fired = r));
    m = await mountFs(memfs, mnt, { options: ['fsname=hoardfs-test2'], noSecurityCapability: true, writebackCache: true, onUnmount: () => fired() });
    await sh(`dd if=/dev/urandom of=${mnt}/f bs=64k count=16 status=none && sync ${mnt}/f && cmp <(head -c 1048576 ${mnt}/f) ${mnt}/f`);
    assert.equal(memfs.stats.securityCapability, 0, 'answered in C');
    assert.ok(memfs.stats.writes > 0);
    assert.ok(m.info().want & (1 << 16), 'writeback cache negotiated');
    await run('fusermount3', ['-u', mnt]);
    await withTimeout(unmounted, 5000, 'onUnmount');
    await withTimeout(m.ended, 1000, 'ended');
    assert.ok(memfs.destroyed);
    m = undefined;
  });

  it('survives the connection being aborted while a request is still in JS (umount -f)', async () => {
    const mnt3 = path.join(tmp, 'mnt3');
    await fsp.mkdir(mnt3);
    const memfs = new MemFs({ slowMs: 1500 });
    let fired!: () => void;
    const unmounted = new Promise<void>((r) => (fired = r));
    const m3 = await mountFs(memfs, mnt3, { onUnmount: () => fired() });
    try {
      await fsp.writeFile(path.join(mnt3, 'slow'), 'zzz');
      const cat = run('cat', [path.join(mnt3, 'slow')]).then(
        () => 'read ok',
        (e: { stderr?: string }) => String(e.stderr),
      );
      await new Promise((r) => setTimeout(r, 300));
      // MNT_FORCE makes FUSE abort the connection; the read is still sleeping in MemFs.
      await run('umount', ['-f', mnt3]).catch(() => undefined);
      await withTimeout(unmounted, 3000, 'onUnmount after abort');
      assert.equal(m3.info().outstanding, 1, 'the slow read was still owed when the session ended');
      assert.match(await cat, /Software caused connection abort|not connected/);
      // The late reply goes to a closed session; the process must survive it.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(memfs.stats.calls.get('read'), 1);
    } finally {
      await forceUnmount(mnt3);
    }
  });

  it('borrowWrites: payloads are views of one receive buffer, and a filesystem that copies stores the right bytes', async () => {
    const mnt4 = path.join(tmp, 'mnt4');
    await fsp.mkdir(mnt4);
    const memfs = new MemFs();
    const seen = new Set<ArrayBufferLike>();
    let plainBuffers = 0;
    const write = memfs.write.bind(memfs);
    memfs.write = (ino, fh, data, offset, flags) => {
      seen.add(data.buffer);
      if (data.buffer.byteLength === data.length) plainBuffers++;
      return write(ino, fh, data, offset, flags); // copies before it first awaits
    };
    const m4 = await mountFs(memfs, mnt4, { borrowWrites: true });
    try {
      await sh(`head -c 5000000 /dev/urandom > ${tmp}/src && dd if=${tmp}/src of=${mnt4}/f bs=1M status=none && dd if=${tmp}/src of=${mnt4}/g bs=4k status=none`);
      await sh(`cmp ${tmp}/src ${mnt4}/f && cmp ${tmp}/src ${mnt4}/g`);
      assert.ok(memfs.stats.writes > 1200, `${memfs.stats.writes} writes`);
      assert.equal(seen.size, 1, 'every payload is a view of the same receive buffer');
      assert.equal(plainBuffers, 0);
    } finally {
      await withTimeout(m4.unmount(), 5000, 'unmount').catch(() => forceUnmount(mnt4));
    }
  });

  it('rejects a bad mount cleanly', async () => {
    await assert.rejects(mountFs(new MemFs(), path.join(tmp, 'does-not-exist'), {}), /mounting/);
    await assert.rejects(mountFs(new MemFs(), tmp, { options: ['no_such_option_xyz'] }), /mounting/);
  });
});
