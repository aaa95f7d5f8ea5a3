// Issue 5, parts 5 and 6: metadata snapshots under random operations and a crash; 16 processes
// of mixed load with bounded daemon memory and the differential check at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTest, snapshotTorture } from './lib/snapload.ts';
import { runSeed } from './lib/rng.ts';

test('snapshot torture: operations, unmount, more operations, crash, restore-metadata: the snapshot reads back', async () => {
  const seed = runSeed();
  const r = await snapshotTorture({ seed, workers: 2, batches: 2 });
  assert.deepEqual(r.problems, [], `seed ${seed}`);
});

test('load: 16 processes for 25 s, no error, no deadlock, bounded daemon memory, trees equal', async () => {
  const seed = runSeed();
  const r = await loadTest({ seed, workers: 16, seconds: 25, maxRssKiB: 1024 * 1024, log: (m) => console.error(m) });
  console.error(`load: seed ${seed}, ${r.operations} operations, daemon VmHWM ${Math.round(r.peakRssKiB / 1024)} MiB`);
  assert.deepEqual(r.problems, [], `seed ${seed}`);
  assert.ok(r.operations > 1000);
});
