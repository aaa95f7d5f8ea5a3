// GF(2^8) and syndrome math against slow reference implementations written here, independently
// of src/raid/gf.ts (bitwise shift-and-add multiply, Q by explicit powers of the generator).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { computePQ, gfMul } from '../../src/raid/index.ts';
import { nativeParity } from '../../src/raid/gf.ts';
import { gfInv, gfPow2, solveGroup } from '../../src/raid/gf.ts';

function slowMul(a: number, b: number): number {
  let r = 0;
  while (b) {
    if (b & 1) r ^= a;
    a <<= 1;
    if (a & 0x100) a ^= 0x11d;
    b >>= 1;
  }
  return r;
}

function slowPow(g: number, e: number): number {
  let r = 1;
  for (let i = 0; i < e; i++) r = slowMul(r, g);
  return r;
}

function slowQ(strips: Uint8Array[]): Uint8Array {
  const q = new Uint8Array(strips[0].length);
  strips.forEach((d, i) => {
    const c = slowPow(2, i);
    for (let k = 0; k < d.length; k++) q[k] ^= slowMul(c, d[k]);
  });
  return q;
}

test('gfMul matches bitwise multiply mod 0x11D for all 65536 pairs', () => {
  for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) if (gfMul(a, b) !== slowMul(a, b)) assert.fail(`gfMul(${a},${b})`);
});

test('generator {02} has order 255 and gfPow2/gfInv agree with the reference', () => {
  const seen = new Set<number>();
  let x = 1;
  for (let i = 0; i < 255; i++) {
    assert.equal(gfPow2(i), x);
    seen.add(x);
    x = slowMul(x, 2);
  }
  assert.equal(x, 1, 'g^255 = 1');
  assert.equal(seen.size, 255, 'g generates every non-zero element');
  for (let a = 1; a < 256; a++) assert.equal(slowMul(a, gfInv(a)), 1);
  assert.throws(() => gfMul(256, 1), RangeError);
  assert.throws(() => gfInv(0), RangeError);
});

test('computePQ: P is XOR, Q is the RS syndrome (C, JavaScript word path and unaligned byte path)', () => {
  assert.ok(nativeParity(), 'native/build/Release/hoardfs_gf.node is built and loads');
  for (const native of [true, false])
  for (const n of [1, 2, 3, 4, 7, 10]) {
    for (const len of [4096, 13, 4, 4096 * 3 + 12, 20_000]) {
      const strips = Array.from({ length: n }, () => new Uint8Array(randomBytes(len)));
      const p = new Uint8Array(len);
      const q = new Uint8Array(len);
      computePQ(strips, p, q, native);
      const xp = new Uint8Array(len);
      for (const s of strips) for (let k = 0; k < len; k++) xp[k] ^= s[k];
      assert.deepEqual(p, xp, `P n=${n} len=${len}`);
      assert.deepEqual(q, slowQ(strips), `Q n=${n} len=${len}`);
      // Same through unaligned views.
      const backing = Array.from({ length: n + 2 }, () => new Uint8Array(len + 1));
      const us = strips.map((s, i) => {
        const v = backing[i].subarray(1);
        v.set(s);
        return v;
      });
      const up = backing[n].subarray(1);
      const uq = backing[n + 1].subarray(1);
      computePQ(us, up, uq, native);
      assert.deepEqual(up, xp);
      assert.deepEqual(uq, slowQ(strips));
      // RAID 5: P only.
      const p5 = new Uint8Array(len);
      computePQ(strips, p5, null, native);
      assert.deepEqual(p5, xp);
    }
  }
  // Known vector: single strip of value v gives P = Q = v; two strips [a, b] give Q = a ^ 2b.
  const a = new Uint8Array([0x80, 1, 0xff, 0]);
  const b = new Uint8Array([0x80, 2, 0x01, 7]);
  const p = new Uint8Array(4);
  const q = new Uint8Array(4);
  computePQ([a, b], p, q);
  assert.deepEqual([...q], [0x80 ^ 0x1d, 1 ^ 4, 0xff ^ 2, 14]);
});

test('solveGroup recovers every 1- and 2-erasure pattern of a 6+2 group', () => {
  const len = 64;
  const d = Array.from({ length: 6 }, () => new Uint8Array(randomBytes(len)));
  const p = new Uint8Array(len);
  const q = new Uint8Array(len);
  computePQ(d, p, q);
  const members = [...d.map((_, i) => `d${i}`), 'p', 'q'];
  for (let x = 0; x < members.length; x++)
    for (let y = x; y < members.length; y++) {
      const gone = new Set([members[x], members[y]]);
      const res = solveGroup(
        d.map((s, i) => (gone.has(`d${i}`) ? null : s)),
        gone.has('p') ? null : p,
        gone.has('q') ? null : q,
        len,
        true,
        true,
      );
      assert.ok(res, `erasures ${[...gone]}`);
      res.data.forEach((s, i) => assert.deepEqual(s, d[i], `d${i} with ${[...gone]} erased`));
      assert.deepEqual(res.p, p);
      assert.deepEqual(res.q, q);
    }
  assert.equal(solveGroup([null, null, null, d[3], d[4], d[5]], p, q, len, false, false), null);
  assert.equal(solveGroup([null, null, d[2], d[3], d[4], d[5]], p, null, len, false, false), null);
});
