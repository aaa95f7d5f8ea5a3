// Commands beyond mkfs/mount/umount/stats/gc/fsck: RAID (status, scrub, replace) and, in
// keys.ts, key slots and headers. A mounted volume is served by its daemon through the control
// socket; an unmounted one is opened here.
import { resolve } from 'node:path';
import type { Handler } from '../volume/control.ts';
import type { Volume } from '../volume/volume.ts';
import { replace as replaceDevice, resumeRebuild, scrub as scrubVolume, status as volumeStatus, type ScrubReport, type StatusReport } from '../volume/admin.ts';
import { formatBytes, parse, parseSize } from './args.ts';
import * as common from './common.ts';
import { progressBar } from './progress.ts';
import { keyCommands, keyDaemonHandlers } from './keys.ts';


/** The layout in words: how a row is spread over the devices. */
export function describeLayout(l: { level: number; devices: number; groupSize?: number; mirrors?: number }): string {
  const n = l.devices;
  const g = l.groupSize ?? n;
  switch (l.level) {
    case 0:
      return `striped over ${n} device${n === 1 ? '' : 's'}, no redundancy`;
    case 1:
      return `${n}-way mirror, survives ${n - 1} lost device${n - 1 === 1 ? '' : 's'}`;
    case 5:
    case 6: {
      const p = l.level === 5 ? 1 : 2;
      return `${n - p} data + ${p === 1 ? 'P' : 'P+Q'} per row, survives any ${p} lost device${p === 1 ? '' : 's'}`;
    }
    case 10: {
      const m = l.mirrors ?? 2;
      return `striped over ${n / m} ${m}-way mirrors, survives ${m - 1} lost device${m - 1 === 1 ? '' : 's'} per mirror`;
    }
    case 50:
    case 60: {
      const p = l.level === 50 ? 1 : 2;
      return `striped over ${n / g} groups of ${g} (${g - p} data + ${p === 1 ? 'P' : 'P+Q'}), survives ${p} lost device${p === 1 ? '' : 's'} per group`;
    }
  }
  return `RAID ${l.level}`;
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function printStatus(s: StatusReport, out: (l: string) => void): void {
  out(`  state: ${s.state}${s.canWrite ? '' : ' (read-only: too many devices lost)'}`);
  const l = s.layout as { level: number; devices: number; stripSize: number; groupSize?: number; mirrors?: number };
  out(`  level: RAID ${l.level} over ${l.devices} devices, strip ${formatBytes(l.stripSize)}${l.level === 50 || l.level === 60 ? `, groups of ${l.groupSize}` : ''}${l.level === 10 ? `, ${l.mirrors}-way mirrors` : ''}`);
  out(`  layout: ${describeLayout(l)}`);
  out(`  capacity: ${formatBytes(s.capacityBytes)} usable, ${formatBytes(s.freeBytes)} free`);
  out('');
  out(`  ${'SLOT'.padEnd(5)} ${'STATE'.padEnd(16)} ${'READ'.padStart(6)} ${'WRITE'.padStart(6)} ${'CKSUM'.padStart(6)}  DEVICE`);
  for (const d of s.devices) {
    const r = d.rebuild;
    const st = r ? `REBUILDING ${r.percent}%` : d.state;
    let extra = '';
    if (r) {
      const parts = [`${r.done}/${r.total} rows`];
      if (r.bytesPerSec !== undefined) parts.push(`${formatBytes(r.bytesPerSec)}/s${r.maxBytesPerSec ? ` (max ${formatBytes(r.maxBytesPerSec)}/s)` : ''}`);
      else parts.push('not running: mount the volume or run hoardfs rebuild');
      if (r.etaSeconds !== undefined) parts.push(`ETA ${formatSeconds(r.etaSeconds)}`);
      extra = `  [${parts.join(', ')}]`;
    }
    out(`  ${String(d.slot ?? '-').padEnd(5)} ${st.padEnd(16)} ${String(d.readErrors).padStart(6)} ${String(d.writeErrors).padStart(6)} ${String(d.checksumErrors).padStart(6)}  ${d.path}${extra}`);
  }
  out('');
  if (s.damagedFiles.length) {
    out(`  files damaged beyond repair (${s.damagedFiles.length}):`);
    for (const f of s.damagedFiles) out(`    ${f}`);
  } else out('  errors: no known data errors');
}

async function statusCmd(argv: string[]): Promise<void> {
  const h = common;
  const { values: v, positionals } = parse(argv, { json: { type: 'boolean' }, ...h.secretOptions }, 'hoardfs status VOLUME [--json]', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  let s = (await h.viaDaemon(dir, 'status')) as StatusReport | undefined;
  if (!s) {
    const vol = await h.openOffline(dir, v, { lock: false, readonly: true });
    try {
      s = volumeStatus(vol);
    } finally {
      await vol.close();
    }
  }
  if (v.json) h.out(JSON.stringify(s));
  else {
    h.out(`volume: ${positionals[0]}`);
    printStatus(s, h.out);
  }
}

function printScrub(r: ScrubReport, out: (l: string) => void): void {
  out(`scrubbed ${r.rows} rows, ${r.chunks} chunks (${formatBytes(r.bytes)}) in ${r.seconds.toFixed(1)} s`);
  out(`repaired: ${r.repairedChunks} bad copies, ${r.parityRepaired} parity/mirror strips (${r.parityMismatches} mismatches)`);
  out(`unrecoverable chunks: ${r.unrecoverableChunks}`);
  for (const f of r.damagedFiles) out(`damaged: ${f}`);
}

async function scrubCmd(argv: string[]): Promise<void> {
  const h = common;
  const { values: v, positionals } = parse(argv, { json: { type: 'boolean' }, ...h.secretOptions }, 'hoardfs scrub VOLUME [--json]', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  const bar = progressBar('scrub');
  let r = (await h.viaDaemon(dir, 'scrub', {}, bar.update)) as ScrubReport | undefined;
  if (!r) {
    const vol = await h.openOffline(dir, v);
    try {
      r = await scrubVolume(vol, bar.update);
    } finally {
      await vol.close();
    }
  }
  bar.done();
  if (v.json) h.out(JSON.stringify(r));
  else printScrub(r, h.out);
  if (r.unrecoverableChunks) process.exitCode = 1;
}

async function replaceCmd(argv: string[]): Promise<void> {
  const h = common;
  const { values: v, positionals } = parse(
    argv,
    { force: { type: 'boolean' }, 'max-speed': { type: 'string' }, ...h.secretOptions },
    'hoardfs replace VOLUME OLD_DEVICE NEW_DEVICE [--max-speed SIZE] [--force]',
    { min: 3, max: 3 },
  );
  const [vdir, oldDev, newDev] = positionals;
  const maxBytesPerSec = maxSpeed(v);
  const dir = resolve(vdir);
  const bar = progressBar('rebuild');
  const viaDaemon = await h.viaDaemon(
    dir,
    'replace',
    { old: /^\d+$/.test(oldDev) ? oldDev : resolve(oldDev), new: resolve(newDev), force: !!v.force, maxBytesPerSec },
    bar.update,
  );
  if (viaDaemon === undefined) {
    const vol = await h.openOffline(dir, v);
    try {
      await replaceDevice(vol, oldDev, newDev, bar.update, !!v.force, { maxBytesPerSec });
    } finally {
      await vol.close();
    }
  }
  bar.done();
  h.out(`${newDev} replaced ${oldDev}; rebuild complete`);
}

async function rebuildCmd(argv: string[]): Promise<void> {
  const h = common;
  const { values: v, positionals } = parse(argv, { 'max-speed': { type: 'string' }, ...h.secretOptions }, 'hoardfs rebuild VOLUME [--max-speed SIZE]', { min: 1, max: 1 });
  const maxBytesPerSec = maxSpeed(v);
  const dir = resolve(positionals[0]);
  const bar = progressBar('rebuild');
  let did = (await h.viaDaemon(dir, 'rebuild', { maxBytesPerSec }, bar.update)) as boolean | undefined;
  if (did === undefined) {
    const vol = await h.openOffline(dir, v);
    try {
      did = await resumeRebuild(vol, bar.update, { maxBytesPerSec });
    } finally {
      await vol.close();
    }
  }
  bar.done();
  h.out(did ? 'rebuild complete' : 'nothing to rebuild');
}

/** --max-speed SIZE: bytes per second written to the new device (like md's sync_speed_max), e.g. 10M. */
function maxSpeed(v: Record<string, unknown>): number | undefined {
  const s = v['max-speed'] as string | undefined;
  return s === undefined ? undefined : parseSize(s.replace(/\/s$/i, ''), '--max-speed');
}

function speedArg(x: unknown): number | undefined {
  const n = Number(x);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

export const commands: Record<string, (argv: string[]) => Promise<void>> = {
  status: statusCmd,
  scrub: scrubCmd,
  replace: replaceCmd,
  rebuild: rebuildCmd,
  ...keyCommands,
};

export function daemonHandlers(vol: Volume): Record<string, Handler> {
  return {
    status: async () => volumeStatus(vol),
    scrub: async (_a, progress) => scrubVolume(vol, progress),
    replace: async (a, progress) => {
      await replaceDevice(vol, String(a.old), String(a.new), progress, !!a.force, { maxBytesPerSec: speedArg(a.maxBytesPerSec) });
      return true;
    },
    rebuild: async (a, progress) => resumeRebuild(vol, progress, { maxBytesPerSec: speedArg(a.maxBytesPerSec) }),
    ...keyDaemonHandlers(vol),
  };
}
