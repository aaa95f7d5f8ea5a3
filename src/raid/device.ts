// The device abstraction: a positional read/write file. Everything in src/raid goes through an
// OpenDevice so that tests and the fault injector can stand between the array and the files.

import { constants, promises as fsp, readSync, statfsSync } from 'node:fs';
import { nativeReadCached } from './gf.ts';

export interface DeviceIO {
  read(buf: Buffer, pos: number): Promise<number>;
  write(buf: Buffer, pos: number): Promise<void>;
  sync(): Promise<void>;
  size(): Promise<number>;
  truncate(n: number): Promise<void>;
  close(): Promise<void>;
}

export type OpenDevice = (path: string, create: boolean) => Promise<DeviceIO>;

const TMPFS_MAGIC = 0x01021994;
const EINVAL = 22;
const EOPNOTSUPP = 95;

/**
 * How reads reach a device file. Through libuv's thread pool, a read costs a thread hop each way
 * (a random 4 KiB read on RAID 6 waited for several, and the daemon sat idle half the time). A
 * read the page cache can answer is cheaper done right here: on tmpfs always (nothing there waits
 * for a disk), elsewhere with RWF_NOWAIT, which refuses instead of waiting. HOARDFS_DEVICE_READ=pool
 * keeps every read in the pool.
 */
function readMode(path: string): 'sync' | 'cached' | 'pool' {
  if (process.env.HOARDFS_DEVICE_READ === 'pool') return 'pool';
  try {
    if (statfsSync(path).type === TMPFS_MAGIC) return 'sync';
  } catch {
    // fall through: the cached-read attempt needs no knowledge of the filesystem
  }
  return nativeReadCached() ? 'cached' : 'pool';
}

export const fileOpenDevice: OpenDevice = async (path, create) => {
  const fh = await fsp.open(path, create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR, 0o600);
  let mode = readMode(path);
  const readCached = nativeReadCached();
  return {
    async read(buf, pos) {
      if (mode === 'sync') return readSync(fh.fd, buf, 0, buf.length, pos);
      if (mode === 'cached' && buf.length > 0) {
        const n = readCached!(fh.fd, buf, pos);
        if (n >= 0) return n;
        if (n === -EOPNOTSUPP || n === -EINVAL) mode = 'pool'; // this file cannot do it; any other error is the pool's to report
      }
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      return bytesRead;
    },
    async write(buf, pos) {
      let off = 0;
      while (off < buf.length) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos + off);
        if (bytesWritten <= 0) throw ioError('EIO', `short write to ${path}`);
        off += bytesWritten;
      }
    },
    sync: () => fh.datasync(),
    size: async () => (await fh.stat()).size,
    truncate: (n) => fh.truncate(n),
    close: () => fh.close(),
  };
};

export function ioError(code: string, message: string, cause?: unknown): Error & { code: string } {
  const e = new Error(message, cause === undefined ? undefined : { cause }) as Error & { code: string };
  e.code = code;
  return e;
}

export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/** Reads until buf is full or EOF; a DeviceIO may return short counts like pread(2). */
export async function readFull(io: DeviceIO, buf: Buffer, pos: number): Promise<number> {
  let off = 0;
  while (off < buf.length) {
    const n = await io.read(off === 0 ? buf : buf.subarray(off), pos + off);
    if (n <= 0) break;
    off += n;
  }
  return off;
}
