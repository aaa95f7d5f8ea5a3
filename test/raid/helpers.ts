// Shared fixtures for the RAID tests: tiny strips (4 KiB) and a handful of rows keep every array
// a few sparse 17 MiB files, so the whole failure matrix stays fast.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, rm, writeFile, open as fsOpen } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaidArray, faultyOpenDevice, fileOpenDevice, type LayoutSpec, type OpenDevice } from '../../src/raid/index.ts';

export const STRIP = 4096;
export const DATA_START = 17 * 1024 * 1024;
export const DEV_ROWS = 8;
export const DEV_SIZE = DATA_START + DEV_ROWS * STRIP;

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randBuf(r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

export function sha(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest();
}

/** What the chunk layer does: accept only bytes whose keyed hash matches. */
export function verifierFor(expected: Buffer): (b: Buffer) => boolean {
  const want = sha(expected);
  return (b) => sha(b).equals(want);
}

export interface Fixture {
  dir: string;
  paths: string[];
  rulesPath: string;
  openDevice: OpenDevice;
  expected: Map<number, { data: Buffer; height: number }>;
  logs: string[];
  log: (m: string) => void;
  cleanup(): Promise<void>;
  setRules(rules: unknown[]): Promise<void>;
}

export async function fixture(n: number, prefix = 'd'): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'hoardfs-raid-'));
  const rulesPath = join(dir, 'faults.json');
  await writeFile(rulesPath, '[]');
  const logs: string[] = [];
  return {
    dir,
    paths: Array.from({ length: n }, (_, i) => join(dir, `${prefix}${i}.img`)),
    rulesPath,
    openDevice: faultyOpenDevice(fileOpenDevice, rulesPath),
    expected: new Map(),
    logs,
    log: (m) => logs.push(m),
    cleanup: () => rm(dir, { recursive: true, force: true }),
    setRules: (rules) => writeFile(rulesPath, JSON.stringify(rules)),
  };
}

export async function createArray(f: Fixture, layout: LayoutSpec, extra: { spares?: string[]; rows?: number } = {}): Promise<RaidArray> {
  return RaidArray.create({
    volumeId: Buffer.alloc(16, 7),
    layout: { stripSize: STRIP, ...layout },
    devices: f.paths,
    spares: extra.spares,
    deviceSize: DATA_START + (extra.rows ?? DEV_ROWS) * STRIP,
    openDevice: f.openDevice,
    log: f.log,
  });
}

export function openArray(f: Fixture, extra: { spares?: string[]; checkpoint?: number } = {}): Promise<RaidArray> {
  return RaidArray.open({ devices: f.paths, spares: extra.spares, openDevice: f.openDevice, log: f.log, rebuildCheckpointRows: extra.checkpoint });
}

/** Writes rows 0..count-1 with lengths that cover full, tiny, odd and strip-straddling sizes. */
export async function fillRows(arr: RaidArray, f: Fixture, r: () => number, count = DEV_ROWS - 1): Promise<void> {
  const full = arr.rowDataBytes;
  const lengths = [full, 1, full - 1, 4097, STRIP * 2 + 5, (r() * full) | 0, full, (r() * full) | 0 || 1];
  for (let row = 0; row < count; row++) {
    const data = randBuf(r, Math.min(full, lengths[row % lengths.length]));
    const height = await arr.writeRow(row, data);
    f.expected.set(row, { data, height });
  }
}

export function rowsInUse(f: Fixture) {
  return () => [...f.expected].map(([row, e]) => ({ row, height: e.height }));
}

/** Full row plus a few random ranges per row; returns nothing, asserts through `check`. */
export async function readEverything(
  arr: RaidArray,
  f: Fixture,
  r: () => number,
  opts: { verify: boolean; ranges?: number; onError?: (row: number, e: unknown) => void } = { verify: true },
): Promise<void> {
  for (const [row, e] of f.expected) {
    const ranges: [number, number][] = [[0, e.data.length]];
    for (let i = 0; i < (opts.ranges ?? 2); i++) {
      const off = (r() * e.data.length) | 0;
      ranges.push([off, Math.min(e.data.length - off, 1 + ((r() * 3 * STRIP) | 0))]);
    }
    for (const [off, len] of ranges) {
      const want = e.data.subarray(off, off + len);
      try {
        const got = await arr.readRange(row, e.height, off, len, opts.verify ? verifierFor(want) : undefined);
        if (!got.equals(want)) throw Object.assign(new Error(`row ${row} [${off},+${len}) returned WRONG bytes`), { wrong: true });
      } catch (err) {
        if ((err as { wrong?: boolean }).wrong || !opts.onError) throw err;
        opts.onError(row, err);
      }
    }
  }
}

export interface Snapshot {
  head: Buffer[];
  data: Buffer[];
}

export async function snapshot(paths: string[]): Promise<Snapshot> {
  const s: Snapshot = { head: [], data: [] };
  for (const p of paths) {
    const fh = await fsOpen(p, 'r');
    const head = Buffer.alloc(8192);
    await fh.read(head, 0, head.length, 0);
    const data = Buffer.alloc(DEV_ROWS * STRIP);
    await fh.read(data, 0, data.length, DATA_START);
    await fh.close();
    s.head.push(head);
    s.data.push(data);
  }
  return s;
}

/** Puts devices back as snapshotted; `only` limits it to the ones a case touched. */
export async function restore(paths: string[], s: Snapshot, only?: number[]): Promise<void> {
  for (let i = 0; i < paths.length; i++) {
    if (only && !only.includes(i)) continue;
    const fh = await fsOpen(paths[i], constants.O_RDWR | constants.O_CREAT);
    await fh.truncate(DEV_SIZE);
    await fh.write(s.head[i], 0, s.head[i].length, 0);
    await fh.write(s.data[i], 0, s.data[i].length, DATA_START);
    await fh.close();
  }
}

export async function readDeviceData(path: string): Promise<Buffer> {
  const fh = await fsOpen(path, 'r');
  const data = Buffer.alloc(DEV_ROWS * STRIP);
  await fh.read(data, 0, data.length, DATA_START);
  await fh.close();
  return data;
}
