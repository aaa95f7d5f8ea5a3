// A worker process: owns one subtree (w<id>) in the hoardfs mount and the same subtree in the
// tmpfs reference, runs each batch of generated operations on both, one operation at a time,
// and reports the first operation whose results differ. Workers never share a subtree, so the
// end state does not depend on how the processes interleave.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Durable, genOps, isDisconnect, runOp, type GenOptions, type Op } from './ops.ts';
import { subSeed } from './rng.ts';

export interface WorkerInit {
  id: number;
  seed: number;
  hoard: string;
  ref: string;
  gen: GenOptions;
  /** Track fsynced files for the crash check. */
  durable?: boolean;
}

export interface BatchRequest {
  batch: number;
  n: number;
}

export interface BatchReport {
  id: number;
  batch: number;
  ops: Op[];
  ran: number;
  mismatch?: { index: number; op: Op; hoard: string; ref: string };
  /** The operation during which hoardfs went away (it may or may not have happened there). */
  disconnected?: { index: number; op: Op; result: string };
  durable?: [string, { sha: string; size: number }][];
  ms: number;
}

export function subtree(id: number): string {
  return `w${id}`;
}

function main(): void {
  const init = JSON.parse(process.env.TORTURE_WORKER!) as WorkerInit;
  const hoard = join(init.hoard, subtree(init.id));
  const ref = join(init.ref, subtree(init.id));
  fs.mkdirSync(hoard, { recursive: true });
  fs.mkdirSync(ref, { recursive: true });
  const durable = init.durable ? new Durable(ref) : null;
  process.on('message', (m: BatchRequest | { stop: true }) => {
    if ('stop' in m) {
      process.disconnect();
      return;
    }
    const t0 = Date.now();
    const ops = genOps(subSeed(init.seed, init.id, m.batch), m.n, init.gen);
    const report: BatchReport = { id: init.id, batch: m.batch, ops, ran: 0, ms: 0 };
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      durable?.before(op);
      const h = runOp(hoard, op);
      if (isDisconnect(h)) {
        report.disconnected = { index: i, op, result: h };
        break;
      }
      const r = runOp(ref, op);
      report.ran = i + 1;
      if (h !== r) {
        report.mismatch = { index: i, op, hoard: h, ref: r };
        break;
      }
      durable?.after(op, r);
    }
    if (durable) report.durable = [...durable.files];
    report.ms = Date.now() - t0;
    process.send!(report);
  });
  process.send!({ ready: true });
}

if (process.env.TORTURE_WORKER) main();
