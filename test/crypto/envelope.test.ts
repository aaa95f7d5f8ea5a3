import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { VolumeKeys, chunkId, sealChunk, openChunk, sealedSize, padme, IntegrityError } from '../../src/crypto/index.ts';

const MK = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

test('subkeys and chunk ids match an independent HKDF/HMAC computation', () => {
  const k = VolumeKeys.derive(MK, 'aes-256-gcm');
  assert.equal(k.idKey.toString('hex'), '05c017ae10f4cddd3be964baf6d7815c8fa296dfb5130e4dd48877615ba4d67b');
  assert.equal(k.sealKey.toString('hex'), '9fe6eb379f66ed7337496d99501141d37a7a46a3f8f01ae5f9a35d2f781180cd');
  assert.equal(k.metaKey.toString('hex'), 'e1526540881a0d89c2a96b25b31e43842d207a509a8b36f010f50a33ee3c7c86');
  assert.equal(k.gearKey.toString('hex'), '0ed79c9d25ca32af47a6b4f2cf47a802b8168e357470763d4be4ef700c2b6d17');
  assert.equal(chunkId(k, Buffer.from('hoardfs')).toString('hex'), '18775c3dde57812e23b9459b4f8452d1dc321f57c44c7c7d58de87413b9e7ef8');
  assert.ok(!inspect(k, { showHidden: true }).includes('<Buffer'));
  assert.ok(!JSON.stringify(k).includes('05c0'));
});

test('wipe zeroes every key and makes further use throw', () => {
  const mk = Buffer.from(MK);
  const k = VolumeKeys.derive(mk, 'aes-256-gcm');
  k.wipe();
  for (const b of [k.idKey, k.sealKey, k.metaKey, k.gearKey]) assert.ok(b.every((x) => x === 0));
  assert.deepEqual(mk, MK, "caller's master key untouched");
  assert.throws(() => chunkId(k, Buffer.from('x')), /wiped/);
  assert.throws(() => sealChunk(k, Buffer.alloc(32), Buffer.from('x')), /wiped/);
});

test('envelope format follows the spec (checked with raw node:crypto, not the code under test)', () => {
  const k = VolumeKeys.derive(MK, 'aes-256-gcm');
  const data = randomBytes(1000);
  const id = chunkId(k, data);
  const env = sealChunk(k, id, data);
  assert.equal(env.length, 12 + 1024 + 16);
  assert.equal(env.length, sealedSize(k, 1000));
  const chunkKey = createHmac('sha256', k.sealKey).update(id).digest();
  const d = createDecipheriv('aes-256-gcm', chunkKey, env.subarray(0, 12));
  d.setAAD(id);
  d.setAuthTag(env.subarray(env.length - 16));
  const pt = Buffer.concat([d.update(env.subarray(12, env.length - 16)), d.final()]);
  assert.equal(pt.readUInt32LE(0), 1000);
  assert.deepEqual(pt.subarray(4, 1004), data);
  assert.ok(pt.subarray(1004).every((x) => x === 0));

  // And an envelope built by hand from the spec opens.
  const nonce = randomBytes(12);
  const plain = Buffer.alloc(padme(3 + 4));
  plain.writeUInt32LE(3, 0);
  Buffer.from('abc').copy(plain, 4);
  const id2 = chunkId(k, Buffer.from('abc'));
  const c = createCipheriv('aes-256-gcm', createHmac('sha256', k.sealKey).update(id2).digest(), nonce);
  c.setAAD(id2);
  const hand = Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]);
  assert.equal(openChunk(k, id2, hand).toString(), 'abc');
});

test('seal/open round trip at many sizes; nonces are random', () => {
  const k = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
  for (const n of [0, 1, 3, 4, 5, 100, 4095, 65536, 65537, 1 << 20, (1 << 25) + 5]) {
    const data = randomBytes(n);
    const id = chunkId(k, data);
    const env = sealChunk(k, id, data);
    assert.equal(env.length, sealedSize(k, n));
    assert.deepEqual(openChunk(k, id, env), data);
  }
  const data = Buffer.from('same');
  const id = chunkId(k, data);
  const a = sealChunk(k, id, data);
  const b = sealChunk(k, id, data);
  assert.notDeepEqual(a, b);
  assert.deepEqual(openChunk(k, id, b), data);
});

test('any flipped envelope byte, a swapped id, truncation or extension -> IntegrityError', () => {
  const k = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
  const data = randomBytes(1000);
  const id = chunkId(k, data);
  const env = sealChunk(k, id, data);
  for (let i = 0; i < env.length; i++) {
    for (const mask of [0x01, 0x80]) {
      env[i]! ^= mask;
      assert.throws(() => openChunk(k, id, env), IntegrityError, `flip at ${i}`);
      env[i]! ^= mask;
    }
  }
  assert.deepEqual(openChunk(k, id, env), data);
  const other = randomBytes(1000);
  const otherId = chunkId(k, other);
  const otherEnv = sealChunk(k, otherId, other);
  assert.throws(() => openChunk(k, otherId, env), IntegrityError);
  assert.throws(() => openChunk(k, id, otherEnv), IntegrityError);
  const flippedId = Buffer.from(id);
  flippedId[31]! ^= 1;
  assert.throws(() => openChunk(k, flippedId, env), IntegrityError);
  assert.throws(() => openChunk(k, id, env.subarray(0, env.length - 1)), IntegrityError);
  assert.throws(() => openChunk(k, id, Buffer.concat([env, Buffer.alloc(1)])), IntegrityError);
  assert.throws(() => openChunk(k, id, Buffer.alloc(0)), IntegrityError);
  assert.throws(() => openChunk(k, id, Buffer.alloc(31)), IntegrityError);
  const k2 = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
  assert.throws(() => openChunk(k2, id, env), IntegrityError, 'another volume cannot open it');
});

test('a validly tagged envelope with an inconsistent length field or padding is rejected', () => {
  const k = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
  const id = randomBytes(32);
  const forge = (plain: Buffer) => {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', createHmac('sha256', k.sealKey).update(id).digest(), nonce);
    c.setAAD(id);
    return Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]);
  };
  const p = Buffer.alloc(104);
  p.writeUInt32LE(101, 0); // > 100 available bytes
  assert.throws(() => openChunk(k, id, forge(p)), /length field/);
  p.writeUInt32LE(50, 0); // padme(54) != 104
  assert.throws(() => openChunk(k, id, forge(p)), /length field/);
  p.writeUInt32LE(0xffffffff, 0);
  assert.throws(() => openChunk(k, id, forge(p)), IntegrityError);
  p.writeUInt32LE(99, 0); // padme(103) == 104, padding byte nonzero
  p[103] = 1;
  assert.throws(() => openChunk(k, id, forge(p)), /padding/);
  p[103] = 0;
  assert.equal(openChunk(k, id, forge(p)).length, 99);
});

test("cipher 'none': the envelope is the data, verified by the keyed id", () => {
  const k = VolumeKeys.derive(randomBytes(32), 'none');
  const data = randomBytes(5000);
  const id = chunkId(k, data);
  const env = sealChunk(k, id, data);
  assert.deepEqual(env, data);
  assert.equal(sealedSize(k, 5000), 5000);
  assert.deepEqual(openChunk(k, id, env), data);
  env[17]! ^= 4;
  assert.throws(() => openChunk(k, id, env), IntegrityError);
  env[17]! ^= 4;
  assert.throws(() => openChunk(k, randomBytes(32), env), IntegrityError);
  const k2 = VolumeKeys.derive(randomBytes(32), 'none');
  assert.throws(() => openChunk(k2, id, env), IntegrityError, 'ids are keyed per volume');
  assert.notDeepEqual(chunkId(k2, data), id);
});

test('bad arguments', () => {
  const k = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
  assert.throws(() => sealChunk(k, Buffer.alloc(31), Buffer.alloc(1)), RangeError);
  assert.throws(() => VolumeKeys.derive(Buffer.alloc(16), 'none'), RangeError);
  assert.throws(() => VolumeKeys.derive(Buffer.alloc(32), 'rot13' as never), RangeError);
});
