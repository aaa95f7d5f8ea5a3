// Issue 5, part 1: random operations from several processes on hoardfs and on tmpfs; after
// every batch the trees are identical and every call failed with the same errno.
// HOARDFS_SEED=N replays a run; a mismatch is printed shrunk to a short reproduction.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { differential, setup, type Env } from './lib/differential.ts';
import { runSeed } from './lib/rng.ts';

const envs: Env[] = [];
after(async () => {
  for (const e of envs) await e.cleanup();
});

test('differential: 4 processes, random operations, hoardfs equals tmpfs after every batch', async () => {
  const seed = runSeed();
  const e = await setup();
  envs.push(e);
  const r = await differential({ hoard: e.vol.mnt, ref: e.ref.path, seed, workers: 4, opsPerBatch: 60, batches: 6, deadline: Date.now() + 50_000, shrinkBudgetMs: 30_000 });
  console.error(`differential: seed ${seed}, ${r.operations} operations in ${r.batches} batches`);
  assert.deepEqual(r.mismatches, [], `seed ${seed}`);
  assert.ok(r.operations > 200);
});
