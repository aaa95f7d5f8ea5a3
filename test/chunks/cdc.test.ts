// The C cut search gives exactly the cuts of the JavaScript loop it replaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Chunker, gearTable, nativeCutter, type ChunkerParams } from '../../src/chunks/cdc.ts';
import { randomData } from '../helpers.ts';

test('native and JavaScript chunkers cut identically (all params, both final modes, odd offsets)', () => {
  assert.ok(nativeCutter(), 'native/build/Release/hoardfs_cdc.node is built and loads');
  const gear = gearTable(Buffer.from('a volume gear key for the test..'));
  // Random data, a long zero run (cuts at max), and a repeating pattern.
  const data = Buffer.concat([randomData(3 << 20, 11), Buffer.alloc(700_000), Buffer.alloc(400_000, 'abcdefgh'), randomData(1 << 20, 12)]);
  const params: ChunkerParams[] = [
    { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 },
    { min: 2048, avg: 8192, max: 65536 },
    { min: 64, avg: 256, max: 1024 },
    { min: 512 * 1024, avg: 1 << 20, max: 4 << 20 },
  ];
  for (const p of params) {
    const c = new Chunker(p, gear, true);
    const js = new Chunker(p, gear, false);
    for (const final of [true, false]) {
      for (const start of [0, 1, 31, 12345]) {
        let a = start;
        let cuts = 0;
        while (a < data.length) {
          const end = Math.min(data.length, a + 3 * p.max - 7);
          const fin = final || end === data.length;
          const ln = c.next(data, a, end, fin);
          assert.equal(ln, js.next(data, a, end, fin), `params ${JSON.stringify(p)} final ${fin} at ${a}`);
          if (ln === 0) break;
          a += ln;
          cuts++;
        }
        assert.ok(cuts > 3, 'the data was cut');
      }
    }
  }
  assert.throws(() => nativeCutter()!(data, 10, data.length + 1, true, gear, 64, 256, 1024, 0, 0), /outside/);
});
