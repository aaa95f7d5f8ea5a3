// Buffered write ranges against a plain byte-array model: random writes (overlapping, touching,
// appending, inserted before), truncates and overlays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ranges } from '../../src/fs/ranges.ts';
import { SharedBuffers } from '../../src/chunks/store.ts';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 2 ** 32;
  };
}

test('Ranges matches a byte-array model under random writes, writes under, truncates and overlays', () => {
  const r = rng(Number(process.env.HOARDFS_SEED ?? 7));
  const SIZE = 4096;
  // Small accumulators, so that appends gather, outgrow them and take tails in front.
  const pool = new SharedBuffers();
  const shape = { bytes: 700, head: 64, from: 200 };
  for (let round = 0; round < 200; round++) {
    const ranges = new Ranges();
    const model = new Int16Array(SIZE).fill(-1); // -1: not buffered
    for (let op = 0; op < 40; op++) {
      const x = r();
      if (x < 0.85) {
        const len = 1 + Math.floor(r() * (r() < 0.5 ? 16 : 600));
        // Touching neighbours is the case the copy-free join handles: aim for range edges often.
        let off = Math.floor(r() * (SIZE - len));
        if (r() < 0.4 && ranges.list.length) {
          const e = ranges.list[Math.floor(r() * ranges.list.length)];
          off = r() < 0.5 ? e.end : Math.max(0, e.off - len);
          if (off + len > SIZE) continue;
        }
        const data = Buffer.alloc(len);
        for (let i = 0; i < len; i++) data[i] = Math.floor(r() * 256);
        if (r() < 0.25) {
          ranges.writeUnder(off, data, r() < 0.5 ? pool : undefined);
          for (let i = 0; i < len; i++) if (model[off + i] < 0) model[off + i] = data[i];
        } else if (r() < 0.5) {
          ranges.write(off, data);
          for (let i = 0; i < len; i++) model[off + i] = data[i];
        } else {
          // A copy: the caller's buffer is reused at once (as the FUSE receive buffer is).
          ranges.writeCopy(off, data, pool, shape);
          for (let i = 0; i < len; i++) model[off + i] = data[i];
          data.fill(0x5a);
        }
      } else {
        const size = Math.floor(r() * SIZE);
        ranges.truncate(size);
        model.fill(-1, size);
      }
      // Structure: sorted, non-overlapping, non-touching, lengths and byte count consistent.
      let bytes = 0;
      let prevEnd = -1;
      for (const g of ranges.list) {
        assert.ok(g.off > prevEnd, 'ranges are sorted and separated');
        assert.equal(g.parts.reduce((a, p) => a + p.length, 0), g.len);
        bytes += g.len;
        prevEnd = g.end;
      }
      assert.equal(ranges.bytes, bytes);
      const buffered = model.reduce((a, v) => a + (v >= 0 ? 1 : 0), 0);
      assert.equal(bytes, buffered, `round ${round} op ${op}: buffered byte count`);
      const out = Buffer.alloc(SIZE, 0xee);
      ranges.overlay(out, 0);
      for (let i = 0; i < SIZE; i++) assert.equal(out[i], model[i] >= 0 ? model[i] : 0xee, `round ${round} op ${op}: byte ${i}`);
    }
  }
});
