// The C ids and envelopes (native/hoardfs_aead.c) against the node:crypto ones, byte for byte
// where the bytes are deterministic and by opening each other's envelopes where a nonce is random.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  VolumeKeys, chunkId, chunkIds, sealChunks, sealChunkJs, openChunk, openChunkJs, sealedSize, nativeEnvelopes, IntegrityError,
} from '../../src/crypto/index.ts';

const keys = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');

test('the C addon is built (the CI machine builds it; without it the daemon falls back to node:crypto)', () => {
  assert.ok(nativeEnvelopes(), 'native/build/Release/hoardfs_aead.node did not load');
});

// Lengths around Padmé's unit changes and the chunker's 16/64/256 KiB limits, plus a few odd ones.
const LENS = [0, 1, 2, 3, 4, 5, 12, 60, 61, 63, 64, 65, 511, 512, 1000, 4093, 4096, 16383, 16384, 16385, 65531, 65532, 65536, 99999, 262144, 262145, 300000];

function layout(lens: number[]): { data: Buffer; offs: number[] } {
  const offs: number[] = [];
  let o = 7; // chunks do not start at 0 or aligned in a real range
  for (const l of lens) {
    offs.push(o);
    o += l;
  }
  return { data: randomBytes(o + 3), offs };
}

test('C chunk ids equal HMAC-SHA256 from node:crypto', () => {
  const { data, offs } = layout(LENS);
  const ids = chunkIds(keys, data, offs, LENS);
  assert.equal(ids.length, 32 * LENS.length);
  LENS.forEach((l, i) => assert.deepEqual(ids.subarray(32 * i, 32 * i + 32), chunkId(keys, data.subarray(offs[i], offs[i] + l)), `length ${l}`));
});

test('C envelopes open with node:crypto and node:crypto envelopes open with C, at every length', () => {
  const { data, offs } = layout(LENS);
  const ids = chunkIds(keys, data, offs, LENS);
  const { env, sizes } = sealChunks(keys, data, offs, LENS, ids);
  let o = 0;
  LENS.forEach((l, i) => {
    const id = ids.subarray(32 * i, 32 * i + 32);
    const plain = data.subarray(offs[i], offs[i] + l);
    assert.equal(sizes[i], sealedSize(keys, l));
    const e = env.subarray(o, o + sizes[i]);
    o += sizes[i];
    assert.deepEqual(openChunkJs(keys, id, e), plain, `C seal, JS open, length ${l}`);
    assert.deepEqual(openChunk(keys, id, e), plain, `C seal, C open, length ${l}`);
    const j = sealChunkJs(keys, id, plain);
    assert.equal(j.length, sizes[i]);
    assert.deepEqual(openChunk(keys, id, j), plain, `JS seal, C open, length ${l}`);
  });
  assert.equal(o, env.length);
});

test('C open rejects a flipped bit anywhere, a wrong id and a truncated envelope', () => {
  const data = randomBytes(5000);
  const id = chunkId(keys, data);
  const { env } = sealChunks(keys, data, [0], [data.length], id);
  for (const at of [0, 11, 12, 15, 16, 2000, env.length - 17, env.length - 1]) {
    const bad = Buffer.from(env);
    bad[at] ^= 0x10;
    assert.throws(() => openChunk(keys, id, bad), IntegrityError, `bit flipped at ${at}`);
  }
  const other = Buffer.from(id);
  other[0] ^= 1;
  assert.throws(() => openChunk(keys, other, env), IntegrityError);
  assert.throws(() => openChunk(keys, id, env.subarray(0, env.length - 1)), IntegrityError);
  assert.throws(() => openChunk(keys, id, env.subarray(0, 20)), IntegrityError);
});

test('every seal uses a fresh nonce: the same chunk twice gives two different envelopes', () => {
  const data = randomBytes(3000);
  const id = chunkId(keys, data);
  const { env } = sealChunks(keys, Buffer.concat([data, data]), [0, 3000], [3000, 3000], Buffer.concat([id, id]));
  const n = sealedSize(keys, 3000);
  assert.notDeepEqual(env.subarray(0, 12), env.subarray(n, n + 12));
  assert.deepEqual(openChunk(keys, id, env.subarray(n)), data);
});

test('C calls refuse arguments that disagree instead of reading or writing out of bounds', () => {
  const n = nativeEnvelopes()!;
  const data = randomBytes(100);
  assert.throws(() => n.ids(data, Float64Array.of(50), Float64Array.of(51), keys.idKey, Buffer.alloc(32)), /outside/);
  assert.throws(() => n.ids(data, Float64Array.of(0), Float64Array.of(10), keys.idKey, Buffer.alloc(31)), /disagree/);
  assert.throws(() => n.seal(data, Float64Array.of(0), Float64Array.of(100), Buffer.alloc(32), keys.sealKey, Buffer.alloc(10)), /size/);
  assert.throws(() => n.seal(data, Float64Array.of(0), Float64Array.of(101), Buffer.alloc(32), keys.sealKey, Buffer.alloc(200)), /outside/);
});
