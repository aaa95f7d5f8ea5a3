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

export interface FsOps {
  init?(): Promise<void>;
  destroy?(): Promise<void>;

  lookup(parent: Ino, name: Buffer, ctx: Ctx): Promise<Entry>;
  /** The kernel dropped nlookup references to ino; no reply is sent. */
  forget(ino: Ino, nlookup: number): void;
  getattr(ino: Ino, fh: number | undefined, ctx: Ctx): Promise<Attr>;
  setattr(ino: Ino, set: SetAttr, fh: number | undefined, ctx: Ctx): Promise<Attr>;
  readlink(ino: Ino, ctx: Ctx): Promise<Buffer>;
  mknod(parent: Ino, name: Buffer, mode: number, rdev: number, ctx: Ctx): Promise<Entry>;
  mkdir(parent: Ino, name: Buffer, mode: number, ctx: Ctx): Promise<Entry>;
  unlink(parent: Ino, name: Buffer, ctx: Ctx): Promise<void>;
  rmdir(parent: Ino, name: Buffer, ctx: Ctx): Promise<void>;
  symlink(target: Buffer, parent: Ino, name: Buffer, ctx: Ctx): Promise<Entry>;
  rename(parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number, ctx: Ctx): Promise<void>;
  link(ino: Ino, newParent: Ino, newName: Buffer, ctx: Ctx): Promise<Entry>;
  /** flags are open(2) flags (O_ACCMODE, O_APPEND, O_TRUNC, ...). */
  open(ino: Ino, flags: number, ctx: Ctx): Promise<OpenResult>;
  create(parent: Ino, name: Buffer, mode: number, flags: number, ctx: Ctx): Promise<{ entry: Entry; open: OpenResult }>;
  read(ino: Ino, fh: number, size: number, offset: number): Promise<Buffer>;
  /** Returns the number of bytes written (all of them unless an error is thrown). */
  write(ino: Ino, fh: number, data: Buffer, offset: number, flags: number): Promise<number>;
  flush(ino: Ino, fh: number): Promise<void>;
  release(ino: Ino, fh: number): Promise<void>;
  fsync(ino: Ino, fh: number, datasync: boolean): Promise<void>;
  fallocate?(ino: Ino, fh: number, mode: number, offset: number, length: number): Promise<void>;
  opendir(ino: Ino, flags: number, ctx: Ctx): Promise<OpenResult>;
  /** Entries after cookie `offset` (0 = start, "." and ".." included), as many as fit `size` bytes is the adapter's concern. */
  readdir(ino: Ino, fh: number, offset: number, maxEntries: number): Promise<DirEntry[]>;
  releasedir(ino: Ino, fh: number): Promise<void>;
  fsyncdir(ino: Ino, fh: number, datasync: boolean): Promise<void>;
  statfs(ino: Ino): Promise<StatFs>;
  setxattr(ino: Ino, name: string, value: Buffer, flags: number, ctx: Ctx): Promise<void>;
  getxattr(ino: Ino, name: string, ctx: Ctx): Promise<Buffer>;
  listxattr(ino: Ino, ctx: Ctx): Promise<string[]>;
  removexattr(ino: Ino, name: string, ctx: Ctx): Promise<void>;
  access(ino: Ino, mask: number, ctx: Ctx): Promise<void>;
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
