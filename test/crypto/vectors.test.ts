// Known-answer tests against published vectors (RFC 5869, argon2 reference test.c, McGrew-Viega
// GCM spec / NIST) and against values computed by an independent implementation (Python
// `cryptography` + hashlib, per the LUKS and PURBs specifications).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hkdf, argon2id, afSplit, afMerge, padme } from '../../src/crypto/index.ts';
import { gcmOpen, gcmSeal } from '../../src/crypto/envelope.ts';
import { randomBytes } from 'node:crypto';

const hex = (s: string) => Buffer.from(s, 'hex');
const range = (a: number, b: number) => Buffer.from(Array.from({ length: b - a }, (_, i) => a + i));

test('HKDF-SHA256: RFC 5869 test cases 1-3', () => {
  // Case 1: basic
  assert.equal(
    hkdf(Buffer.alloc(22, 0x0b), range(0xf0, 0xfa), 42, range(0x00, 0x0d)).toString('hex'),
    '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
  );
  // Case 2: longer inputs/outputs
  assert.equal(
    hkdf(range(0x00, 0x50), range(0xb0, 0x100), 82, range(0x60, 0xb0)).toString('hex'),
    'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
  );
  // Case 3: zero-length salt and info — exactly the default (salt-less) form used for subkeys
  assert.equal(
    hkdf(Buffer.alloc(22, 0x0b), '', 42).toString('hex'),
    '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
  );
  assert.equal(hkdf(Buffer.alloc(32, 1), 'x').length, 32);
});

test('Argon2id v1.3: argon2 reference test vectors (password/somesalt)', async () => {
  const pw = Buffer.from('password');
  const salt = Buffer.from('somesalt');
  const p = (memoryKiB: number, passes: number, parallelism: number) => ({ type: 'argon2id' as const, memoryKiB, passes, parallelism });
  assert.equal((await argon2id(pw, salt, p(65536, 2, 1))).toString('hex'), '09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7');
  assert.equal((await argon2id(pw, salt, p(256, 2, 1))).toString('hex'), '9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe');
  assert.equal((await argon2id(pw, salt, p(256, 2, 2))).toString('hex'), '6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037');
  assert.equal((await argon2id(Buffer.from('differentpassword'), salt, p(65536, 2, 1))).toString('hex'), '0b84d652cf6b0c4beaef0dfe278ba6a80df6696281d7e0d2891b817d8c458fde');
  await assert.rejects(argon2id(pw, salt, p(4, 1, 1)), RangeError); // below 8 KiB per lane
});

test('AES-256-GCM: McGrew-Viega / NIST test cases 13, 14, 16 through the seal primitive', () => {
  const z = Buffer.alloc(32);
  const n0 = Buffer.alloc(12);
  assert.equal(gcmSeal(z, n0, Buffer.alloc(0), Buffer.alloc(0)).toString('hex'), '530f8afbc74536b9a963b4f1c4cb738b');
  assert.equal(gcmSeal(z, n0, Buffer.alloc(0), Buffer.alloc(16)).toString('hex'), 'cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919');
  const key = hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308');
  const iv = hex('cafebabefacedbaddecaf888');
  const pt = hex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39');
  const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
  const expected = '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662' + '76fc6ece0f4e1768cddf8853bb2d551b';
  const sealed = gcmSeal(key, iv, aad, pt);
  assert.equal(sealed.toString('hex'), expected);
  assert.deepEqual(gcmOpen(key, iv, aad, sealed), pt);
  sealed[sealed.length - 1]! ^= 1;
  assert.equal(gcmOpen(key, iv, aad, sealed), undefined);
  assert.equal(gcmOpen(key, iv, Buffer.from('other'), hex(expected)), undefined);
});

test('AF merge: known answers from an independent LUKS-diffuser implementation', () => {
  const s1 = Buffer.from(Array.from({ length: 3 * 40 }, (_, i) => (i * 7 + 3) % 256));
  // 40-byte key exercises the truncated last diffusion block
  assert.equal(afMerge(s1, 3, 40).toString('hex'), '8a4eb0cf11f4c942ca2d2b262902ae512df55813bf0c67c538d726ccc0120354385c7de83e4b7498');
  const s2 = Buffer.from(Array.from({ length: 4000 * 32 }, (_, i) => (i * 13 + 1) % 256));
  assert.equal(afMerge(s2, 4000, 32).toString('hex'), 'f9c49d91e732211b9189b3b6f59b20dc7b1070d9f4c2032443cfdd53dc74854f');
});

test('AF split/merge round trip; any changed stripe byte breaks the merge', () => {
  for (const [n, stripes] of [[32, 4000], [40, 7], [1, 1], [64, 2]] as const) {
    const key = randomBytes(n);
    const split = afSplit(key, stripes);
    assert.equal(split.length, n * stripes);
    assert.deepEqual(afMerge(split, stripes, n), key);
  }
  const key = randomBytes(32);
  const split = afSplit(key, 4000);
  assert.notDeepEqual(afSplit(key, 4000), split, 'split is randomised');
  for (const pos of [0, 31, 32, 64_000, 127_967, 127_968, 127_999, 12345]) {
    split[pos]! ^= 0x01;
    assert.notDeepEqual(afMerge(split, 4000, 32), key, `flip at ${pos} must change the result`);
    split[pos]! ^= 0x01;
  }
  assert.deepEqual(afMerge(split, 4000, 32), key);
  assert.throws(() => afMerge(split.subarray(1), 4000, 32), RangeError);
});

test('Padmé: values from the PURBs paper definition', () => {
  const table: [number, number][] = [
    [0, 0], [1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [7, 7], [9, 10], [17, 18], [100, 104], [1000, 1024],
    [1025, 1088], [4100, 4352], [65540, 67584], [1048576, 1048576], [1048580, 1081344], [5000000, 5111808],
  ];
  for (const [l, want] of table) assert.equal(padme(l), want, `padme(${l})`);
  let prev = 0;
  for (let l = 1; l < 200_000; l += 7) {
    const p = padme(l);
    assert.ok(p >= l && p >= prev, 'monotone and never shrinks');
    assert.ok(p <= l * 1.12 + 1, `overhead at ${l}`);
    prev = p;
  }
  assert.equal(padme(2 ** 40 + 1), 2 ** 40 + 2 ** 34); // no 32-bit truncation
});
