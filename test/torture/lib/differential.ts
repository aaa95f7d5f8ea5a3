// Differential testing: the same generated operations on a hoardfs mount and on tmpfs, from
// several worker processes at once; after every batch the trees must be identical. A mismatch is
// shrunk (delta debugging, replayed sequentially in a fresh subtree) to a short reproduction.
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hoardfs, makeVolume, tempDir, type TestVolume } from '../../helpers.ts';
import { describe, runOp, type GenOptions, type Op } from './ops.ts';
import { diffTrees, snapshotTree } from './tree.ts';
import type { BatchReport, WorkerInit } from './worker.ts';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

export interface Counts {
  operations: number;
  crashes: number;
  faults: number;
  badInputs: number;
  mismatches: number;
}

export function newCounts(): Counts {
  return { operations: 0, crashes: 0, faults: 0, badInputs: 0, mismatches: 0 };
}

export function addCounts(a: Counts, b: Partial<Counts>): void {
  for (const k of Object.keys(a) as (keyof Counts)[]) a[k] += b[k] ?? 0;
}

// ---- the reference: a tmpfs ----

export function tmpfsDir(prefix = 'hoardfs-torture-ref-'): { path: string; cleanup: () => void } {
  const t = tempDir(prefix);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4g', 'tmpfs', t.path]);
  if (r.status !== 0) throw new Error(`mount -t tmpfs failed: ${r.stderr}`);
  return {
    path: t.path,
    cleanup: () => {
      spawnSync('umount', ['-l', t.path]);
      t.cleanup();
    },
  };
}

/** Mounts with extra environment for the daemon (fault rules, power-cut mode, ...). */
export async function mountWith(v: TestVolume, env: Record<string, string> = {}, extra: string[] = []): Promise<void> {
  const m = await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs, ...extra], { env });
  if (m.code !== 0) throw new Error(`mount failed: ${m.stderr}`);
}

export interface Env {
  vol: TestVolume;
  ref: { path: string; cleanup: () => void };
  cleanup(): Promise<void>;
}

export async function setup(mkfsArgs: string[] = [], o: { encrypted?: boolean; env?: Record<string, string> } = {}): Promise<Env> {
  const vol = await makeVolume(mkfsArgs, { encrypted: o.encrypted ?? false });
  const ref = tmpfsDir();
  await mountWith(vol, o.env);
  return {
    vol,
    ref,
    async cleanup() {
      await vol.cleanup();
      ref.cleanup();
    },
  };
}

export function daemonPid(dir: string): number {
  return JSON.parse(fs.readFileSync(join(dir, 'lock'), 'utf8')).pid;
}

// ---- workers ----

export class Worker {
  private waiting: ((r: BatchReport) => void) | null = null;
  private exitError: Error | null = null;

  private constructor(
    readonly id: number,
    private readonly child: ChildProcess,
  ) {}

  static start(init: WorkerInit): Promise<Worker> {
    const child = fork(WORKER, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, TORTURE_WORKER: JSON.stringify(init) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const w = new Worker(init.id, child);
    return new Promise((res, rej) => {
      child.once('message', () => {
        child.on('message', (m) => {
          const f = w.waiting;
          w.waiting = null;
          f?.(m as BatchReport);
        });
        res(w);
      });
      child.once('exit', (code) => {
        w.exitError = new Error(`worker ${init.id} exited with code ${code}`);
        rej(w.exitError);
        const f = w.waiting;
        w.waiting = null;
        f?.({ id: init.id, batch: -1, ops: [], ran: 0, ms: 0, mismatch: { index: -1, op: { op: 'stat', path: '.' }, hoard: 'WORKER DIED', ref: '' } });
      });
    });
  }

  batch(batch: number, n: number): Promise<BatchReport> {
    if (this.exitError) return Promise.reject(this.exitError);
    return new Promise((res) => {
      this.waiting = res;
      this.child.send({ batch, n });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  stop(): void {
    if (this.child.connected) this.child.send({ stop: true });
    setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
  }
}

export async function startWorkers(n: number, base: Omit<WorkerInit, 'id'>, idBase = 0): Promise<Worker[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => Worker.start({ ...base, id: idBase + i })));
}

// ---- shrinking ----

let replayCounter = 0;

/** Replays ops sequentially in fresh subtrees; returns a description of the first difference, or null. */
export function replayDiffers(hoardRoot: string, refRoot: string, ops: Op[]): string | null {
  const name = `replay-${process.pid}-${replayCounter++}`;
  const h = join(hoardRoot, name);
  const r = join(refRoot, name);
  fs.mkdirSync(h);
  fs.mkdirSync(r);
  try {
    for (let i = 0; i < ops.length; i++) {
      const a = runOp(h, ops[i]);
      const b = runOp(r, ops[i]);
      if (a !== b) return `op ${i} ${describe(ops[i])}: tmpfs ${b}, hoardfs ${a}`;
    }
    const d = diffTrees(snapshotTree(r), snapshotTree(h), 5);
    return d.length ? `trees differ:\n  ${d.join('\n  ')}` : null;
  } finally {
    fs.rmSync(h, { recursive: true, force: true });
    fs.rmSync(r, { recursive: true, force: true });
  }
}

/** Delta debugging (ddmin) within a time budget. */
export function shrink(ops: Op[], fails: (ops: Op[]) => boolean, budgetMs = 60_000): Op[] {
  const deadline = Date.now() + budgetMs;
  let cur = ops;
  let n = 2;
  while (cur.length >= 2 && Date.now() < deadline) {
    const size = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i < n && Date.now() < deadline; i++) {
      const complement = [...cur.slice(0, i * size), ...cur.slice((i + 1) * size)];
      if (complement.length && fails(complement)) {
        cur = complement;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  return cur;
}

export function reproduction(hoardRoot: string, refRoot: string, ops: Op[], budgetMs = 60_000): string {
  const first = replayDiffers(hoardRoot, refRoot, ops);
  if (!first) return `not reproducible by a sequential replay of the worker's ${ops.length} operations (timing or concurrency dependent)`;
  const small = shrink(ops, (o) => replayDiffers(hoardRoot, refRoot, o) !== null, budgetMs);
  const why = replayDiffers(hoardRoot, refRoot, small) ?? first;
  return `shrunk from ${ops.length} to ${small.length} operations (run in an empty directory):\n${small.map((o) => `  ${describe(o)}`).join('\n')}\n=> ${why}`;
}

// ---- the differential run ----

export interface DiffOptions {
  hoard: string;
  ref: string;
  seed: number;
  workers: number;
  opsPerBatch: number;
  /** Stop after this many batches or at this time, whichever comes first. */
  batches: number;
  deadline?: number;
  gen?: GenOptions;
  /** Called between batches (the trees are quiet and equal). */
  between?: (batch: number) => Promise<void>;
  shrinkBudgetMs?: number;
  log?: (m: string) => void;
}

export interface DiffResult {
  operations: number;
  batches: number;
  mismatches: string[];
}

export async function differential(o: DiffOptions): Promise<DiffResult> {
  const log = o.log ?? (() => {});
  const workers = await startWorkers(o.workers, { seed: o.seed, hoard: o.hoard, ref: o.ref, gen: o.gen ?? {} });
  const history = new Map<number, Op[]>(workers.map((w) => [w.id, []]));
  const res: DiffResult = { operations: 0, batches: 0, mismatches: [] };
  try {
    for (let b = 0; b < o.batches && (!o.deadline || Date.now() < o.deadline); b++) {
      const reports = await Promise.all(workers.map((w) => w.batch(b, o.opsPerBatch)));
      res.batches++;
      for (const r of reports) {
        res.operations += r.ran;
        history.get(r.id)!.push(...r.ops.slice(0, r.ran));
      }
      const bad = reports.find((r) => r.mismatch);
      if (bad) {
        const m = bad.mismatch!;
        const ops = history.get(bad.id)!;
        log(`mismatch in worker ${bad.id}, batch ${b}; shrinking ${ops.length} operations`);
        res.mismatches.push(
          `seed ${o.seed} (HOARDFS_SEED=${o.seed} to replay), worker ${bad.id}, batch ${b}, op ${m.index}: ${describe(m.op)}\n` +
            `  tmpfs: ${m.ref}\n  hoardfs: ${m.hoard}\n` +
            reproduction(o.hoard, o.ref, ops, o.shrinkBudgetMs),
        );
        break;
      }
      const d = diffTrees(snapshotTree(o.ref), snapshotTree(o.hoard));
      if (d.length) {
        const w = Number(/^w(\d+)/.exec(d[0])?.[1] ?? 0);
        const ops = history.get(w) ?? [];
        log(`trees differ after batch ${b}; shrinking worker ${w}'s ${ops.length} operations`);
        res.mismatches.push(
          `seed ${o.seed} (HOARDFS_SEED=${o.seed} to replay): trees differ after batch ${b}:\n  ${d.join('\n  ')}\n` +
            reproduction(o.hoard, o.ref, ops, o.shrinkBudgetMs),
        );
        break;
      }
      await o.between?.(b);
    }
  } finally {
    for (const w of workers) w.stop();
  }
  return res;
}
