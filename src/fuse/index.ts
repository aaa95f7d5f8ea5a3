// FUSE adapter: drives an FsOps implementation from the libfuse3 low-level binding.
//
// Every kernel request arrives as one synchronous dispatch(op, req, ...) call with its numeric
// arguments in the shared scratch array A. The adapter reads them immediately, starts the FsOps
// promise and returns; the reply is sent whenever the promise settles. Exactly one reply is sent
// per request (run() funnels both outcomes and reply-packing errors into a single answer).
import { execFile, spawn } from 'node:child_process';
import { readFile, realpath, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Attr, Ctx, DirEntry, Entry, FsOps, OpenResult, SetAttr, StatFs } from '../fs/types.ts';
import {
  A,
  AI,
  A_CTIME,
  A_FH,
  A_FLAGS,
  A_GID,
  A_HASFH,
  A_INO,
  A_INO2,
  A_MODE,
  A_MTIME,
  A_OFF,
  A_PID,
  A_SGID,
  A_SIZE,
  A_SMODE,
  A_SSIZE,
  A_SUID,
  A_TOSET,
  A_UID,
  A_UMASK,
  A_X,
  A_ATIME,
  MF_NO_SECURITY_CAPABILITY, MF_POSIX_ACL, MF_MAIN_LOOP, MF_BORROW_WRITES,
  MF_WRITEBACK,
  OP,
  R,
  RI,
  R_ATIME,
  R_ATO,
  R_BLKSIZE,
  R_BLOCKS,
  R_CTIME,
  R_ETO,
  R_FH,
  R_GEN,
  R_GID,
  R_INO,
  R_MODE,
  R_MTIME,
  R_NLINK,
  R_OFLAGS,
  R_RDEV,
  R_SIZE,
  R_UID,
  SET_ATTR,
  loadNative,
  type MountHandle,
  type NativeAddon,
  type NativeInfo,
  type ReqId,
} from './native.ts';

export interface MountOptions {
  /** `-o` mount options, e.g. ['fsname=hoardfs', 'subtype=hoardfs', 'default_permissions', 'allow_other']. */
  options?: string[];
  /** libfuse request tracing on stderr. */
  debug?: boolean;
  /** FUSE_CAP_WRITEBACK_CACHE: the kernel caches writes and owns mtime/ctime; default off. */
  writebackCache?: boolean;
  /** Kernel-enforced POSIX ACLs; the filesystem then applies umask and keeps mode and ACL in step. */
  posixAcl?: boolean;
  /**
   * Answer getxattr("security.capability") with ENODATA in C, never asking FsOps, until the
   * first setxattr of that name (setcap) passes through; from then on FsOps answers. The kernel
   * asks it before every write, so this saves a JS round trip per write. Set it only when the
   * filesystem holds no file capability at mount.
   */
  noSecurityCapability?: boolean;
  /**
   * write() gets a view of the binding's receive buffer, valid only until write() returns or
   * first awaits, instead of a Buffer of its own: set it only for a filesystem whose write()
   * copies what it keeps at once. Saves a copy and 1 MiB of external memory per write.
   */
  borrowWrites?: boolean;
  /**
   * Seconds the kernel may cache attributes returned by getattr/setattr (Attr has no timeout of
   * its own; lookup/create/mkdir/... use Entry.attrTimeout). Default 1.
   */
  attrTimeout?: number;
  /**
   * Seconds the kernel may remember that a name does not exist (a lookup answered ENOENT). Only
   * safe when every change to the tree goes through this mount: the kernel then replaces the
   * negative entry itself when the name is created. Default 0 (every lookup asks).
   */
  negativeTimeout?: number;
  /**
   * Read-ahead window for this mount's bdi (/sys/class/bdi/MAJ:MIN/read_ahead_kb). The kernel
   * starts FUSE mounts at 128 KiB, which caps sequential reads at 128 KiB requests; 1024 lets
   * them use the full 1 MiB the connection allows. Best effort (needs root); 0 leaves it alone.
   * Default 1024.
   */
  readAheadKb?: number;
  /**
   * If the process exits while still mounted (crash, process.exit), lazily unmount so the
   * mount point is not left as "Transport endpoint is not connected". Default true.
   */
  unmountOnExit?: boolean;
  /** Called once when the session has ended (our unmount, `fusermount3 -u`, `umount`), after FsOps.destroy. */
  onUnmount?: () => void;
}

export interface FuseMount {
  readonly mountpoint: string;
  /** Unmounts (via `fusermount3 -u`, `-z` if lazy) and resolves once the session has shut down. */
  unmount(opts?: { lazy?: boolean }): Promise<void>;
  /** Resolves when the session has ended for any reason. */
  readonly ended: Promise<void>;
  /**
   * Parameters negotiated with the kernel (valid once the first request has arrived); after the
   * session ended, a snapshot taken at that moment (`outstanding` = requests JS still owed).
   */
  info(): NativeInfo;
}

const ERRNO = os.constants.errno as Record<string, number>;
const EIO = ERRNO.EIO!;
const ENOENT = ERRNO.ENOENT!;
const ENOSYS = ERRNO.ENOSYS!;
const ERANGE = ERRNO.ERANGE!;

const OP_NAME: Record<number, string> = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k.toLowerCase()]));

const loggedErrors = new Set<string>();
function logOnce(where: string, e: unknown): void {
  const key = e instanceof Error ? `${e.name}:${e.message}` : String(e);
  if (loggedErrors.has(key) || loggedErrors.size > 200) return;
  loggedErrors.add(key);
  const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
  process.stderr.write(`hoardfs fuse: ${where}: replying EIO for unexpected error: ${detail}\n`);
}

/**
 * Negative errno for a thrown value: FsError (and Node's own system errors, which carry the same
 * `code` names) map to their errno; anything else is an internal bug -> EIO, logged once.
 */
function errnoOf(e: unknown, op: number): number {
  if (e !== null && typeof e === 'object') {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      const n = ERRNO[code];
      if (n !== undefined) return -n;
    }
  }
  logOnce(OP_NAME[op] ?? `op ${op}`, e);
  return -EIO;
}

function packAttr(a: Attr): void {
  R[R_INO] = a.ino;
  R[R_MODE] = a.mode;
  R[R_NLINK] = a.nlink;
  R[R_UID] = a.uid;
  R[R_GID] = a.gid;
  R[R_RDEV] = a.rdev;
  R[R_SIZE] = a.size;
  R[R_BLOCKS] = a.blocks;
  R[R_BLKSIZE] = a.blksize;
  RI[R_ATIME] = a.atimeNs;
  RI[R_MTIME] = a.mtimeNs;
  RI[R_CTIME] = a.ctimeNs;
}

function packEntry(e: Entry): void {
  packAttr(e.attr);
  R[R_GEN] = e.generation;
  R[R_ETO] = e.entryTimeout;
  R[R_ATO] = e.attrTimeout;
}

function packOpen(o: OpenResult): void {
  R[R_FH] = o.fh;
  R[R_OFLAGS] = (o.directIo ? 1 : 0) | (o.keepCache ? 2 : 0) | (o.noFlush ? 8 : 0);
}

function packStatfs(s: StatFs): void {
  R[0] = s.bsize;
  R[1] = s.frsize;
  R[2] = s.blocks;
  R[3] = s.bfree;
  R[4] = s.bavail;
  R[5] = s.files;
  R[6] = s.ffree;
  R[7] = s.namemax;
}

/**
 * The kernel will never release a handle whose open reply arrived after the opener gave up, so
 * we do. Must not throw: it runs after the reply, and run() would otherwise answer a second time.
 */
function releaseQuietly(release: () => unknown): void {
  try {
    const r = release();
    if (r instanceof Promise) r.catch((e: unknown) => logOnce('release', e));
  } catch (e) {
    logOnce('release', e);
  }
}

function runFusermount(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fusermount3', args, (err, _stdout, stderr) => {
      if (err) reject(new Error(`fusermount3 ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}

/** Finds the mount's device in /proc/self/mountinfo (no request to our own filesystem). */
async function setReadAhead(mountpoint: string, kb: number): Promise<void> {
  try {
    // Resolve symlinks in the parent only: a stat of the mount point itself would be a request to us.
    const abs = path.resolve(mountpoint);
    const target = path.join(await realpath(path.dirname(abs)), path.basename(abs));
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    let dev: string | undefined;
    for (const line of info.split('\n')) {
      const f = line.split(' ');
      // Field 5 is the mount point with space, tab, newline and backslash octal-escaped.
      const mp = f[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      if (mp === target) dev = f[2]; // the last match is the topmost mount
    }
    if (dev) await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
  } catch {
    // not root, or no sysfs: reads just stay at 128 KiB requests
  }
}

export async function mountFs(fs: FsOps, mountpoint: string, opts: MountOptions = {}): Promise<FuseMount> {
  const native: NativeAddon = loadNative();
  const attrTimeout = opts.attrTimeout ?? 1;
  await fs.init?.();

  // ENOENT as an entry with inode 0: the kernel keeps it as a negative dentry (git, make and
  // compilers ask for the same missing names over and over).
  const negativeTimeout = opts.negativeTimeout ?? 0;
  const negative: Entry = {
    attr: { ino: 0, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n },
    generation: 0,
    entryTimeout: negativeTimeout,
    attrTimeout: 0,
  };
  const isEnoent = (e: unknown): boolean => e !== null && typeof e === 'object' && (e as { code?: unknown }).code === 'ENOENT';
  const lookupOrNegative = (parent: number, name: Buffer, ctx: Ctx): Entry | Promise<Entry> => {
    try {
      const r = fs.lookup(parent, name, ctx);
      return r instanceof Promise ? r.catch((e: unknown) => (isEnoent(e) ? negative : Promise.reject(e))) : r;
    } catch (e) {
      if (isEnoent(e)) return negative;
      throw e;
    }
  };
  const fail = (req: ReqId, e: unknown, op: number): void => {
    native.replyErr(req, errnoOf(e, op));
  };
  // One helper for every replying op: sync throws, rejections and packing errors all end in a
  // single reply. `op` is only for the log line.
  const run = <T>(req: ReqId, op: number, start: () => T | Promise<T>, ok: (req: ReqId, v: T) => void): void => {
    let p: T | Promise<T>;
    try {
      p = start();
      // An answer known at once (a cached lookup, a getattr, an errno) goes out at once: no
      // promise, no microtask, and no rejection bookkeeping for an errno.
      if (!(p instanceof Promise)) {
        ok(req, p);
        return;
      }
    } catch (e) {
      fail(req, e, op);
      return;
    }
    p.then(
      (v) => {
        try {
          ok(req, v);
        } catch (e) {
          fail(req, e, op);
        }
      },
      (e: unknown) => fail(req, e, op),
    );
  };
  const replyOk = (req: ReqId): void => {
    native.replyErr(req, 0);
  };
  const replyEntry = (req: ReqId, e: Entry): void => {
    packEntry(e);
    native.replyEntry(req);
  };
  const replyAttr = (req: ReqId, a: Attr): void => {
    packAttr(a);
    R[R_ATO] = attrTimeout;
    native.replyAttr(req);
  };
  const replyDir = (req: ReqId, size: number, ents: DirEntry[]): void => {
    const n = ents.length;
    const meta = new Float64Array(n * 4);
    const names: Buffer[] = new Array<Buffer>(n);
    for (let i = 0; i < n; i++) {
      const d = ents[i]!;
      names[i] = d.name;
      meta[i * 4] = d.ino;
      meta[i * 4 + 1] = d.mode;
      meta[i * 4 + 2] = d.nextOffset;
      meta[i * 4 + 3] = d.name.length;
    }
    native.replyDir(req, size, Buffer.concat(names), meta, n);
  };
  const xattrReply = (req: ReqId, size: number, v: Buffer): void => {
    if (size === 0) native.replyXattr(req, v.length);
    else if (v.length > size) native.replyErr(req, -ERANGE);
    else native.replyBuf(req, v);
  };

  let handle: MountHandle | undefined;
  let lastInfo: NativeInfo | undefined; // the native handle must not be touched after close()
  let ended = false;
  let resolveEnded!: () => void;
  const endedPromise = new Promise<void>((r) => (resolveEnded = r));

  // Runs inside process 'exit', so it cannot wait: the child is spawned (fork+exec happen
  // synchronously) and left running. Waiting would also risk a deadlock: unmounting may need
  // this very process to answer writeback requests. Once we are gone the kernel aborts the
  // connection, so the lazy unmount never needs us.
  const detachOnExit = (): void => {
    try {
      spawn('fusermount3', ['-u', '-z', mountpoint], { detached: true, stdio: 'ignore' }).unref();
    } catch {
      // nothing more we can do while exiting
    }
  };

  const onExit = async (): Promise<void> => {
    if (ended) return;
    ended = true;
    process.off('exit', detachOnExit);
    if (handle) {
      lastInfo = native.info(handle);
      native.close(handle);
    }
    try {
      await fs.destroy?.();
    } catch (e) {
      logOnce('destroy', e);
    }
    try {
      opts.onUnmount?.();
    } catch (e) {
      logOnce('onUnmount', e);
    }
    resolveEnded();
  };

  const dispatch = (op: number, req: ReqId, a?: Buffer | Uint8Array | string, b?: Buffer): void => {
    const ino = A[A_INO]!;
    switch (op) {
      case OP.GETATTR: {
        const fh = A[A_HASFH] ? A[A_FH] : undefined;
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, () => fs.getattr(ino, fh, ctx), replyAttr);
        return;
      }
      case OP.READ: {
        const fh = A[A_FH]!;
        const size = A[A_SIZE]!;
        const off = A[A_OFF]!;
        run(req, op, () => fs.read(ino, fh, size, off), (req, buf) => {
          native.replyBuf(req, buf.length > size ? buf.subarray(0, size) : buf);
        });
        return;
      }
      case OP.WRITE: {
        const fh = A[A_FH]!;
        const off = A[A_OFF]!;
        const flags = A[A_FLAGS]!;
        // A borrowed payload arrives as a plain Uint8Array view: the same memory as a Buffer.
        const data = Buffer.isBuffer(a) ? a : Buffer.from((a as Uint8Array).buffer, (a as Uint8Array).byteOffset, (a as Uint8Array).byteLength);
        run(req, op, () => fs.write(ino, fh, data, off, flags), (req, n) => {
          native.replyWrite(req, n);
        });
        return;
      }
      case OP.LOOKUP: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, negativeTimeout > 0 ? () => lookupOrNegative(ino, a as Buffer, ctx) : () => fs.lookup(ino, a as Buffer, ctx), replyEntry);
        return;
      }
      case OP.FORGET: {
        try {
          fs.forget(ino, A[A_X]!);
        } catch (e) {
          logOnce('forget', e);
        }
        return;
      }
      case OP.SETATTR: {
        const fh = A[A_HASFH] ? A[A_FH] : undefined;
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const ts = A[A_TOSET]!;
        const set: SetAttr = {};
        // The kernel sends the full i_mode; only permission bits are changeable.
        if (ts & SET_ATTR.MODE) set.mode = A[A_SMODE]! & 0o7777;
        if (ts & SET_ATTR.UID) set.uid = A[A_SUID]!;
        if (ts & SET_ATTR.GID) set.gid = A[A_SGID]!;
        if (ts & SET_ATTR.SIZE) set.size = A[A_SSIZE]!;
        if (ts & SET_ATTR.ATIME_NOW) set.atimeNs = 'now';
        else if (ts & SET_ATTR.ATIME) set.atimeNs = AI[A_ATIME]!;
        if (ts & SET_ATTR.MTIME_NOW) set.mtimeNs = 'now';
        else if (ts & SET_ATTR.MTIME) set.mtimeNs = AI[A_MTIME]!;
        if (ts & SET_ATTR.CTIME) set.ctimeNs = AI[A_CTIME]!;
        run(req, op, () => fs.setattr(ino, set, fh, ctx), replyAttr);
        return;
      }
      case OP.READLINK: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, () => fs.readlink(ino, ctx), (req, buf) => native.replyBuf(req, buf));
        return;
      }
      case OP.MKNOD: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const mode = A[A_MODE]!;
        const rdev = A[A_X]!;
        run(req, op, () => fs.mknod(ino, a as Buffer, mode, rdev, ctx), replyEntry);
        return;
      }
      case OP.MKDIR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const mode = A[A_MODE]!;
        run(req, op, () => fs.mkdir(ino, a as Buffer, mode, ctx), replyEntry);
        return;
      }
      case OP.UNLINK: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, () => fs.unlink(ino, a as Buffer, ctx), replyOk);
        return;
      }
      case OP.RMDIR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, () => fs.rmdir(ino, a as Buffer, ctx), replyOk);
        return;
      }
      case OP.SYMLINK: {
        // a = new entry name, b = link target
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, () => fs.symlink(b as Buffer, ino, a as Buffer, ctx), replyEntry);
        return;
      }
      case OP.RENAME: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const newParent = A[A_INO2]!;
        const flags = A[A_FLAGS]!;
        run(req, op, () => fs.rename(ino, a as Buffer, newParent, b as Buffer, flags, ctx), replyOk);
        return;
      }
      case OP.LINK: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const newParent = A[A_INO2]!;
        run(req, op, () => fs.link(ino, newParent, a as Buffer, ctx), replyEntry);
        return;
      }
      case OP.OPEN: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const flags = A[A_FLAGS]!;
        run(req, op, () => fs.open(ino, flags, ctx), (req, o) => {
          packOpen(o);
          // -ENOENT: the opener was interrupted; the kernel will never send release for it.
          if (native.replyOpen(req) === -ENOENT) releaseQuietly(() => fs.release(ino, o.fh));
        });
        return;
      }
      case OP.CREATE: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const mode = A[A_MODE]!;
        const flags = A[A_FLAGS]!;
        run(req, op, () => fs.create(ino, a as Buffer, mode, flags, ctx), (req, r) => {
          packEntry(r.entry);
          packOpen(r.open);
          if (native.replyCreate(req) === -ENOENT) releaseQuietly(() => fs.release(r.entry.attr.ino, r.open.fh));
        });
        return;
      }
      case OP.FLUSH: {
        const fh = A[A_FH]!;
        run(req, op, () => fs.flush(ino, fh), replyOk);
        return;
      }
      case OP.RELEASE: {
        const fh = A[A_FH]!;
        run(req, op, () => fs.release(ino, fh), replyOk);
        return;
      }
      case OP.FSYNC: {
        const fh = A[A_FH]!;
        const datasync = A[A_X]! !== 0;
        run(req, op, () => fs.fsync(ino, fh, datasync), replyOk);
        return;
      }
      case OP.FALLOCATE: {
        if (!fs.fallocate) {
          // ENOSYS makes the kernel stop asking and return EOPNOTSUPP itself.
          native.replyErr(req, -ENOSYS);
          return;
        }
        const fh = A[A_FH]!;
        const mode = A[A_MODE]!;
        const off = A[A_OFF]!;
        const len = A[A_SIZE]!;
        run(req, op, () => fs.fallocate!(ino, fh, mode, off, len), replyOk);
        return;
      }
      case OP.OPENDIR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const flags = A[A_FLAGS]!;
        run(req, op, () => fs.opendir(ino, flags, ctx), (req, o) => {
          packOpen(o);
          if (native.replyOpen(req) === -ENOENT) releaseQuietly(() => fs.releasedir(ino, o.fh));
        });
        return;
      }
      case OP.READDIR: {
        const fh = A[A_FH]!;
        const size = A[A_SIZE]!;
        const off = A[A_OFF]!;
        // The smallest dirent (1-byte name) takes 32 bytes, so more can never fit.
        const max = Math.max(1, Math.ceil(size / 32));
        run(req, op, () => fs.readdir(ino, fh, off, max), (req, ents) => replyDir(req, size, ents));
        return;
      }
      case OP.RELEASEDIR: {
        const fh = A[A_FH]!;
        run(req, op, () => fs.releasedir(ino, fh), replyOk);
        return;
      }
      case OP.FSYNCDIR: {
        const fh = A[A_FH]!;
        const datasync = A[A_X]! !== 0;
        run(req, op, () => fs.fsyncdir(ino, fh, datasync), replyOk);
        return;
      }
      case OP.STATFS: {
        run(req, op, () => fs.statfs(ino), (req, s) => {
          packStatfs(s);
          native.replyStatfs(req);
        });
        return;
      }
      case OP.SETXATTR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const flags = A[A_FLAGS]!;
        run(req, op, () => fs.setxattr(ino, a as string, b as Buffer, flags, ctx), replyOk);
        return;
      }
      case OP.GETXATTR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const size = A[A_SIZE]!;
        run(req, op, () => fs.getxattr(ino, a as string, ctx), (req, v) => xattrReply(req, size, v));
        return;
      }
      case OP.LISTXATTR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const size = A[A_SIZE]!;
        run(req, op, () => fs.listxattr(ino, ctx), (req, names) => {
          xattrReply(req, size, Buffer.from(names.map((n) => n + '\0').join('')));
        });
        return;
      }
      case OP.REMOVEXATTR: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        run(req, op, () => fs.removexattr(ino, a as string, ctx), replyOk);
        return;
      }
      case OP.ACCESS: {
        const ctx: Ctx = { uid: A[A_UID]!, gid: A[A_GID]!, pid: A[A_PID]!, umask: A[A_UMASK]! };
        const mask = A[A_X]!;
        run(req, op, () => fs.access(ino, mask, ctx), replyOk);
        return;
      }
      case OP.EXIT:
        void onExit();
        return;
      default:
        if (req) native.replyErr(req, -ENOSYS);
    }
  };

  const argv = ['hoardfs'];
  if (opts.options && opts.options.length > 0) argv.push('-o', opts.options.join(','));
  if (opts.debug) argv.push('-d');
  const flags = (opts.writebackCache ? MF_WRITEBACK : 0) | (opts.noSecurityCapability ? MF_NO_SECURITY_CAPABILITY : 0) | (opts.posixAcl ? MF_POSIX_ACL : 0) |
    (opts.borrowWrites ? MF_BORROW_WRITES : 0) | (process.env.HOARDFS_FUSE_THREADS === '1' ? 0 : MF_MAIN_LOOP);
  try {
    handle = native.mount(mountpoint, argv, flags, dispatch);
  } catch (e) {
    try {
      await fs.destroy?.();
    } catch {
      // the mount error is the one worth reporting
    }
    throw new Error(`mounting ${mountpoint}: ${(e as Error).message}`);
  }

  const h = handle;
  if (opts.unmountOnExit ?? true) process.on('exit', detachOnExit);
  const ra = opts.readAheadKb ?? 1024;
  if (ra > 0) await setReadAhead(mountpoint, ra);
  return {
    mountpoint,
    ended: endedPromise,
    info: () => lastInfo ?? native.info(h),
    async unmount(u?: { lazy?: boolean }): Promise<void> {
      if (ended) return endedPromise;
      try {
        await runFusermount(u?.lazy ? ['-u', '-z', mountpoint] : ['-u', mountpoint]);
      } catch (e) {
        // Lost a race with an external unmount: that is success too.
        if (!ended) throw e;
      }
      return endedPromise;
    },
  };
}

export type { FsOps } from '../fs/types.ts';
