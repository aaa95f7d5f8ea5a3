// Cutting a large range in parallel pieces gives exactly the sequential cut and ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createVolume, Volume } from '../../src/volume/volume.ts';
import { shared } from '../../src/chunks/store.ts';
import { randomData, tempDir } from '../helpers.ts';

test('cutParallel equals a sequential cut, for many piece sizes and both final modes', async () => {
  const t = tempDir();
  const dir = join(t.path, 'vol');
  await createVolume({ dir, cipher: 'none', devices: [join(t.path, 'd0')], deviceSize: 64 << 20 });
  const v = await Volume.open({ dir, lock: true, fs: { flushIntervalMs: 0 } });
  try {
    const data = shared(Buffer.concat([randomData(6 << 20, 5), Buffer.alloc(1 << 20), randomData(3 << 20, 6)]));
    for (const final of [true, false]) {
      const seq: number[] = [];
      const seqIds: Buffer[] = [];
      for (let pos = 0; pos < data.length; ) {
        const len = v.store.chunker.next(data, pos, data.length, final);
        if (len === 0) break;
        seq.push(len);
        seqIds.push(v.store.id(data.subarray(pos, pos + len)));
        pos += len;
      }
      for (const piece of [300_000, 1 << 20, 3_333_333, 8 << 20, 64 << 20]) {
        const r = await v.store.cutParallel(data, final, piece);
        assert.deepEqual(r.lens, seq, `piece ${piece}, final ${final}`);
        assert.ok(r.ids.equals(Buffer.concat(seqIds)), `ids, piece ${piece}, final ${final}`);
      }
    }
  } finally {
    await v.close();
    t.cleanup();
  }
});
