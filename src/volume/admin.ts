// Volume administration on an open volume: RAID status, scrub, replace/rebuild, membership
// bookkeeping. The same functions serve the CLI (volume not mounted) and the daemon (mounted).
import { resolve, relative } from 'node:path';
import type { RowRef } from '../raid/index.ts';
import type { Volume } from './volume.ts';
import { writeConfig } from './config.ts';

export type ProgressFn = (p: { phase: string; done: number; total: number; bytesPerSec?: number; etaSeconds?: number }) => void;

/** Rebuild progress as status reports it: rows, bytes written to the new device, speed, ETA. */
export interface RebuildProgress {
  done: number;
  total: number;
  percent: number;
  /** Bytes reconstructed onto the device per second since this rebuild (or its resumption) began. */
  bytesPerSec?: number;
  etaSeconds?: number;
  /** The throttle in effect (`--max-speed`), bytes per second. */
  maxBytesPerSec?: number;
}

export interface RebuildOptions {
  /** Upper bound on the rebuild speed in bytes per second written to the new device (md's sync_speed_max). */
  maxBytesPerSec?: number;
}

export interface StatusReport {
  level: number;
  layout: Record<string, unknown>;
  capacityBytes: number;
  freeBytes: number;
  state: 'ONLINE' | 'DEGRADED' | 'FAULTED';
  canWrite: boolean;
  devices: { slot: number | null; path: string; state: string; readErrors: number; writeErrors: number; checksumErrors: number; rebuild?: RebuildProgress }[];
  damagedFiles: string[];
}

/**
 * The rows a rebuild must reconstruct. Listed inside the filesystem's exclusive section, where no
 * flush is between writing its rows and committing them: every row written before this instant is
 * in the list, and every row written after it (the new device already holds its slot when a rebuild
 * lists rows) goes to the new device as well. Listed outside it, the rows of a flush in flight when
 * a device failed (the spare case) or was replaced were missed: the new device was declared ONLINE
 * without their strips, and losing another device later made those rows unreadable.
 */
export function rowsInUse(vol: Volume): () => AsyncIterable<RowRef> {
  return async function* () {
    const segs = await vol.fs.exclusive(() => vol.meta.segments());
    for (const s of segs) yield { row: s.row, height: s.height };
  };
}

export function damagedChunks(vol: Volume): number[] {
  try {
    return JSON.parse(String(vol.meta.config('damaged_chunks') ?? '[]')) as number[];
  } catch {
    return [];
  }
}

export function status(vol: Volume): StatusReport {
  const live = meters.get(vol);
  let rows: number[] | undefined;
  const devs: StatusReport['devices'] = vol.raid.status().map(({ rebuild, ...d }) => {
    if (!rebuild) return d;
    let { done, total } = rebuild;
    if (!total) {
      // No rebuild running (an unmounted volume, or one not started yet): progress from the cursor.
      rows ??= vol.meta.segments().map((s) => s.row);
      total = rows.length;
      done = rows.filter((row) => row <= rebuild.cursor).length;
    }
    const r: RebuildProgress = { done, total, percent: total ? Math.floor((100 * done) / total) : 0 };
    if (live) {
      r.bytesPerSec = Math.round(live.bytesPerSec);
      if (live.etaSeconds !== undefined) r.etaSeconds = live.etaSeconds;
      if (live.maxBytesPerSec) r.maxBytesPerSec = live.maxBytesPerSec;
    }
    return { ...d, rebuild: r };
  });
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

interface Meter {
  bytesPerSec: number;
  etaSeconds?: number;
  maxBytesPerSec?: number;
}

// The rebuild running on a volume, as status shows it (speed and ETA need a clock the array has not).
const meters = new WeakMap<Volume, Meter>();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The array's progress callback for a rebuild: measures bytes reconstructed onto the new device
 * (the height of each rebuilt row, in the array's ascending row order), reports speed and ETA, and
 * holds the rebuild back to maxBytesPerSec by sleeping between rows.
 */
function rebuildMeter(vol: Volume, progress: ProgressFn | undefined, o: RebuildOptions): { onRow: (done: number, total: number) => Promise<void>; end: () => void } {
  const heights = [...new Map(vol.meta.segments().map((s) => [s.row, s.height])).entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  const prefix = [0];
  for (const h of heights) prefix.push(prefix[prefix.length - 1] + h);
  const bytesAt = (done: number) => prefix[Math.min(done, prefix.length - 1)] + Math.max(0, done - heights.length) * vol.raid.layout.stripSize;
  const max = o.maxBytesPerSec && o.maxBytesPerSec > 0 ? o.maxBytesPerSec : undefined;
  const meter: Meter = { bytesPerSec: 0, maxBytesPerSec: max };
  let start = 0;
  let startBytes = 0;
  const onRow = async (done: number, total: number) => {
    const now = Date.now();
    const bytes = bytesAt(done);
    if (!start) {
      meters.set(vol, meter); // only now: a refused second rebuild (EBUSY) must not hide the running one
      // The clock starts at the first rebuilt row (after the replace's own setup); a resumed
      // rebuild measures only what it does itself.
      start = now;
      startBytes = bytes;
    }
    const moved = bytes - startBytes;
    if (max) {
      const ahead = (moved / max) * 1000 - (now - start);
      if (ahead > 0) await sleep(ahead);
    }
    const elapsed = (Date.now() - start) / 1000;
    meter.bytesPerSec = elapsed > 0 ? moved / elapsed : 0;
    const left = Math.max(0, bytesAt(total) - bytes);
    meter.etaSeconds = meter.bytesPerSec > 0 ? Math.round(left / meter.bytesPerSec) : undefined;
    progress?.({ phase: 'rebuild', done, total, bytesPerSec: meter.bytesPerSec, etaSeconds: meter.etaSeconds });
  };
  const end = () => {
    if (meters.get(vol) === meter) meters.delete(vol);
  };
  return { onRow, end };
}

export async function replace(vol: Volume, oldDev: string, newDev: string, progress?: ProgressFn, force = false, o: RebuildOptions = {}): Promise<void> {
  const old = /^\d+$/.test(oldDev) ? Number(oldDev) : resolve(oldDev);
  const m = rebuildMeter(vol, progress, o);
  try {
    // The new device is recorded in hoardfs.json before the rebuild starts: a crash halfway must
    // find it at the next mount (its superblocks say REBUILDING) and resume, not report the slot MISSING.
    await vol.raid.replace(old, resolve(newDev), rowsInUse(vol), m.onRow, { force, onAdopted: () => saveMembership(vol) });
  } finally {
    m.end();
    saveMembership(vol);
  }
}

export async function resumeRebuild(vol: Volume, progress?: ProgressFn, o: RebuildOptions = {}): Promise<boolean> {
  if (!vol.raid.rebuildPending) return false;
  const m = rebuildMeter(vol, progress, o);
  try {
    await vol.raid.resumeRebuild(rowsInUse(vol), m.onRow);
  } finally {
    m.end();
  }
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
