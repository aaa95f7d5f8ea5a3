// Metadata snapshots under torture, and load. Snapshot: random operations, unmount (which
// snapshots), more operations, SIGKILL, delete meta.db, restore-metadata: everything up to the
// snapshot reads back byte for byte. Load: 16 processes of mixed operations for a bounded time:
// no deadlock, no error, bounded daemon memory (VmHWM), and the differential check holds.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, makeVolume } from '../../helpers.ts';
import { daemonPid, differential, mountWith, setup, tmpfsDir } from './differential.ts';
import { killDaemon } from './crash.ts';
import { subSeed } from './rng.ts';
import { diffTrees, snapshotTree } from './tree.ts';

export interface SnapResult {
  operations: number;
  crashes: number;
  problems: string[];
}

export async function snapshotTorture(o: { seed: number; workers: number; batches: number; log?: (m: string) => void }): Promise<SnapResult> {
  const v = await makeVolume([], { encrypted: true });
  const ref = tmpfsDir();
  const res: SnapResult = { operations: 0, crashes: 0, problems: [] };
  try {
    await mountWith(v);
    const a = await differential({ hoard: v.mnt, ref: ref.path, seed: o.seed, workers: o.workers, opsPerBatch: 60, batches: o.batches, shrinkBudgetMs: 20_000 });
    res.operations += a.operations;
    res.problems.push(...a.mismatches);
    await v.umount(); // takes the snapshot
    const atSnapshot = snapshotTree(ref.path);
    await mountWith(v);
    const b = await differential({ hoard: v.mnt, ref: ref.path, seed: subSeed(o.seed, 1), workers: o.workers, opsPerBatch: 60, batches: 1, shrinkBudgetMs: 20_000 });
    res.operations += b.operations;
    await killDaemon(v);
    res.crashes++;
    for (const n of ['meta.db', 'meta.db-wal', 'meta.db-shm']) fs.rmSync(join(v.dir, n), { force: true });
    const r = await hoardfs(['restore-metadata', v.dir, ...v.secretArgs]);
    if (r.code !== 0) res.problems.push(`seed ${o.seed}: restore-metadata failed: ${r.stdout}${r.stderr}`);
    else {
      const f = await hoardfs(['fsck', v.dir, ...v.secretArgs]);
      if (f.code !== 0) res.problems.push(`seed ${o.seed}: fsck after restore-metadata: ${f.stdout}${f.stderr}`);
      await mountWith(v);
      const d = diffTrees(atSnapshot, snapshotTree(v.mnt));
      if (d.length) res.problems.push(`seed ${o.seed}: after restore-metadata the tree differs from the snapshot:\n  ${d.join('\n  ')}`);
      await v.umount();
    }
  } finally {
    await v.cleanup();
    ref.cleanup();
  }
  return res;
}

export interface LoadResult {
  operations: number;
  peakRssKiB: number;
  problems: string[];
}

export async function loadTest(o: { seed: number; workers: number; seconds: number; maxRssKiB: number; log?: (m: string) => void }): Promise<LoadResult> {
  const e = await setup(['--level', '5', '--device', '{root}/d0.img', '--device', '{root}/d1.img', '--device', '{root}/d2.img'], { encrypted: true });
  const res: LoadResult = { operations: 0, peakRssKiB: 0, problems: [] };
  try {
    const pid = daemonPid(e.vol.dir);
    const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    const r = await differential({
      hoard: e.vol.mnt,
      ref: e.ref.path,
      seed: o.seed,
      workers: o.workers,
      opsPerBatch: 50,
      batches: 1e9,
      deadline: Date.now() + o.seconds * 1000,
      gen: { bigIo: true },
      shrinkBudgetMs: 30_000,
      between: async () => void (res.peakRssKiB = Math.max(res.peakRssKiB, hwm())),
    });
    res.peakRssKiB = Math.max(res.peakRssKiB, hwm());
    res.operations = r.operations;
    res.problems.push(...r.mismatches);
    if (res.peakRssKiB > o.maxRssKiB) res.problems.push(`daemon peak RSS ${res.peakRssKiB} KiB exceeds ${o.maxRssKiB} KiB`);
    o.log?.(`load: ${r.operations} operations in ${r.batches} batches, daemon VmHWM ${(res.peakRssKiB / 1024).toFixed(0)} MiB`);
  } finally {
    await e.cleanup();
  }
  return res;
}
