// The contract between the FUSE adapter (src/fuse) and the filesystem semantics (src/fs).
// It mirrors libfuse3's low-level API: everything is addressed by inode number, names are raw
// bytes (Linux names are not UTF-8 guaranteed), and every call may be asynchronous.
// Errors are thrown as FsError with a Linux errno name; the adapter turns them into -errno.

export type Ino = number; // safe integer; 1 is the root

export interface Ctx {
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

export interface Attr {
  ino: Ino;
  mode: number; // S_IFMT | permission bits
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number; // 512-byte units actually used (holes cost none)
  blksize: number;
  atimeNs: bigint; // nanoseconds since the epoch
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface Entry {
  attr: Attr;
  generation: number;
  entryTimeout: number; // seconds the kernel may cache the name -> inode mapping
  attrTimeout: number; // seconds the kernel may cache the attributes
}

export interface OpenResult {
  fh: number;
  directIo?: boolean;
  keepCache?: boolean;
  /** The kernel sends no FLUSH at close (FOPEN_NOFLUSH). */
  noFlush?: boolean;
}

export interface DirEntry {
  name: Buffer;
  ino: Ino;
  mode: number; // only S_IFMT bits are meaningful
  nextOffset: number; // opaque cookie: readdir(offset = nextOffset) continues after this entry
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namemax: number;
}

/** Fields present are changed; a time of 'now' means the current time. */
export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atimeNs?: bigint | 'now';
  mtimeNs?: bigint | 'now';
  ctimeNs?: bigint;
}

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/**
 * What an FsOps method gives back. An answer known at once is returned (or thrown) directly, so
 * that the adapter replies without a promise: for a lookup that was 59 us against 37 us through the
 * whole FUSE round trip, most of it an errno's rejected-promise bookkeeping.
 */
export type Answer<T> = T | Promise<T>;

export interface FsOps {
  init?(): Promise<void>;
  destroy?(): Promise<void>;

  lookup(parent: Ino, name: Buffer, ctx: Ctx): Answer<Entry>;
  /** The kernel dropped nlookup references to ino; no reply is sent. */
  forget(ino: Ino, nlookup: number): void;
  getattr(ino: Ino, fh: number | undefined, ctx: Ctx): Answer<Attr>;
  setattr(ino: Ino, set: SetAttr, fh: number | undefined, ctx: Ctx): Answer<Attr>;
  readlink(ino: Ino, ctx: Ctx): Answer<Buffer>;
  mknod(parent: Ino, name: Buffer, mode: number, rdev: number, ctx: Ctx): Answer<Entry>;
  mkdir(parent: Ino, name: Buffer, mode: number, ctx: Ctx): Answer<Entry>;
  unlink(parent: Ino, name: Buffer, ctx: Ctx): Answer<void>;
  rmdir(parent: Ino, name: Buffer, ctx: Ctx): Answer<void>;
  symlink(target: Buffer, parent: Ino, name: Buffer, ctx: Ctx): Answer<Entry>;
  rename(parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number, ctx: Ctx): Answer<void>;
  link(ino: Ino, newParent: Ino, newName: Buffer, ctx: Ctx): Answer<Entry>;
  /** flags are open(2) flags (O_ACCMODE, O_APPEND, O_TRUNC, ...). */
  open(ino: Ino, flags: number, ctx: Ctx): Answer<OpenResult>;
  create(parent: Ino, name: Buffer, mode: number, flags: number, ctx: Ctx): Answer<{ entry: Entry; open: OpenResult }>;
  read(ino: Ino, fh: number, size: number, offset: number): Answer<Buffer>;
  /** Returns the number of bytes written (all of them unless an error is thrown). */
  /** data may be reused by the caller once write returns or first awaits: keep a copy. */
  write(ino: Ino, fh: number, data: Buffer, offset: number, flags: number): Answer<number>;
  flush(ino: Ino, fh: number): Answer<void>;
  release(ino: Ino, fh: number): Answer<void>;
  fsync(ino: Ino, fh: number, datasync: boolean): Answer<void>;
  fallocate?(ino: Ino, fh: number, mode: number, offset: number, length: number): Answer<void>;
  opendir(ino: Ino, flags: number, ctx: Ctx): Answer<OpenResult>;
  /** Entries after cookie `offset` (0 = start, "." and ".." included), as many as fit `size` bytes is the adapter's concern. */
  readdir(ino: Ino, fh: number, offset: number, maxEntries: number): Answer<DirEntry[]>;
  releasedir(ino: Ino, fh: number): Answer<void>;
  fsyncdir(ino: Ino, fh: number, datasync: boolean): Answer<void>;
  statfs(ino: Ino): Answer<StatFs>;
  setxattr(ino: Ino, name: string, value: Buffer, flags: number, ctx: Ctx): Answer<void>;
  getxattr(ino: Ino, name: string, ctx: Ctx): Answer<Buffer>;
  listxattr(ino: Ino, ctx: Ctx): Answer<string[]>;
  removexattr(ino: Ino, name: string, ctx: Ctx): Answer<void>;
  access(ino: Ino, mask: number, ctx: Ctx): Answer<void>;
}

/** A Linux errno by name; the FUSE adapter replies -os.constants.errno[code]. */
export class FsError extends Error {
  readonly code: string;
  constructor(code: string, message?: string) {
    // An errno is an answer, not a bug: capturing a stack cost 19 us of a 140 us negative lookup.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.code = code;
    this.name = 'FsError';
  }
}
