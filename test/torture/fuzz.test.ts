// Issue 5, part 4: the parsers of every on-disk structure on random and mutated input (the soak
// runner does 20,000 per parser): no crash, no hang, only the parser's clean failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { fuzzParsers } from './lib/fuzz.ts';
import { runSeed } from './lib/rng.ts';
import { decodeSuperblock, encodeSuperblock } from '../../src/raid/superblock.ts';

test('fuzz: superblock, key header, chunk envelope, snapshot manifest, hoardfs.json', () => {
  const seed = runSeed();
  const r = fuzzParsers(seed, 1500, { keyHeader: 200 });
  assert.deepEqual(r.problems.slice(0, 10), [], `seed ${seed}`);
});

// Regression: a checksummed superblock with a generation (or row count) above 2^53 was accepted
// and silently rounded, so generations compared wrong.
test('decodeSuperblock refuses 64-bit fields that do not fit a safe integer', () => {
  const sb = encodeSuperblock({
    generation: 1,
    volumeId: randomBytes(16),
    deviceId: randomBytes(16),
    slot: 0,
    layout: { level: 0, mirrors: 2, devices: 1, groupSize: 1, stripSize: 65536 },
    rows: 10,
    dataStart: 17 << 20,
    members: [{ deviceId: randomBytes(16), state: 'ONLINE', cursor: -1 }],
    spares: [],
  });
  assert.ok(decodeSuperblock(sb));
  for (const at of [16, 72, 80]) {
    const b = Buffer.from(sb);
    b.writeBigUInt64LE(2n ** 60n + 1n, at);
    // Re-seal the checksum: only a buggy or hostile writer produces this.
    createHash('sha256').update(b.subarray(0, 4096 - 32)).digest().copy(b, 4096 - 32);
    assert.equal(decodeSuperblock(b), null, `field at ${at}`);
  }
});

