// Loader and shared constants for native/hoardfs_fuse.c. The numbers here must match the enums in
// the C file; they are the wire format between the FUSE threads and JavaScript.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const OP = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  MKNOD: 6,
  MKDIR: 7,
  UNLINK: 8,
  RMDIR: 9,
  SYMLINK: 10,
  RENAME: 11,
  LINK: 12,
  OPEN: 13,
  READ: 14,
  WRITE: 15,
  FLUSH: 16,
  RELEASE: 17,
  FSYNC: 18,
  OPENDIR: 19,
  READDIR: 20,
  RELEASEDIR: 21,
  FSYNCDIR: 22,
  STATFS: 23,
  SETXATTR: 24,
  GETXATTR: 25,
  LISTXATTR: 26,
  REMOVEXATTR: 27,
  ACCESS: 28,
  CREATE: 29,
  FALLOCATE: 30,
  EXIT: 100,
} as const;

// Request argument slots (Float64 unless noted BigInt64).
export const A_INO = 0;
export const A_FH = 1;
export const A_HASFH = 2;
export const A_OFF = 3;
export const A_SIZE = 4;
export const A_FLAGS = 5;
export const A_MODE = 6;
export const A_X = 7; // rdev / access mask / nlookup / datasync / writepage
export const A_INO2 = 8;
export const A_UID = 9;
export const A_GID = 10;
export const A_PID = 11;
export const A_UMASK = 12;
export const A_TOSET = 13;
export const A_SMODE = 14;
export const A_SUID = 15;
export const A_SGID = 16;
export const A_SSIZE = 17;
export const A_ATIME = 18; // BigInt64, ns
export const A_MTIME = 19; // BigInt64, ns
export const A_CTIME = 20; // BigInt64, ns
const A_NSLOTS = 21;

// Reply slots.
export const R_INO = 0;
export const R_MODE = 1;
export const R_NLINK = 2;
export const R_UID = 3;
export const R_GID = 4;
export const R_RDEV = 5;
export const R_SIZE = 6;
export const R_BLOCKS = 7;
export const R_BLKSIZE = 8;
export const R_ATIME = 9; // BigInt64
export const R_MTIME = 10; // BigInt64
export const R_CTIME = 11; // BigInt64
export const R_GEN = 12;
export const R_ETO = 13;
export const R_ATO = 14;
export const R_FH = 15;
export const R_OFLAGS = 16; // 1 direct_io, 2 keep_cache, 4 cache_readdir, 8 noflush
const R_NSLOTS = 17;

// FUSE_SET_ATTR_* (fuse_lowlevel.h)
export const SET_ATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  CTIME: 1 << 10,
} as const;

export const MF_WRITEBACK = 1;
export const MF_NO_SECURITY_CAPABILITY = 2;
export const MF_POSIX_ACL = 4;
export const MF_MAIN_LOOP = 8; // requests are read on the JS thread (see native/hoardfs_fuse.c)
export const MF_BORROW_WRITES = 16; // write payloads are views of the receive buffer (see native/hoardfs_fuse.c)

export type ReqId = number;
export type Dispatch = (op: number, req: ReqId, a?: Buffer | string, b?: Buffer) => void;
export interface MountHandle {
  readonly __brand: 'hoardfs_fuse mount';
}
export interface NativeInfo {
  maxWrite: number;
  maxReadahead: number;
  capable: number;
  want: number;
  protoMinor: number;
  outstanding: number;
}

export interface NativeAddon {
  setup(args: ArrayBuffer, reply: ArrayBuffer): { argSlots: number; replySlots: number };
  mount(mountpoint: string, argv: string[], flags: number, dispatch: Dispatch): MountHandle;
  close(h: MountHandle): void;
  info(h: MountHandle): NativeInfo;
  // Every reply returns libfuse's result (0 or -errno; -ENOENT means the request was interrupted).
  replyErr(req: ReqId, negErrno: number): number;
  replyEntry(req: ReqId): number;
  replyAttr(req: ReqId): number;
  replyOpen(req: ReqId): number;
  replyCreate(req: ReqId): number;
  replyBuf(req: ReqId, data: Uint8Array): number;
  replyWrite(req: ReqId, count: number): number;
  replyXattr(req: ReqId, size: number): number;
  replyStatfs(req: ReqId): number;
  /** Returns how many of `count` entries fit into `size` bytes. */
  replyDir(req: ReqId, size: number, names: Buffer, meta: Float64Array, count: number): number;
}

// HOARDFS_FUSE_ADDON points at another build (e.g. a sanitizer build) without touching the tree.
export const addonPath =
  process.env.HOARDFS_FUSE_ADDON || fileURLToPath(new URL('../../native/build/Release/hoardfs_fuse.node', import.meta.url));

let loaded: NativeAddon | undefined;
const argsAB = new ArrayBuffer(32 * 8);
const replyAB = new ArrayBuffer(32 * 8);
/** Request arguments, written by C right before each dispatch call; read them synchronously. */
export const A = new Float64Array(argsAB);
export const AI = new BigInt64Array(argsAB);
/** Reply scratch: fill, then call the native reply function in the same synchronous step. */
export const R = new Float64Array(replyAB);
export const RI = new BigInt64Array(replyAB);

export function loadNative(): NativeAddon {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  let mod: NativeAddon;
  try {
    mod = require(addonPath) as NativeAddon;
  } catch (e) {
    throw new Error(
      `cannot load ${addonPath}: run \`npm run build:native\` (needs fuse3 libfuse3-dev pkg-config): ${(e as Error).message}`,
    );
  }
  const slots = mod.setup(argsAB, replyAB);
  if (slots.argSlots !== A_NSLOTS || slots.replySlots !== R_NSLOTS) {
    throw new Error(`hoardfs_fuse.node is out of date (slot layout mismatch); rebuild it`);
  }
  loaded = mod;
  return mod;
}
