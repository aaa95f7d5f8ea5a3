// Faults from below, randomized. RAID 6: up to two devices at a time fail reads, fail writes,
// come back with flipped bytes or vanish; the differential check must keep holding (no error,
// no wrong byte) and `status --json` must mark the devices. RAID 0: no redundancy, so a fault
// must surface as EIO (or ENOSPC) and never as wrong bytes, and what was committed before the
// fault reads back once the fault is gone.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, makeVolume, type TestVolume } from '../../helpers.ts';
import { differential, mountWith, tmpfsDir } from './differential.ts';
import { Rng, subSeed } from './rng.ts';
import { snapshotTree, diffTrees, type Tree } from './tree.ts';
import { runOp } from './ops.ts';

const DATA_START = 17 * 1024 * 1024;

export interface FaultResult {
  operations: number;
  faults: number;
  problems: string[];
}

interface DevStatus {
  path: string;
  state: string;
  readErrors: number;
  writeErrors: number;
  checksumErrors: number;
}

export async function status(v: TestVolume): Promise<{ state: string; devices: DevStatus[] }> {
  const r = await hoardfs(['status', v.dir, '--json', ...v.secretArgs]);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Flips bytes in the written part of a device's data area; returns the original bytes. */
export function flipBytes(dev: string, rng: Rng, runs: number): { pos: number; orig: Buffer }[] {
  const fd = fs.openSync(dev, 'r+');
  try {
    const span = Buffer.alloc(24 * 1024 * 1024);
    const n = fs.readSync(fd, span, 0, span.length, DATA_START);
    const used: number[] = [];
    for (let i = 0; i < n; i += 4096) if (span[i] || span[i + 100] || span[i + 2000]) used.push(i);
    if (!used.length) return [];
    const flipped: { pos: number; orig: Buffer }[] = [];
    for (let k = 0; k < runs; k++) {
      const at = rng.pick(used) + rng.int(0, 3000);
      const len = rng.int(1, 64);
      const b = Buffer.alloc(len);
      fs.readSync(fd, b, 0, len, DATA_START + at);
      flipped.unshift({ pos: DATA_START + at, orig: Buffer.from(b) });
      for (let i = 0; i < len; i++) b[i] ^= 1 + rng.int(0, 254);
      fs.writeSync(fd, b, 0, len, DATA_START + at);
    }
    fs.fsyncSync(fd);
    return flipped;
  } finally {
    fs.closeSync(fd);
  }
}

function writeRules(path: string, rules: unknown[]): void {
  // A new inode each time: the injector re-reads the file when its inode, size or mtime moves.
  fs.writeFileSync(path + '.tmp', JSON.stringify(rules));
  fs.renameSync(path + '.tmp', path);
}

/** RAID 6 over 6 devices: the differential run goes on while up to two devices misbehave. */
export async function raid6Faults(o: { seed: number; batches: number; deadline?: number; workers: number; log?: (m: string) => void }): Promise<FaultResult> {
  const log = o.log ?? (() => {});
  const rng = new Rng(subSeed(o.seed, 6));
  const devs = Array.from({ length: 6 }, (_, i) => ['--device', `{root}/d${i}.img`]).flat();
  const v = await makeVolume(['--level', '6', ...devs], { encrypted: true });
  const ref = tmpfsDir();
  const rules = join(v.root, 'faults.json');
  writeRules(rules, []);
  const env = { HOARDFS_FAULTS: rules, HOARDFS_UPKEEP_MS: '1000' };
  const res: FaultResult = { operations: 0, faults: 0, problems: [] };
  const devPath = (i: number) => join(v.root, `d${i}.img`);
  try {
    await mountWith(v, env);
    let mounted = true;
    let batch = 0;
    while (batch < o.batches && (!o.deadline || Date.now() < o.deadline)) {
      // Two victims per episode: the most RAID 6 promises to survive.
      const victims = [rng.int(0, 5)];
      if (rng.chance(0.6)) victims.push((victims[0] + rng.int(1, 5)) % 6);
      const kind = rng.pick(['read-eio', 'write-eio', 'flip', 'vanish', 'mixed'] as const);
      log(`raid6 episode: ${kind} on d${victims.join(', d')}`);
      const rs: unknown[] = [];
      for (const [k, d] of victims.entries()) {
        const kk = kind === 'mixed' ? (k === 0 ? 'read-eio' : 'write-eio') : kind;
        if (kk === 'read-eio') rs.push({ path: `d${d}.img`, op: 'read', error: 'EIO', from: DATA_START, count: rng.chance(0.5) ? rng.int(1, 20) : undefined });
        if (kk === 'write-eio') rs.push({ path: `d${d}.img`, op: 'write', error: 'EIO', from: DATA_START, count: rng.int(1, 3) });
      }
      res.faults += victims.length;
      if (kind === 'flip' || kind === 'vanish') {
        // Offline damage: unmount, damage, mount again (the chunk cache cannot hide it then).
        await v.umount();
        mounted = false;
        const saved = new Map<number, string>();
        for (const d of victims) {
          if (kind === 'flip') flipBytes(devPath(d), rng, rng.int(1, 8));
          else {
            saved.set(d, devPath(d) + '.gone');
            fs.renameSync(devPath(d), devPath(d) + '.gone');
          }
        }
        await mountWith(v, env);
        mounted = true;
        if (kind === 'vanish') {
          const s = await status(v);
          for (const d of victims) {
            const st = s.devices.find((x) => x.path.endsWith(`d${d}.img`));
            if (!st || st.state === 'ONLINE') res.problems.push(`seed ${o.seed}: vanished d${d}.img is shown as ${st?.state ?? 'absent'} in status --json`);
          }
        }
        const r = await differential({ hoard: v.mnt, ref: ref.path, seed: subSeed(o.seed, batch), workers: o.workers, opsPerBatch: 40, batches: 2, shrinkBudgetMs: 20_000 });
        res.operations += r.operations;
        batch += r.batches;
        for (const m of r.mismatches) res.problems.push(`raid6 ${kind} on d${victims.join(',d')}: ${m}`);
        if (kind === 'vanish') {
          // Bring the devices back: replace each from the survivors (the volume is then whole).
          for (const [d, gone] of saved) {
            fs.rmSync(gone);
            const r2 = await hoardfs(['replace', v.dir, devPath(d), devPath(d), '--force', ...v.secretArgs]);
            if (r2.code !== 0) res.problems.push(`replace of vanished d${d}.img failed: ${r2.stderr}`);
          }
        } else {
          const sc = await hoardfs(['scrub', v.dir, '--json', ...v.secretArgs]);
          if (sc.code !== 0) res.problems.push(`scrub after flipped bytes: exit ${sc.code} ${sc.stdout} ${sc.stderr}`);
        }
      } else {
        writeRules(rules, rs);
        const r = await differential({ hoard: v.mnt, ref: ref.path, seed: subSeed(o.seed, batch), workers: o.workers, opsPerBatch: 40, batches: 2, shrinkBudgetMs: 20_000 });
        res.operations += r.operations;
        batch += r.batches;
        for (const m of r.mismatches) res.problems.push(`raid6 ${kind} on d${victims.join(',d')}: ${m}`);
        // Make sure a row is written while the rules are in force (the batch may have been
        // stored by the background flush before, or not at all yet).
        const probe = join(v.mnt, `.probe-${batch}`);
        let probeErr = '';
        try {
          const fd = fs.openSync(probe, 'w');
          fs.writeSync(fd, crypto.randomBytes(65536));
          fs.fsyncSync(fd);
          fs.closeSync(fd);
          fs.unlinkSync(probe);
        } catch (e) {
          probeErr = (e as Error).message;
        }
        if (probeErr) res.problems.push(`seed ${o.seed}: ${kind} on d${victims.join(',d')}: a write failed on RAID 6 with at most two bad devices: ${probeErr}`);
        const s = await status(v);
        const marked = victims.some((d) => {
          const st = s.devices.find((x) => x.path.endsWith(`d${d}.img`));
          return st && (st.state !== 'ONLINE' || st.readErrors + st.writeErrors + st.checksumErrors > 0);
        });
        // A read rule only fires if a read reached that device (the cache may serve everything).
        const writeRule = kind === 'write-eio' || (kind === 'mixed' && victims.length > 1);
        if (writeRule && !marked) res.problems.push(`seed ${o.seed}: ${kind} on d${victims.join(',d')} left no mark in status --json: ${JSON.stringify(s.devices)}`);
        writeRules(rules, []);
        // Faulted devices come back through a rebuild in place.
        for (const d of victims) {
          const st = (await status(v)).devices.find((x) => x.path.endsWith(`d${d}.img`));
          if (st && st.state !== 'ONLINE') {
            const r2 = await hoardfs(['replace', v.dir, devPath(d), devPath(d), '--force', ...v.secretArgs]);
            if (r2.code !== 0) res.problems.push(`replace of faulted d${d}.img failed: ${r2.stderr}`);
          }
        }
      }
      if (res.problems.length) break;
    }
    if (mounted) {
      const d = diffTrees(snapshotTree(ref.path), snapshotTree(v.mnt));
      if (d.length) res.problems.push(`raid6: trees differ at the end:\n  ${d.join('\n  ')}`);
    }
  } finally {
    await v.cleanup();
    ref.cleanup();
  }
  return res;
}

/** Compares every file with the reference: equal or EIO, never other bytes. */
function equalOrEio(hoard: string, want: Tree): { eio: number; wrong: string[] } {
  let eio = 0;
  const wrong: string[] = [];
  for (const [p, desc] of want) {
    if (!desc.startsWith('file ')) continue;
    const res = runOp(hoard, { op: 'read', path: p, off: 0, len: 8 << 20 });
    if (res === 'EIO') {
      eio++;
      continue;
    }
    const m = /size=(\d+) read=\d+ sha=(\w+)/.exec(desc)!;
    if (res !== `ok:${m[1]}:${m[2]}`) wrong.push(`${p}: want ${m[1]} bytes sha ${m[2]}, got ${res}`);
  }
  return { eio, wrong };
}

/** RAID 0 over 3 devices: every fault is an error the caller sees; committed data survives. */
export async function raid0Faults(o: { seed: number; episodes: number; deadline?: number; log?: (m: string) => void }): Promise<FaultResult> {
  const log = o.log ?? (() => {});
  const rng = new Rng(subSeed(o.seed, 0));
  const devs = Array.from({ length: 3 }, (_, i) => ['--device', `{root}/d${i}.img`]).flat();
  const v = await makeVolume(['--level', '0', ...devs], { encrypted: false });
  const ref = tmpfsDir();
  const rules = join(v.root, 'faults.json');
  writeRules(rules, []);
  const env = { HOARDFS_FAULTS: rules };
  const res: FaultResult = { operations: 0, faults: 0, problems: [] };
  const devPath = (i: number) => join(v.root, `d${i}.img`);
  try {
    await mountWith(v, env);
    const r = await differential({ hoard: v.mnt, ref: ref.path, seed: o.seed, workers: 2, opsPerBatch: 80, batches: 3 });
    res.operations += r.operations;
    res.problems.push(...r.mismatches);
    await v.umount();
    const want = snapshotTree(ref.path);
    for (let ep = 0; ep < o.episodes && (!o.deadline || Date.now() < o.deadline) && !res.problems.length; ep++) {
      const d = rng.int(0, 2);
      const kind = rng.pick(['read-eio', 'flip', 'write-eio', 'enospc', 'vanish'] as const);
      log(`raid0 episode ${ep}: ${kind} on d${d}`);
      res.faults++;
      let saved: { pos: number; orig: Buffer }[] = [];
      if (kind === 'read-eio') writeRules(rules, [{ path: `d${d}.img`, op: 'read', error: 'EIO', from: DATA_START }]);
      if (kind === 'flip') {
        saved = flipBytes(devPath(d), rng, rng.int(1, 6));
      }
      if (kind === 'vanish') fs.renameSync(devPath(d), devPath(d) + '.gone');
      const m = await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs], { env });
      if (kind === 'vanish') {
        // Without redundancy a missing device is either refused at mount or read as EIO.
        if (m.code !== 0) {
          if (!/d\d\.img|device|missing/i.test(m.stderr)) res.problems.push(`raid0 vanish: unclear mount error: ${m.stderr}`);
        } else {
          const chk = equalOrEio(v.mnt, want);
          for (const w of chk.wrong) res.problems.push(`raid0 vanish d${d}: wrong bytes: ${w}`);
          await v.umount();
        }
        fs.renameSync(devPath(d) + '.gone', devPath(d));
        continue;
      }
      if (m.code !== 0) {
        res.problems.push(`raid0 ${kind}: mount failed: ${m.stderr}`);
        break;
      }
      if (kind === 'read-eio' || kind === 'flip') {
        const chk = equalOrEio(v.mnt, want);
        for (const w of chk.wrong) res.problems.push(`seed ${o.seed}: raid0 ${kind} on d${d}: wrong bytes returned: ${w}`);
        const s = await status(v);
        const st = s.devices.find((x) => x.path.endsWith(`d${d}.img`))!;
        if (chk.eio && st.readErrors + st.checksumErrors === 0 && st.state === 'ONLINE') res.problems.push(`raid0 ${kind}: ${chk.eio} EIOs but d${d} is not marked: ${JSON.stringify(st)}`);
        log(`  ${chk.eio} files gave EIO`);
      } else {
        // A new file and an fsync while writes to one device fail: the caller must hear it.
        writeRules(rules, [{ path: `d${d}.img`, op: 'write', error: kind === 'enospc' ? 'ENOSPC' : 'EIO', from: DATA_START }]);
        const p = join(v.mnt, `new${ep}`);
        let got = 'ok';
        try {
          const fd = fs.openSync(p, 'w');
          try {
            fs.writeSync(fd, Buffer.alloc(3 << 20, ep + 1));
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        } catch (e) {
          got = (e as NodeJS.ErrnoException).code ?? String(e);
        }
        const wantCode = kind === 'enospc' ? 'ENOSPC' : 'EIO';
        if (got !== wantCode) res.problems.push(`seed ${o.seed}: raid0 ${kind} on d${d}: fsync gave ${got}, want ${wantCode}`);
        const chk = equalOrEio(v.mnt, want);
        for (const w of chk.wrong) res.problems.push(`raid0 ${kind}: wrong bytes: ${w}`);
        if (chk.eio) res.problems.push(`raid0 ${kind}: ${chk.eio} committed files unreadable while only writes fail`);
        writeRules(rules, []);
        fs.rmSync(p, { force: true });
      }
      writeRules(rules, []);
      await v.umount();
      if (saved.length) {
        const fd = fs.openSync(devPath(d), 'r+');
        for (const x of saved) fs.writeSync(fd, x.orig, 0, x.orig.length, x.pos);
        fs.closeSync(fd);
      }
      // Fault gone: everything committed before reads back exactly (status may still show FAULTED).
      const m2 = await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs], { env });
      if (m2.code !== 0) {
        res.problems.push(`raid0 after ${kind}: mount failed: ${m2.stderr}`);
        break;
      }
      const back = diffTrees(want, snapshotTree(v.mnt).set('.', want.get('.')!));
      if (back.length) res.problems.push(`seed ${o.seed}: raid0 after ${kind} on d${d}: committed data changed:\n  ${back.join('\n  ')}`);
      await v.umount();
    }
  } finally {
    await v.cleanup();
    ref.cleanup();
  }
  return res;
}
