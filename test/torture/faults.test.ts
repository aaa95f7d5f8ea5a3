// Issue 5, part 3: faults from below, randomized: RAID 6 keeps the differential check through
// EIO on reads and writes, flipped bytes and vanished devices (two at a time); RAID 0 turns
// every fault into EIO/ENOSPC, never wrong bytes, and keeps what was committed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { makeVolume, randomData } from '../helpers.ts';
import { flipBytes, raid0Faults, raid6Faults, status } from './lib/faults.ts';
import { Rng, runSeed } from './lib/rng.ts';

test('RAID 6: random device faults, two at a time, change nothing a user sees', async () => {
  const seed = runSeed();
  const r = await raid6Faults({ seed, batches: 4, workers: 2, deadline: Date.now() + 30_000 });
  console.error(`raid6 faults: seed ${seed}, ${r.faults} faults, ${r.operations} operations`);
  assert.deepEqual(r.problems, [], `seed ${seed}`);
});

test('RAID 0: faults surface as EIO/ENOSPC, never wrong bytes; committed data survives', async () => {
  const seed = runSeed();
  const r = await raid0Faults({ seed, episodes: 4, deadline: Date.now() + 25_000 });
  console.error(`raid0 faults: seed ${seed}, ${r.faults} faults`);
  assert.deepEqual(r.problems, [], `seed ${seed}`);
});

// Regression: on RAID 0 a chunk that failed verification gave EIO but left every device
// "clean" in status --json (no checksum error was counted anywhere).
test('RAID 0: flipped bytes give EIO and a checksum error on the device in status --json', async () => {
  const v = await makeVolume(['--level', '0', '--device', '{root}/d0.img', '--device', '{root}/d1.img'], { encrypted: false });
  try {
    await v.mount();
    for (let i = 0; i < 6; i++) fs.writeFileSync(join(v.mnt, `f${i}`), randomData(400_000, i + 1));
    await v.umount();
    for (const d of [0, 1]) flipBytes(join(v.root, `d${d}.img`), new Rng(d + 1), 20);
    await v.mount();
    let eio = 0;
    for (let i = 0; i < 6; i++) {
      try {
        const b = fs.readFileSync(join(v.mnt, `f${i}`));
        assert.ok(b.equals(randomData(400_000, i + 1)), `f${i} returned wrong bytes`);
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'EIO');
        eio++;
      }
    }
    assert.ok(eio > 0, 'no damage reached');
    const s = await status(v);
    assert.ok(s.devices.some((d) => d.checksumErrors > 0), JSON.stringify(s.devices));
    await v.umount();
  } finally {
    await v.cleanup();
  }
});
