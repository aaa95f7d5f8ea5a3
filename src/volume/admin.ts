// Volume administration on an open volume: RAID status, scrub, replace/rebuild, membership
// bookkeeping. The same functions serve the CLI (volume not mounted) and the daemon (mounted).
import { resolve, relative } from 'node:path';
import type { RowRef } from '../raid/index.ts';
import type { Volume } from './volume.ts';
import { writeConfig } from './config.ts';

export type ProgressFn = (p: { phase: string; done: number; total: number; bytesPerSec?: number }) => void;

export interface StatusReport {
  level: number;
  layout: Record<string, unknown>;
  capacityBytes: number;
  freeBytes: number;
  state: 'ONLINE' | 'DEGRADED' | 'FAULTED';
  canWrite: boolean;
  devices: { slot: number | null; path: string; state: string; readErrors: number; writeErrors: number; checksumErrors: number; rebuild?: { done: number; total: number; percent: number } }[];
  damagedFiles: string[];
}

export function rowsInUse(vol: Volume): () => Iterable<RowRef> {
  return () => vol.meta.segments().map((s) => ({ row: s.row, height: s.height }));
}

export function damagedChunks(vol: Volume): number[] {
  try {
    return JSON.parse(String(vol.meta.config('damaged_chunks') ?? '[]')) as number[];
  } catch {
    return [];
  }
}

export function status(vol: Volume): StatusReport {
  const devs: StatusReport['devices'] = vol.raid.status().map(({ rebuild, ...d }) =>
    rebuild ? { ...d, rebuild: { ...rebuild, percent: rebuild.total ? Math.floor((100 * rebuild.done) / rebuild.total) : 0 } } : d,
  );
  const damaged = damagedChunks(vol);
  return {
    level: vol.raid.layout.level,
    layout: { ...vol.raid.layout },
    capacityBytes: vol.raid.rows * vol.raid.rowDataBytes,
    freeBytes: vol.store.freeRows * vol.raid.rowDataBytes,
    state: !vol.raid.canWrite ? 'FAULTED' : vol.raid.degraded ? 'DEGRADED' : 'ONLINE',
    canWrite: vol.raid.canWrite,
    devices: devs,
    damagedFiles: damaged.length ? vol.meta.filesUsingChunks(damaged) : [],
  };
}

/** Records which file is in which slot (after a replace or a spare taking over). */
export function saveMembership(vol: Volume): void {
  const st = vol.raid.status();
  const rel = (p: string) => {
    const abs = resolve(p);
    return abs.startsWith(vol.dir + '/') ? relative(vol.dir, abs) : abs;
  };
  const devices = st.filter((d) => d.slot !== null).sort((a, b) => a.slot! - b.slot!).map((d) => rel(d.path));
  const spares = st.filter((d) => d.slot === null).map((d) => rel(d.path));
  const c = vol.config;
  if (JSON.stringify(devices) === JSON.stringify(c.devices) && JSON.stringify(spares) === JSON.stringify(c.spares)) return;
  c.devices = devices;
  c.spares = spares;
  writeConfig(vol.dir, c);
}

function rate(start: number, bytes: number): number {
  const s = (Date.now() - start) / 1000;
  return s > 0 ? bytes / s : 0;
}

export async function replace(vol: Volume, oldDev: string, newDev: string, progress?: ProgressFn, force = false): Promise<void> {
  const start = Date.now();
  const rowBytes = vol.raid.rowDataBytes;
  const old = /^\d+$/.test(oldDev) ? Number(oldDev) : resolve(oldDev);
  const p = (done: number, total: number) => progress?.({ phase: 'rebuild', done, total, bytesPerSec: rate(start, done * rowBytes) });
  try {
    await vol.raid.replace(old, resolve(newDev), rowsInUse(vol), p, { force });
  } finally {
    saveMembership(vol);
  }
}

export async function resumeRebuild(vol: Volume, progress?: ProgressFn): Promise<boolean> {
  if (!vol.raid.rebuildPending) return false;
  const start = Date.now();
  const rowBytes = vol.raid.rowDataBytes;
  await vol.raid.resumeRebuild(rowsInUse(vol), (done, total) => progress?.({ phase: 'rebuild', done, total, bytesPerSec: rate(start, done * rowBytes) }));
  saveMembership(vol);
  return true;
}

export interface ScrubReport {
  rows: number;
  chunks: number;
  bytes: number;
  repairedChunks: number;
  unrecoverableChunks: number;
  parityMismatches: number;
  parityRepaired: number;
  damagedFiles: string[];
  seconds: number;
}

/**
 * Reads every chunk through the array with its checksum as the judge (a bad copy is rebuilt from
 * redundancy and rewritten), then checks every row's parity/mirrors against verified data.
 */
export async function scrub(vol: Volume, progress?: ProgressFn): Promise<ScrubReport> {
  const start = Date.now();
  const segs = vol.meta.segments().filter((s) => s.state === 1);
  const r: ScrubReport = { rows: 0, chunks: 0, bytes: 0, repairedChunks: 0, unrecoverableChunks: 0, parityMismatches: 0, parityRepaired: 0, damagedFiles: [], seconds: 0 };
  const lost: number[] = [];
  for (const s of segs) {
    const chunks = vol.meta.chunksInSegment(s.row);
    let rowOk = true;
    for (const c of chunks) {
      const healedBefore = vol.raid.errorCounts().checksumErrors;
      try {
        await vol.store.readUncached({ hash: c.hash, segment: c.segment, height: c.height, off: c.off, storedLen: c.storedLen, plainLen: c.plainLen });
        r.bytes += c.plainLen;
        if (vol.raid.errorCounts().checksumErrors > healedBefore) r.repairedChunks++;
      } catch {
        rowOk = false;
        lost.push(c.id);
      }
      r.chunks++;
    }
    if (rowOk && vol.raid.canWrite) {
      const pr = await vol.raid.checkRow(s.row, s.height, true);
      r.parityMismatches += pr.mismatches;
      r.parityRepaired += pr.repaired;
    }
    r.rows++;
    progress?.({ phase: 'scrub', done: r.rows, total: segs.length, bytesPerSec: rate(start, r.bytes) });
  }
  r.unrecoverableChunks = lost.length;
  vol.meta.apply({ op: 'setConfig', key: 'damaged_chunks', value: JSON.stringify(lost) });
  r.damagedFiles = lost.length ? vol.meta.filesUsingChunks(lost) : [];
  r.seconds = (Date.now() - start) / 1000;
  return r;
}
