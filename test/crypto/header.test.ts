import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import {
  KEY_HEADER_SIZE, MAX_SLOTS, newKeyHeader, addSlot, removeSlot, unlock, encodeKeyHeader, decodeKeyHeader,
  headerInfo, newerHeader, HeaderError, WrongSecretError, KeySlotError, type KdfParams,
} from '../../src/crypto/index.ts';
import { decodeKeyHeaderStrict, resealChecksum } from '../../src/crypto/header.ts';

// Low-cost Argon2 (the documented HOARDFS_KDF test setting) keeps the whole file fast.
const KDF: KdfParams = { type: 'argon2id', memoryKiB: 64, passes: 1, parallelism: 1 };
const META_LEN = 3260;
const MATERIAL_OFFSET = 65536;
const SLOT_MATERIAL = 128_000;
const slotEntry = (i: number) => [188 + i * 96, 188 + (i + 1) * 96] as const;
const slotMaterial = (i: number) => [MATERIAL_OFFSET + i * SLOT_MATERIAL, MATERIAL_OFFSET + (i + 1) * SLOT_MATERIAL] as const;
const pw = (s: string) => Buffer.from(s);

async function twoSlotHeader() {
  const { header, masterKey } = newKeyHeader(randomBytes(16), 'aes-256-gcm');
  await addSlot(header, masterKey, pw('correct horse'), 'passphrase', KDF);
  await addSlot(header, masterKey, pw('battery staple'), 'passphrase', KDF, 3);
  return { header, masterKey };
}

test('size fits the reserved area', () => {
  assert.equal(KEY_HEADER_SIZE, 64 * 1024 + 32 * 4000 * 32);
  assert.ok(KEY_HEADER_SIZE <= 8 * 1024 * 1024 - 4096);
  assert.equal(MAX_SLOTS, 32);
});

test('encode/decode round trip, unlock after decode', async () => {
  const { header, masterKey } = await twoSlotHeader();
  const enc = encodeKeyHeader(header);
  assert.equal(enc.length, KEY_HEADER_SIZE);
  assert.equal(enc.subarray(0, 8).toString('latin1'), 'HOARDKEY');
  const dec = decodeKeyHeader(enc);
  assert.equal(dec.version, 1);
  assert.deepEqual(dec.volumeId, header.volumeId);
  assert.equal(dec.generation, header.generation);
  assert.equal(dec.cipher, 'aes-256-gcm');
  assert.deepEqual(dec.slots, header.slots);
  assert.deepEqual(encodeKeyHeader(dec), enc, 're-encoding is byte-identical');
  const a = await unlock(dec, pw('correct horse'));
  assert.deepEqual(a, { masterKey, slot: 0 });
  const b = await unlock(dec, pw('battery staple'));
  assert.deepEqual(b, { masterKey, slot: 3 });
  assert.deepEqual((await unlock(dec, pw('battery staple'), 3)).masterKey, masterKey);
  await assert.rejects(unlock(dec, pw('battery staple'), 0), WrongSecretError);
  await assert.rejects(unlock(dec, pw('battery staple'), 1), KeySlotError);
  // A spread copy keeps working (and stays redacted).
  assert.deepEqual(encodeKeyHeader({ ...dec }), enc);
  // A longer buffer (whole reserved area) decodes too.
  assert.equal(decodeKeyHeader(Buffer.concat([enc, Buffer.alloc(100, 7)])).generation, dec.generation);
});

test('wrong passphrase -> WrongSecretError', async () => {
  const { header } = await twoSlotHeader();
  await assert.rejects(unlock(header, pw('correct horse ')), (e: Error) => e instanceof WrongSecretError && /no key slot matches/.test(e.message));
  await assert.rejects(unlock(header, pw('')), WrongSecretError);
});

test('every single-byte flip in the used part is detected', async () => {
  const { header } = await twoSlotHeader();
  const enc = encodeKeyHeader(header);
  const positions: number[] = [];
  for (let i = 0; i < META_LEN; i++) positions.push(i);
  for (const s of [0, 3]) {
    const [a, b] = slotMaterial(s);
    for (let i = a; i < b; i += 97) positions.push(i);
    positions.push(b - 1);
  }
  for (const i of positions) {
    enc[i]! ^= 0x01;
    assert.throws(() => decodeKeyHeaderStrict(enc), HeaderError, `flip at ${i}`);
    enc[i]! ^= 0x01;
  }
  decodeKeyHeader(enc);
  // Unused areas are not covered: damage there is harmless and must not cost a header copy.
  for (const i of [META_LEN, 40_000, slotMaterial(1)[0], KEY_HEADER_SIZE - 1]) {
    enc[i]! ^= 0x01;
    assert.doesNotThrow(() => decodeKeyHeader(enc));
    enc[i]! ^= 0x01;
  }
});

test('clear messages for wrong magic, version, checksum, truncation', async () => {
  const { header } = await twoSlotHeader();
  const enc = encodeKeyHeader(header);
  assert.throws(() => decodeKeyHeader(Buffer.alloc(KEY_HEADER_SIZE)), /not a hoardfs key header/);
  assert.throws(() => decodeKeyHeader(Buffer.from('HOARD')), /not a hoardfs key header/);
  const v = Buffer.from(enc);
  v.writeUInt16LE(2, 8);
  assert.throws(() => decodeKeyHeader(v), /unsupported key header version 2/);
  const c = Buffer.from(enc);
  c[100]! ^= 0xff;
  assert.throws(() => decodeKeyHeader(c), /checksum mismatch/);
  assert.throws(() => decodeKeyHeader(enc.subarray(0, KEY_HEADER_SIZE - 1)), /truncated/);
  assert.throws(() => decodeKeyHeader('HOARDKEY' as never), HeaderError);
});

test('10,000 random and mutated buffers give only HeaderError', async () => {
  const { header } = await twoSlotHeader();
  const enc = encodeKeyHeader(header);
  const pristine = Buffer.from(enc.subarray(0, META_LEN));
  const magicV1 = Buffer.from(enc.subarray(0, 12));
  let accepted = 0;
  const rnd = (n: number) => Math.floor(Math.random() * n);
  const attempt = (buf: Uint8Array, label: string) => {
    try {
      const h = decodeKeyHeaderStrict(buf);
      accepted++;
      // Anything the decoder accepts must be usable: re-encodable and printable.
      const again = encodeKeyHeader(h);
      assert.equal(again.length, KEY_HEADER_SIZE);
      inspect(h);
      headerInfo(h);
    } catch (e) {
      if (!(e instanceof HeaderError)) assert.fail(`${label}: ${(e as Error)?.stack ?? e}`);
    }
  };
  for (let n = 0; n < 10_000; n++) {
    const kind = n % 6;
    if (kind === 0) {
      attempt(randomBytes(rnd(300)), 'random');
    } else if (kind === 1) {
      attempt(Buffer.concat([magicV1.subarray(0, rnd(13)), randomBytes(rnd(200))]), 'magic prefix');
    } else if (kind === 2) {
      attempt(enc.subarray(0, rnd(KEY_HEADER_SIZE)), 'truncated');
    } else {
      // Mutate the valid encoding in place (copying 4 MiB 10,000 times would dominate the test).
      const flips = 1 + rnd(8);
      for (let f = 0; f < flips; f++) {
        const pos = kind === 5 && f === 0 ? 188 + rnd(MAX_SLOTS) * 96 + rnd(24) : rnd(META_LEN);
        enc[pos] = kind === 3 ? enc[pos]! ^ (1 + rnd(255)) : [0, 0xff, 1, 2, 3, 0x80][rnd(6)]!;
      }
      // Kinds 4/5 recompute the checksum so the field validation behind it gets exercised.
      if (kind !== 3) resealChecksum(enc);
      attempt(enc, `mutation kind ${kind}`);
      pristine.copy(enc, 0);
    }
  }
  assert.ok(accepted < 10_000);
  decodeKeyHeader(enc);
});

test('removed slot: its passphrase no longer unlocks and its bytes are zero', async () => {
  const { header, masterKey } = await twoSlotHeader();
  const before = encodeKeyHeader(header);
  const [e0, e1] = slotEntry(0);
  const [m0, m1] = slotMaterial(0);
  assert.ok(!before.subarray(e0, e1).every((x) => x === 0));
  assert.ok(!before.subarray(m0, m1).every((x) => x === 0));
  const gen = header.generation;
  removeSlot(header, 0);
  assert.equal(header.generation, gen + 1);
  assert.equal(header.slots[0], null);
  const after = encodeKeyHeader(header);
  assert.ok(after.subarray(e0, e1).every((x) => x === 0), 'slot table entry zeroed');
  assert.ok(after.subarray(m0, m1).every((x) => x === 0), 'AF material zeroed');
  const dec = decodeKeyHeader(after);
  await assert.rejects(unlock(dec, pw('correct horse')), WrongSecretError);
  assert.deepEqual((await unlock(dec, pw('battery staple'))).masterKey, masterKey);
  assert.throws(() => removeSlot(dec, 0), KeySlotError);
  assert.throws(() => removeSlot(dec, 3), (e: Error) => e instanceof KeySlotError && /last/.test(e.message));
  assert.throws(() => removeSlot(dec, 32), KeySlotError);
  // The freed index is reused first.
  assert.equal(await addSlot(dec, masterKey, pw('new'), 'passphrase', KDF), 0);
});

test('32 slots max; index choice; wrong master key refused', async () => {
  const { header, masterKey } = newKeyHeader(randomBytes(16), 'aes-256-gcm');
  assert.throws(() => encodeKeyHeader(header), /no active key slot/);
  await assert.rejects(addSlot(header, randomBytes(32), pw('x'), 'passphrase', KDF), KeySlotError);
  await assert.rejects(addSlot(header, masterKey, Buffer.alloc(0), 'passphrase', KDF), KeySlotError);
  await assert.rejects(addSlot(header, masterKey, pw('x'), 'passphrase', { ...KDF, memoryKiB: 1 }), KeySlotError);
  for (let i = 0; i < MAX_SLOTS; i++) {
    assert.equal(await addSlot(header, masterKey, pw(`pass ${i}`), i % 2 ? 'keyfile' : 'passphrase', KDF), i);
  }
  await assert.rejects(addSlot(header, masterKey, pw('one too many'), 'passphrase', KDF), /all 32 key slots are in use/);
  await assert.rejects(addSlot(header, masterKey, pw('x'), 'passphrase', KDF, 5), /already in use/);
  await assert.rejects(addSlot(header, masterKey, pw('x'), 'passphrase', KDF, 32), KeySlotError);
  const dec = decodeKeyHeader(encodeKeyHeader(header));
  assert.equal(dec.slots.filter((s) => s).length, 32);
  assert.deepEqual(await unlock(dec, pw('pass 31')), { masterKey, slot: 31 });
});

test('keyfile and passphrase slots', async () => {
  const { header, masterKey } = newKeyHeader(randomBytes(16), 'aes-256-gcm');
  const keyfile = Buffer.concat([randomBytes(100), Buffer.from([0, 10, 0, 10])]);
  await addSlot(header, masterKey, pw('words'), 'passphrase', KDF);
  await addSlot(header, masterKey, keyfile, 'keyfile', { ...KDF, passes: 2 });
  const dec = decodeKeyHeader(encodeKeyHeader(header));
  assert.equal(dec.slots[0]!.kind, 'passphrase');
  assert.equal(dec.slots[1]!.kind, 'keyfile');
  assert.deepEqual(dec.slots[1]!.kdf, { ...KDF, passes: 2 });
  assert.ok(!Number.isNaN(Date.parse(dec.slots[1]!.createdAt)));
  assert.deepEqual(await unlock(dec, keyfile), { masterKey, slot: 1 });
  await assert.rejects(unlock(dec, keyfile.subarray(0, 103)), WrongSecretError);
});

test('headerInfo and inspect never show keys, salts or digests', async () => {
  const { header, masterKey } = await twoSlotHeader();
  const enc = encodeKeyHeader(header);
  const secrets = [
    masterKey.toString('hex'),
    enc.subarray(92, 124).toString('hex'), // digest salt
    enc.subarray(124, 156).toString('hex'), // digest
    enc.subarray(188 + 24, 188 + 56).toString('hex'), // slot 0 salt
  ].map((h) => h.slice(0, 12));
  const info = headerInfo(header) as { slots: unknown[]; cipher: string };
  assert.equal(info.cipher, 'aes-256-gcm');
  assert.equal(info.slots.length, 2);
  const outputs = [JSON.stringify(info), JSON.stringify(header), inspect(header, { depth: 10, showHidden: true }), inspect({ ...header }, { depth: 10 })];
  for (const out of outputs) {
    for (const s of secrets) assert.ok(!out.includes(s), `leak in ${out.slice(0, 80)}`);
    assert.ok(!out.includes('<Buffer'), 'inspect prints Buffers as spaced hex, which the check above would miss');
  }
  assert.match(outputs[2]!, /redacted/);
});

test("cipher 'none': master key in clear, no slots, unlock needs no secret", async () => {
  const { header, masterKey } = newKeyHeader(randomBytes(16), 'none');
  await assert.rejects(addSlot(header, masterKey, pw('x'), 'passphrase', KDF), KeySlotError);
  const enc = encodeKeyHeader(header);
  assert.deepEqual(enc.subarray(156, 188), masterKey, 'stored in clear');
  const dec = decodeKeyHeader(enc);
  assert.equal(dec.cipher, 'none');
  assert.deepEqual(await unlock(dec, Buffer.alloc(0)), { masterKey, slot: -1 });
  assert.ok(!inspect(dec, { depth: 10 }).includes(masterKey.toString('hex').slice(0, 12)));
});

test('newerHeader picks the highest valid generation and flags the rest', async () => {
  const { header, masterKey } = await twoSlotHeader();
  const old = encodeKeyHeader(header);
  await addSlot(header, masterKey, pw('third'), 'passphrase', KDF);
  const cur = encodeKeyHeader(header);
  const damaged = Buffer.from(cur);
  damaged[2000]! ^= 0x40;
  const r = newerHeader([old, cur, damaged, null, Buffer.from(cur)]);
  assert.equal(r.header.generation, header.generation);
  assert.deepEqual(r.good, [false, true, false, false, true]);
  assert.deepEqual((await unlock(r.header, pw('third'))).masterKey, masterKey);
  const r2 = newerHeader([damaged, old]);
  assert.equal(r2.header.generation, header.generation - 1);
  assert.deepEqual(r2.good, [false, true]);
  assert.throws(() => newerHeader([damaged, null, Buffer.alloc(10)]), HeaderError);
  assert.throws(() => newerHeader([]), HeaderError);
  // A copy from another volume is not a candidate when the volume id is known.
  const foreign = newKeyHeader(randomBytes(16), 'aes-256-gcm');
  await addSlot(foreign.header, foreign.masterKey, pw('f'), 'passphrase', KDF);
  foreign.header.generation = 1000;
  const f = encodeKeyHeader(foreign.header);
  assert.deepEqual(newerHeader([cur, f], header.volumeId).good, [true, false]);
});
