import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calibrateKdf, kdfParamsFromEnv } from '../../src/crypto/index.ts';

test('HOARDFS_KDF parsing', () => {
  const saved = process.env.HOARDFS_KDF;
  try {
    delete process.env.HOARDFS_KDF;
    assert.equal(kdfParamsFromEnv(), undefined);
    process.env.HOARDFS_KDF = '64,1,1';
    assert.deepEqual(kdfParamsFromEnv(), { type: 'argon2id', memoryKiB: 64, passes: 1, parallelism: 1 });
    process.env.HOARDFS_KDF = ' 1024, 3 ,4';
    assert.deepEqual(kdfParamsFromEnv(), { type: 'argon2id', memoryKiB: 1024, passes: 3, parallelism: 4 });
    for (const bad of ['64,1', '64,1,1,1', 'a,b,c', '64,0,1', '8,1,4', '-64,1,1', '1e3,1,1', '99999999,1,1']) {
      process.env.HOARDFS_KDF = bad;
      assert.throws(() => kdfParamsFromEnv(), /HOARDFS_KDF/, bad);
    }
  } finally {
    if (saved === undefined) delete process.env.HOARDFS_KDF;
    else process.env.HOARDFS_KDF = saved;
  }
});

test('calibrateKdf respects the memory cap and the passes floor (small budget)', async () => {
  const t0 = performance.now();
  const p = await calibrateKdf(150, 16 * 1024);
  const ms = performance.now() - t0;
  assert.equal(p.type, 'argon2id');
  assert.ok(p.memoryKiB <= 16 * 1024 && p.memoryKiB >= 8 * p.parallelism, JSON.stringify(p));
  assert.ok(p.passes >= 2, JSON.stringify(p));
  assert.ok(p.parallelism >= 1 && p.parallelism <= 4);
  assert.ok(ms < 5000, `calibration took ${ms} ms`);
});
