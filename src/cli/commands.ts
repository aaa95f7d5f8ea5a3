// Commands beyond mkfs/mount/umount/stats/gc/fsck: RAID (status, scrub, replace) and, in
// keys.ts, key slots and headers. A mounted volume is served by its daemon through the control
// socket; an unmounted one is opened here.
import { resolve } from 'node:path';
import type { Handler } from '../volume/control.ts';
import type { Volume } from '../volume/volume.ts';
import { replace as replaceDevice, resumeRebuild, scrub as scrubVolume, status as volumeStatus, type ScrubReport, type StatusReport } from '../volume/admin.ts';
import { formatBytes, parse } from './args.ts';
import * as common from './common.ts';
import { progressBar } from './progress.ts';
import { keyCommands, keyDaemonHandlers } from './keys.ts';


function printStatus(s: StatusReport, out: (l: string) => void): void {
  out(`  state: ${s.state}${s.canWrite ? '' : ' (read-only: too many devices lost)'}`);
  const l = s.layout as { level: number; devices: number; stripSize: number; groupSize?: number; mirrors?: number };
  out(`  level: RAID ${l.level} over ${l.devices} devices, strip ${formatBytes(l.stripSize)}${l.level === 50 || l.level === 60 ? `, groups of ${l.groupSize}` : ''}${l.level === 10 ? `, ${l.mirrors}-way mirrors` : ''}`);
  out(`  capacity: ${formatBytes(s.capacityBytes)} usable, ${formatBytes(s.freeBytes)} free`);
  out('');
  out(`  ${'SLOT'.padEnd(5)} ${'STATE'.padEnd(16)} ${'READ'.padStart(6)} ${'WRITE'.padStart(6)} ${'CKSUM'.padStart(6)}  DEVICE`);
  for (const d of s.devices) {
    const st = d.rebuild ? `REBUILDING ${d.rebuild.percent}%` : d.state;
    out(`  ${String(d.slot ?? '-').padEnd(5)} ${st.padEnd(16)} ${String(d.readErrors).padStart(6)} ${String(d.writeErrors).padStart(6)} ${String(d.checksumErrors).padStart(6)}  ${d.path}`);
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
  const { values: v, positionals } = parse(argv, { force: { type: 'boolean' }, ...h.secretOptions }, 'hoardfs replace VOLUME OLD_DEVICE NEW_DEVICE [--force]', { min: 3, max: 3 });
  const [vdir, oldDev, newDev] = positionals;
  const dir = resolve(vdir);
  const bar = progressBar('rebuild');
  const viaDaemon = await h.viaDaemon(dir, 'replace', { old: /^\d+$/.test(oldDev) ? oldDev : resolve(oldDev), new: resolve(newDev), force: !!v.force }, bar.update);
  if (viaDaemon === undefined) {
    const vol = await h.openOffline(dir, v);
    try {
      await replaceDevice(vol, oldDev, newDev, bar.update, !!v.force);
    } finally {
      await vol.close();
    }
  }
  bar.done();
  h.out(`${newDev} replaced ${oldDev}; rebuild complete`);
}

async function rebuildCmd(argv: string[]): Promise<void> {
  const h = common;
  const { values: v, positionals } = parse(argv, { ...h.secretOptions }, 'hoardfs rebuild VOLUME', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  const bar = progressBar('rebuild');
  let did = (await h.viaDaemon(dir, 'rebuild', {}, bar.update)) as boolean | undefined;
  if (did === undefined) {
    const vol = await h.openOffline(dir, v);
    try {
      did = await resumeRebuild(vol, bar.update);
    } finally {
      await vol.close();
    }
  }
  bar.done();
  h.out(did ? 'rebuild complete' : 'nothing to rebuild');
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
      await replaceDevice(vol, String(a.old), String(a.new), progress, !!a.force);
      return true;
    },
    rebuild: async (_a, progress) => resumeRebuild(vol, progress),
    ...keyDaemonHandlers(vol),
  };
}
