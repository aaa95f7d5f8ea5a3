// Issue 5, part 2: SIGKILL at random moments, with and without the power-cut device model
// (HOARDFS_POWERCUT: device writes not followed by a sync are lost). fsck is clean without
// --repair, every file fsynced before the kill reads back as it was, nothing is unreadable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crashLoop } from './lib/crash.ts';
import { runSeed } from './lib/rng.ts';

for (const powercut of [false, true]) {
  test(`crash loop${powercut ? ' with power cuts' : ''}: fsck clean, fsynced files intact`, async () => {
    const seed = runSeed();
    const r = await crashLoop({ seed, rounds: 2, workers: 3, powercut, encrypted: powercut, deadline: Date.now() + 35_000 });
    console.error(`crash${powercut ? '+powercut' : ''}: seed ${seed}, ${r.crashes} crashes, ${r.operations} operations, ${r.durableChecked} fsynced files checked`);
    assert.deepEqual([...r.problems, ...r.mismatches], [], `seed ${seed}`);
    assert.ok(r.crashes >= 2);
  });
}
