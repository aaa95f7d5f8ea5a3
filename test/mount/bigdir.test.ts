// 100,000 entries in one directory: created, listed, looked up and removed through a real mount.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { makeVolume, sh, type TestVolume } from '../helpers.ts';

let vol: TestVolume;
before(async () => {
  vol = await makeVolume([], { encrypted: false });
  await vol.mount();
});
after(async () => {
  await vol.cleanup();
});

async function listTime(dir: string): Promise<{ n: number; ms: number }> {
  const t = performance.now();
  const r = await sh(`ls -f ${dir} | wc -l`);
  return { n: Number(r.stdout.trim()), ms: performance.now() - t };
}

test('100,000 entries: every one listed once; listing grows linearly, not quadratically', { timeout: 600_000 }, async () => {
  const big = join(vol.mnt, 'big');
  const small = join(vol.mnt, 'small');
  fs.mkdirSync(big);
  fs.mkdirSync(small);
  const mk = await sh(`cd ${big} && seq -f 'entry-%06g' 1 100000 | xargs -P 2 -n 2000 touch && cd ${small} && seq -f 'entry-%06g' 1 10000 | xargs -n 2000 touch`, { timeoutMs: 600_000 });
  assert.equal(mk.code, 0, mk.stderr);
  const s = await listTime(small);
  const b = await listTime(big);
  assert.equal(s.n, 10_002);
  assert.equal(b.n, 100_002);
  // A quadratic readdir would take ~100x as long for 10x the entries; allow noise up to 30x.
  assert.ok(b.ms < 30 * Math.max(s.ms, 20), `10k: ${s.ms.toFixed(0)} ms, 100k: ${b.ms.toFixed(0)} ms`);
  const names = fs.readdirSync(big);
  assert.equal(new Set(names).size, 100_000);
  assert.ok(fs.statSync(join(big, 'entry-054321')).isFile());
  const rm = await sh(`cd ${big} && ls -f | grep entry- | xargs -n 5000 rm`, { timeoutMs: 600_000 });
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual(fs.readdirSync(big), []);
});
