// Crash consistency: the generator runs, the daemon is SIGKILLed at a random moment (optionally
// with the power-cut device model, which loses every device write not followed by a sync),
// fsck must say clean without --repair, and after a new mount every file fsynced before the kill
// reads back exactly as at its fsync, and every file reads without EIO (no extent points at a
// chunk that never reached the devices).
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, makeVolume, sh, type TestVolume } from '../../helpers.ts';
import { daemonPid, mountWith, startWorkers, tmpfsDir } from './differential.ts';
import { describe, fileDigest } from './ops.ts';
import { Rng, subSeed } from './rng.ts';
import type { BatchReport } from './worker.ts';

export async function waitDead(pid: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`process ${pid} did not die`);
}

export async function killDaemon(v: TestVolume): Promise<void> {
  const pid = daemonPid(v.dir);
  process.kill(pid, 'SIGKILL');
  await waitDead(pid);
  await sh(`fusermount3 -uz ${v.mnt}`);
}

/** Reads every regular file under root; returns the paths that fail (EIO: missing or bad chunk). */
export function readEverything(root: string): string[] {
  const bad: string[] = [];
  const walk = (d: string) => {
    for (const n of fs.readdirSync(d)) {
      const p = join(d, n);
      const s = fs.lstatSync(p);
      if (s.isDirectory()) walk(p);
      else if (s.isFile()) {
        try {
          const b = fs.readFileSync(p);
          if (b.length !== s.size) bad.push(`${p}: read ${b.length} bytes, size ${s.size}`);
        } catch (e) {
          bad.push(`${p}: ${(e as NodeJS.ErrnoException).code}`);
        }
      }
    }
  };
  walk(root);
  return bad;
}

export interface CrashOptions {
  seed: number;
  rounds: number;
  deadline?: number;
  workers: number;
  powercut: boolean;
  encrypted?: boolean;
  mkfsArgs?: string[];
  log?: (m: string) => void;
}

export interface CrashResult {
  operations: number;
  crashes: number;
  durableChecked: number;
  mismatches: string[];
  problems: string[];
}

export async function crashLoop(o: CrashOptions): Promise<CrashResult> {
  const log = o.log ?? (() => {});
  const env: Record<string, string> = { HOARDFS_UPKEEP_MS: '600', HOARDFS_SNAPSHOT_MS: '1500' };
  if (o.powercut) env.HOARDFS_POWERCUT = '1';
  const v = await makeVolume(o.mkfsArgs ?? [], { encrypted: o.encrypted ?? false });
  const ref = tmpfsDir();
  const res: CrashResult = { operations: 0, crashes: 0, durableChecked: 0, mismatches: [], problems: [] };
  const rng = new Rng(subSeed(o.seed, 77));
  // Every fsynced file of every earlier round, re-checked after every crash.
  const durable = new Map<string, { sha: string; size: number }>();
  try {
    for (let round = 0; round < o.rounds && (!o.deadline || Date.now() < o.deadline); round++) {
      await mountWith(v, env);
      // Each round works in fresh subtrees: the reference cannot follow hoardfs across a crash.
      const workers = await startWorkers(o.workers, { seed: subSeed(o.seed, round), hoard: v.mnt, ref: ref.path, gen: { fsyncWeight: 8 }, durable: true }, round * 100);
      let killed = false;
      const last = new Map<number, BatchReport>();
      const loops = workers.map(async (w) => {
        for (let b = 0; !killed; b++) {
          const r = await w.batch(b, 40);
          res.operations += r.ran;
          last.set(w.id, r);
          if (r.mismatch) {
            res.mismatches.push(`seed ${o.seed}, round ${round}, worker ${w.id}, batch ${b}: ${describe(r.mismatch.op)}: tmpfs ${r.mismatch.ref}, hoardfs ${r.mismatch.hoard}`);
            return;
          }
          if (r.disconnected) return;
        }
      });
      const delay = rng.int(300, 3500);
      await new Promise((r) => setTimeout(r, delay));
      killed = true;
      await killDaemon(v);
      res.crashes++;
      await Promise.all(loops);
      for (const w of workers) w.stop();
      for (const [id, r] of last) for (const [p, d] of r.durable ?? []) durable.set(join(`w${id}`, p), d);
      log(`round ${round}: killed after ${delay} ms, ${durable.size} fsynced files to check`);
      const f = await hoardfs(['fsck', v.dir, ...v.secretArgs], { env });
      if (f.code !== 0 || !/clean/.test(f.stdout)) {
        res.problems.push(`seed ${o.seed}, round ${round}: fsck after the crash: exit ${f.code}\n${f.stdout}${f.stderr}`);
        break;
      }
      await mountWith(v, env);
      for (const [p, want] of durable) {
        res.durableChecked++;
        let got: { sha: string; size: number } | string;
        try {
          got = fileDigest(join(v.mnt, p));
        } catch (e) {
          got = (e as NodeJS.ErrnoException).code ?? String(e);
        }
        if (typeof got === 'string' || got.sha !== want.sha || got.size !== want.size) {
          res.problems.push(`seed ${o.seed}, round ${round}: fsynced file ${p} lost: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
        }
      }
      for (const b of readEverything(v.mnt)) res.problems.push(`seed ${o.seed}, round ${round}: unreadable after the crash: ${b}`);
      await v.umount();
      if (res.problems.length) break;
    }
  } finally {
    await v.cleanup();
    ref.cleanup();
  }
  return res;
}
