// Micro-benchmarks behind the choices in docs/crypto.md. Not a test; run by hand:
//   node --import tsx bench/micro/hash.ts [--calibrate]
// Optional comparison with @noble/ciphers (not a dependency): NOBLE_CIPHERS=/path/to/node_modules/@noble/ciphers
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { createBLAKE3 } from 'hash-wasm';
import { pathToFileURL } from 'node:url';
import { calibrateKdf, chunkId, openChunk, sealChunk, VolumeKeys } from '../../src/crypto/index.ts';

const CHUNK = 64 * 1024;
const TOTAL = 512 * 1024 * 1024;
const bufs = Array.from({ length: 64 }, () => randomBytes(CHUNK));

// Best of three rounds: the development box is shared, and the best round is the one least
// disturbed by other jobs.
function bench(name: string, fn: (b: Buffer) => void, total = TOTAL): number {
  for (let i = 0; i < 200; i++) fn(bufs[i % bufs.length]!); // warm-up / JIT
  const n = Math.ceil(total / 3 / CHUNK);
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn(bufs[i % bufs.length]!);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.max(best, (n * CHUNK) / 1e6 / s);
  }
  console.log(`${name.padEnd(44)} ${best.toFixed(0).padStart(6)} MB/s`);
  return best;
}

console.log(`node ${process.version}, ${CHUNK / 1024} KiB chunks`);
const key = randomBytes(32);
bench('HMAC-SHA256 (node:crypto)', (b) => createHmac('sha256', key).update(b).digest());
bench('SHA-256 (node:crypto)', (b) => createHash('sha256').update(b).digest());
const b3 = await createBLAKE3(256, key);
bench('BLAKE3 keyed (hash-wasm)', (b) => { b3.init(); b3.update(b); b3.digest('binary'); });

const keys = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
bench('chunkId', (b) => chunkId(keys, b));
const id = chunkId(keys, bufs[0]!);
const env = sealChunk(keys, id, bufs[0]!);
bench('sealChunk aes-256-gcm', (b) => sealChunk(keys, id, b));
bench('openChunk aes-256-gcm', () => openChunk(keys, id, env));
bench('chunkId + sealChunk (write path)', (b) => sealChunk(keys, chunkId(keys, b), b));
const nonce = randomBytes(12);
bench('raw AES-256-GCM (node:crypto)', (b) => {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.update(b); c.final(); c.getAuthTag();
});
const noblePath = process.env.NOBLE_CIPHERS;
if (noblePath) {
  const { gcm } = await import(pathToFileURL(`${noblePath}/aes.js`).href);
  bench('raw AES-256-GCM (@noble/ciphers)', (b) => gcm(key, nonce).encrypt(b), 64 * 1024 * 1024);
}

if (process.argv.includes('--calibrate')) {
  const t0 = performance.now();
  const p = await calibrateKdf();
  console.log(`calibrateKdf(): ${JSON.stringify(p)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const { argon2id } = await import('../../src/crypto/index.ts');
  const t1 = performance.now();
  await argon2id(Buffer.from('x'), randomBytes(32), p);
  console.log(`one unlock-cost derivation: ${((performance.now() - t1) / 1000).toFixed(2)} s`);
}
