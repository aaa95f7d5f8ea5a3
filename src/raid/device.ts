// The device abstraction: a positional read/write file. Everything in src/raid goes through an
// OpenDevice so that tests and the fault injector can stand between the array and the files.

import { constants, promises as fsp } from 'node:fs';

export interface DeviceIO {
  read(buf: Buffer, pos: number): Promise<number>;
  write(buf: Buffer, pos: number): Promise<void>;
  sync(): Promise<void>;
  size(): Promise<number>;
  truncate(n: number): Promise<void>;
  close(): Promise<void>;
}

export type OpenDevice = (path: string, create: boolean) => Promise<DeviceIO>;

export const fileOpenDevice: OpenDevice = async (path, create) => {
  const fh = await fsp.open(path, create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR, 0o600);
  return {
    async read(buf, pos) {
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
