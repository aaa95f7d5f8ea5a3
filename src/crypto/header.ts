import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { afMerge, afSplit } from './af.ts';
import { gcmOpen, gcmSeal, TAG_LEN, NONCE_LEN } from './envelope.ts';
import { HeaderError, KeySlotError, WrongSecretError } from './errors.ts';
import { argon2id, validKdfParams, type KdfParams } from './kdf.ts';

export type Cipher = 'aes-256-gcm' | 'none';

export interface SlotInfo {
  index: number;
  kind: 'passphrase' | 'keyfile';
  kdf: KdfParams;
  createdAt: string;
}

interface SlotSecrets {
  salt: Buffer; // argon2id salt
  nonce: Buffer; // GCM nonce for the wrapped AF material
  tag: Buffer;
  material: Buffer; // AES-256-GCM(AF-split(master key)), AF_STRIPES * KEY_LEN bytes
}

interface HeaderSecrets {
  digestIterations: number;
  digestSalt: Buffer;
  digest: Buffer;
  clearKey: Buffer | null; // only for cipher 'none'
  slots: (SlotSecrets | null)[];
}

// Symbol-keyed so the fields survive `{ ...header }` but never show up in JSON.stringify, and are
// hidden from console.log by the custom inspect below.
const SECRETS: unique symbol = Symbol('hoardfs.keyHeader.secrets');

export interface KeyHeader {
  version: number;
  volumeId: Buffer;
  generation: number;
  cipher: Cipher;
  slots: (SlotInfo | null)[];
  [SECRETS]: HeaderSecrets;
}

export const MAX_SLOTS = 32;
export const AF_STRIPES = 4000; // as LUKS
const KEY_LEN = 32;
const FORMAT_VERSION = 1;
const MAGIC = Buffer.from('HOARDKEY', 'latin1');
const SLOT_MATERIAL = AF_STRIPES * KEY_LEN; // 128,000 bytes
const MATERIAL_OFFSET = 64 * 1024;
/** Fixed size: rewriting a header overwrites every slot area, which is what wipes removed slots. */
export const KEY_HEADER_SIZE = MATERIAL_OFFSET + MAX_SLOTS * SLOT_MATERIAL; // 4,161,536 bytes
const DIGEST_ITERATIONS = 1000; // the master key is 256 random bits; PBKDF2 here is LUKS2 form, not stretching

// Fixed-area layout (little-endian). The checksum covers [0,16) + [48, META_LEN) + active slots' material.
const O = {
  magic: 0, version: 8, reserved0: 10, metaLen: 12, checksum: 16, volumeId: 48, generation: 64,
  cipher: 72, slotCount: 73, reserved1: 74, stripes: 76, keyLen: 80,
  digestType: 84, reserved2: 85, digestIter: 88, digestSalt: 92, digest: 124, clearKey: 156, slots: 188,
} as const;
const SLOT_ENTRY = 96;
const S = {
  state: 0, kdfType: 1, reserved0: 2, memory: 4, passes: 8, parallelism: 12, createdAt: 16,
  salt: 24, nonce: 56, tag: 68, reserved1: 84,
} as const;
const META_LEN = O.slots + MAX_SLOTS * SLOT_ENTRY; // 3260
const CIPHER_CODES: Record<Cipher, number> = { none: 0, 'aes-256-gcm': 1 };
const KIND_CODES = { passphrase: 1, keyfile: 2 } as const;
const DIGEST_PBKDF2_SHA256 = 1;
const KDF_ARGON2ID = 1;
const MAX_DATE_MS = 8.64e15;

if (KEY_HEADER_SIZE > 8 * 1024 * 1024 - 4096) throw new Error('KEY_HEADER_SIZE exceeds its reserved area');

function masterDigest(masterKey: Buffer, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(masterKey, salt, iterations, 32, 'sha256');
}

function matchesDigest(s: HeaderSecrets, candidate: Buffer): boolean {
  return timingSafeEqual(masterDigest(candidate, s.digestSalt, s.digestIterations), s.digest);
}

function slotAad(volumeId: Buffer, index: number): Buffer {
  const aad = Buffer.alloc(volumeId.length + 4);
  volumeId.copy(aad, 0);
  aad.writeUInt32LE(index, volumeId.length);
  return aad;
}

function attachSecrets(h: Omit<KeyHeader, typeof SECRETS>, s: HeaderSecrets): KeyHeader {
  const out = h as KeyHeader;
  out[SECRETS] = s;
  Object.defineProperty(out, inspect.custom, {
    enumerable: true, // so spread copies stay redacted too
    value(this: KeyHeader, _depth: number, opts: object) {
      return inspect({ ...headerInfo(this), secrets: '<redacted>' }, opts);
    },
  });
  return out;
}

function secretsOf(h: KeyHeader): HeaderSecrets {
  const s = h[SECRETS];
  if (!s) throw new HeaderError('KeyHeader object carries no key material (copied with structuredClone or built by hand?)');
  return s;
}

export function newKeyHeader(volumeId: Buffer, cipher: Cipher): { header: KeyHeader; masterKey: Buffer } {
  if (!Buffer.isBuffer(volumeId) || volumeId.length !== 16) throw new RangeError('volumeId must be a 16-byte Buffer');
  if (!(cipher in CIPHER_CODES)) throw new RangeError(`unknown cipher ${String(cipher)}`);
  const masterKey = randomBytes(KEY_LEN);
  const digestSalt = randomBytes(32);
  const secrets: HeaderSecrets = {
    digestIterations: DIGEST_ITERATIONS,
    digestSalt,
    digest: masterDigest(masterKey, digestSalt, DIGEST_ITERATIONS),
    // Unencrypted volumes still key their chunk ids (so ids don't reveal content hashes to
    // someone who can guess content); the key simply lives in the header in clear.
    clearKey: cipher === 'none' ? Buffer.from(masterKey) : null,
    slots: new Array(MAX_SLOTS).fill(null),
  };
  const header = attachSecrets(
    { version: FORMAT_VERSION, volumeId: Buffer.from(volumeId), generation: 1, cipher, slots: new Array(MAX_SLOTS).fill(null) },
    secrets,
  );
  return { header, masterKey };
}

function checkIndex(index: number): void {
  if (!Number.isSafeInteger(index) || index < 0 || index >= MAX_SLOTS) throw new KeySlotError(`key slot index ${index} out of range 0..${MAX_SLOTS - 1}`);
}

export async function addSlot(
  h: KeyHeader, masterKey: Buffer, secret: Buffer, kind: 'passphrase' | 'keyfile', kdf: KdfParams, index?: number,
): Promise<number> {
  const s = secretsOf(h);
  if (h.cipher === 'none') throw new KeySlotError('volume is unencrypted (cipher none): a key slot would protect nothing');
  if (kind !== 'passphrase' && kind !== 'keyfile') throw new KeySlotError(`unknown slot kind ${String(kind)}`);
  if (!Buffer.isBuffer(secret) || secret.length === 0) throw new KeySlotError('empty secret');
  const bad = validKdfParams(kdf);
  if (bad) throw new KeySlotError(bad);
  // A slot wrapping the wrong key would look fine until the day it is the only one left.
  if (!Buffer.isBuffer(masterKey) || masterKey.length !== KEY_LEN || !matchesDigest(s, masterKey)) {
    throw new KeySlotError('master key does not belong to this header');
  }
  const free = (i: number) => !h.slots[i] && !s.slots[i];
  let idx: number;
  if (index === undefined) {
    idx = Array.from({ length: MAX_SLOTS }, (_, i) => i).find(free) ?? -1;
    if (idx < 0) throw new KeySlotError(`all ${MAX_SLOTS} key slots are in use`);
  } else {
    checkIndex(index);
    if (!free(index)) throw new KeySlotError(`key slot ${index} is already in use`);
    idx = index;
  }

  const salt = randomBytes(32);
  const slotKey = await argon2id(secret, salt, kdf, KEY_LEN);
  // Another addSlot may have claimed the index while argon2 ran.
  if (!free(idx)) {
    slotKey.fill(0);
    throw new KeySlotError(`key slot ${idx} was taken concurrently`);
  }
  const split = afSplit(masterKey, AF_STRIPES);
  const nonce = randomBytes(NONCE_LEN);
  const sealed = gcmSeal(slotKey, nonce, slotAad(h.volumeId, idx), split);
  split.fill(0);
  slotKey.fill(0);
  s.slots[idx] = {
    salt, nonce,
    material: Buffer.from(sealed.subarray(0, SLOT_MATERIAL)),
    tag: Buffer.from(sealed.subarray(SLOT_MATERIAL)),
  };
  h.slots[idx] = { index: idx, kind, kdf: { ...kdf }, createdAt: new Date().toISOString() };
  h.generation++;
  return idx;
}

export function removeSlot(h: KeyHeader, index: number): void {
  const s = secretsOf(h);
  checkIndex(index);
  if (!h.slots[index]) throw new KeySlotError(`key slot ${index} is not in use`);
  const active = h.slots.filter((x) => x).length;
  if (active <= 1 && h.cipher !== 'none') {
    throw new KeySlotError('refusing to remove the last active key slot: the volume could never be unlocked again');
  }
  const old = s.slots[index];
  if (old) for (const b of [old.salt, old.nonce, old.tag, old.material]) b.fill(0);
  s.slots[index] = null;
  h.slots[index] = null;
  h.generation++;
}

export async function unlock(h: KeyHeader, secret: Buffer, slot?: number): Promise<{ masterKey: Buffer; slot: number }> {
  const s = secretsOf(h);
  if (h.cipher === 'none') {
    // Nothing to unlock; still check the stored key against its digest so corruption is caught here.
    if (!s.clearKey || !matchesDigest(s, s.clearKey)) throw new HeaderError('stored master key does not match its digest');
    return { masterKey: Buffer.from(s.clearKey), slot: -1 };
  }
  let candidates: number[];
  if (slot !== undefined) {
    checkIndex(slot);
    if (!h.slots[slot] || !s.slots[slot]) throw new KeySlotError(`key slot ${slot} is not in use`);
    candidates = [slot];
  } else {
    candidates = h.slots.flatMap((x, i) => (x && s.slots[i] ? [i] : []));
  }
  // addSlot refuses empty secrets, so none can match (and hash-wasm rejects an empty password).
  if (!secret || secret.length === 0) candidates = [];
  for (const i of candidates) {
    const info = h.slots[i]!;
    const ss = s.slots[i]!;
    const slotKey = await argon2id(secret, ss.salt, info.kdf, KEY_LEN);
    const split = gcmOpen(slotKey, ss.nonce, slotAad(h.volumeId, i), Buffer.concat([ss.material, ss.tag]));
    slotKey.fill(0);
    if (!split) continue;
    const mk = afMerge(split, AF_STRIPES, KEY_LEN);
    split.fill(0);
    if (matchesDigest(s, mk)) return { masterKey: mk, slot: i };
    mk.fill(0);
  }
  throw new WrongSecretError(slot === undefined ? 'no key slot matches this passphrase' : `key slot ${slot} does not match this passphrase`);
}

export function headerInfo(h: KeyHeader): object {
  const s = h[SECRETS];
  const slots = h.slots.flatMap((x) => (x ? [{ index: x.index, kind: x.kind, kdf: { ...x.kdf }, createdAt: x.createdAt }] : []));
  return {
    format: 'hoardfs key header',
    version: h.version,
    volumeId: Buffer.isBuffer(h.volumeId) ? h.volumeId.toString('hex') : undefined,
    generation: h.generation,
    cipher: h.cipher,
    masterKey: h.cipher === 'none' ? 'stored in clear (unencrypted volume)' : 'wrapped in key slots',
    digest: { type: 'pbkdf2-sha256', iterations: s?.digestIterations },
    keySlots: { wrap: 'aes-256-gcm', kdf: 'argon2id', antiForensic: `af-split sha256, ${AF_STRIPES} stripes`, max: MAX_SLOTS, active: slots.length },
    slots,
    sizeBytes: KEY_HEADER_SIZE,
  };
}

// ---------------------------------------------------------------------------------------------
// Encoding

function checksumOf(buf: Uint8Array, active: (i: number) => boolean): Buffer {
  const hash = createHash('sha256');
  hash.update(buf.subarray(0, O.checksum));
  hash.update(buf.subarray(O.volumeId, META_LEN));
  for (let i = 0; i < MAX_SLOTS; i++) {
    if (active(i)) hash.update(buf.subarray(MATERIAL_OFFSET + i * SLOT_MATERIAL, MATERIAL_OFFSET + (i + 1) * SLOT_MATERIAL));
  }
  return hash.digest();
}

function slotStateAt(buf: Uint8Array, i: number): number {
  return buf[O.slots + i * SLOT_ENTRY + S.state]!;
}

/** Recomputes the checksum in place (tests use it to reach the field validation behind the checksum). */
export function resealChecksum(buf: Buffer): void {
  checksumOf(buf, (i) => slotStateAt(buf, i) !== 0).copy(buf, O.checksum);
}

export function encodeKeyHeader(h: KeyHeader): Buffer {
  const s = secretsOf(h);
  const fail = (m: string): never => { throw new HeaderError(`cannot encode key header: ${m}`); };
  if (h.version !== FORMAT_VERSION) fail(`version ${h.version} is not ${FORMAT_VERSION}`);
  if (!Buffer.isBuffer(h.volumeId) || h.volumeId.length !== 16) fail('volumeId must be 16 bytes');
  if (!Number.isSafeInteger(h.generation) || h.generation < 0) fail(`bad generation ${h.generation}`);
  if (!(h.cipher in CIPHER_CODES)) fail(`unknown cipher ${String(h.cipher)}`);
  if (!Array.isArray(h.slots) || h.slots.length > MAX_SLOTS) fail(`slots must be an array of at most ${MAX_SLOTS}`);

  const buf = Buffer.alloc(KEY_HEADER_SIZE); // zero-filled: empty slots and unused bytes are wiped
  MAGIC.copy(buf, O.magic);
  buf.writeUInt16LE(FORMAT_VERSION, O.version);
  buf.writeUInt32LE(META_LEN, O.metaLen);
  h.volumeId.copy(buf, O.volumeId);
  buf.writeBigUInt64LE(BigInt(h.generation), O.generation);
  buf[O.cipher] = CIPHER_CODES[h.cipher];
  buf[O.slotCount] = MAX_SLOTS;
  buf.writeUInt32LE(AF_STRIPES, O.stripes);
  buf.writeUInt32LE(KEY_LEN, O.keyLen);
  buf[O.digestType] = DIGEST_PBKDF2_SHA256;
  buf.writeUInt32LE(s.digestIterations, O.digestIter);
  s.digestSalt.copy(buf, O.digestSalt);
  s.digest.copy(buf, O.digest);

  let active = 0;
  for (let i = 0; i < MAX_SLOTS; i++) {
    const info = h.slots[i];
    if (!info) continue;
    const ss = s.slots[i];
    if (!ss) fail(`slot ${i} has no key material`);
    if (info.index !== i) fail(`slot ${i} claims index ${info.index}`);
    if (!(info.kind in KIND_CODES)) fail(`slot ${i} has unknown kind ${String(info.kind)}`);
    const bad = validKdfParams(info.kdf);
    if (bad) fail(`slot ${i}: ${bad}`);
    const created = Date.parse(info.createdAt);
    if (!Number.isFinite(created) || created < 0) fail(`slot ${i} has bad createdAt ${info.createdAt}`);
    const e = O.slots + i * SLOT_ENTRY;
    buf[e + S.state] = KIND_CODES[info.kind];
    buf[e + S.kdfType] = KDF_ARGON2ID;
    buf.writeUInt32LE(info.kdf.memoryKiB, e + S.memory);
    buf.writeUInt32LE(info.kdf.passes, e + S.passes);
    buf.writeUInt32LE(info.kdf.parallelism, e + S.parallelism);
    buf.writeBigUInt64LE(BigInt(created), e + S.createdAt);
    ss!.salt.copy(buf, e + S.salt);
    ss!.nonce.copy(buf, e + S.nonce);
    ss!.tag.copy(buf, e + S.tag);
    ss!.material.copy(buf, MATERIAL_OFFSET + i * SLOT_MATERIAL);
    active++;
  }
  if (h.cipher === 'none') {
    if (active) fail('an unencrypted volume has no key slots');
    if (!s.clearKey) fail('unencrypted volume without its master key');
    s.clearKey!.copy(buf, O.clearKey);
  } else if (active === 0) {
    fail('encrypted volume has no active key slot; add one before writing the header');
  }
  resealChecksum(buf);
  return buf;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The decoder proper; every path either returns or throws HeaderError (the fuzz test checks this one). */
export function decodeKeyHeaderStrict(buf: Uint8Array): KeyHeader {
  if (!(buf instanceof Uint8Array)) throw new HeaderError('key header must be a byte buffer');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < MAGIC.length || !b.subarray(0, MAGIC.length).equals(MAGIC)) throw new HeaderError('not a hoardfs key header (bad magic)');
  if (b.length < O.reserved0) throw new HeaderError('truncated key header');
  const version = b.readUInt16LE(O.version);
  if (version !== FORMAT_VERSION) throw new HeaderError(`unsupported key header version ${version} (this build reads version ${FORMAT_VERSION})`);
  if (b.length < KEY_HEADER_SIZE) throw new HeaderError(`truncated key header: ${b.length} bytes, need ${KEY_HEADER_SIZE}`);
  const metaLen = b.readUInt32LE(O.metaLen);
  if (metaLen !== META_LEN) throw new HeaderError(`malformed key header: metadata length ${metaLen}, expected ${META_LEN}`);
  const want = checksumOf(b, (i) => slotStateAt(b, i) !== 0);
  if (!timingSafeEqual(want, b.subarray(O.checksum, O.checksum + 32))) throw new HeaderError('key header checksum mismatch (damaged copy)');

  // Behind a valid checksum only a buggy or hostile writer produces the cases below.
  const bad = (m: string): never => { throw new HeaderError(`malformed key header: ${m}`); };
  if (b.readUInt16LE(O.reserved0) !== 0 || b.readUInt16LE(O.reserved1) !== 0 || !isZero(b.subarray(O.reserved2, O.reserved2 + 3))) bad('reserved bytes are not zero');
  const generation = b.readBigUInt64LE(O.generation);
  if (generation > BigInt(Number.MAX_SAFE_INTEGER)) bad(`generation ${generation} too large`);
  const cipherCode = b[O.cipher];
  const cipher = (Object.keys(CIPHER_CODES) as Cipher[]).find((c) => CIPHER_CODES[c] === cipherCode) ?? bad(`unknown cipher code ${cipherCode}`);
  if (b[O.slotCount] !== MAX_SLOTS) bad(`slot count ${b[O.slotCount]}, expected ${MAX_SLOTS}`);
  if (b.readUInt32LE(O.stripes) !== AF_STRIPES) bad(`AF stripes ${b.readUInt32LE(O.stripes)}, expected ${AF_STRIPES}`);
  if (b.readUInt32LE(O.keyLen) !== KEY_LEN) bad(`key length ${b.readUInt32LE(O.keyLen)}, expected ${KEY_LEN}`);
  if (b[O.digestType] !== DIGEST_PBKDF2_SHA256) bad(`unknown digest type ${b[O.digestType]}`);
  const digestIterations = b.readUInt32LE(O.digestIter);
  if (digestIterations < 1 || digestIterations > 1_000_000) bad(`digest iterations ${digestIterations} out of range`);
  const clearKeyBytes = b.subarray(O.clearKey, O.clearKey + KEY_LEN);
  if (cipher !== 'none' && !isZero(clearKeyBytes)) bad('encrypted volume with a clear master key');

  const slots: (SlotInfo | null)[] = [];
  const slotSecrets: (SlotSecrets | null)[] = [];
  for (let i = 0; i < MAX_SLOTS; i++) {
    const e = O.slots + i * SLOT_ENTRY;
    const entry = b.subarray(e, e + SLOT_ENTRY);
    const state = entry[S.state]!;
    if (state === 0) {
      if (!isZero(entry)) bad(`empty slot ${i} is not zeroed`);
      slots.push(null);
      slotSecrets.push(null);
      continue;
    }
    const kind = state === KIND_CODES.passphrase ? 'passphrase' : state === KIND_CODES.keyfile ? 'keyfile' : bad(`slot ${i} has unknown state ${state}`);
    if (cipher === 'none') bad(`unencrypted volume with active slot ${i}`);
    if (entry[S.kdfType] !== KDF_ARGON2ID) bad(`slot ${i} has unknown kdf type ${entry[S.kdfType]}`);
    if (entry.readUInt16LE(S.reserved0) !== 0 || !isZero(entry.subarray(S.reserved1))) bad(`slot ${i} reserved bytes are not zero`);
    const kdf: KdfParams = {
      type: 'argon2id',
      memoryKiB: entry.readUInt32LE(S.memory),
      passes: entry.readUInt32LE(S.passes),
      parallelism: entry.readUInt32LE(S.parallelism),
    };
    const kdfBad = validKdfParams(kdf);
    if (kdfBad) bad(`slot ${i}: ${kdfBad}`);
    const created = Number(entry.readBigUInt64LE(S.createdAt));
    if (created > MAX_DATE_MS) bad(`slot ${i} has bad creation time`);
    slots.push({ index: i, kind, kdf, createdAt: new Date(created).toISOString() });
    slotSecrets.push({
      salt: Buffer.from(entry.subarray(S.salt, S.salt + 32)),
      nonce: Buffer.from(entry.subarray(S.nonce, S.nonce + NONCE_LEN)),
      tag: Buffer.from(entry.subarray(S.tag, S.tag + TAG_LEN)),
      material: Buffer.from(b.subarray(MATERIAL_OFFSET + i * SLOT_MATERIAL, MATERIAL_OFFSET + (i + 1) * SLOT_MATERIAL)),
    });
  }
  const active = slots.filter((x) => x).length;
  if (cipher !== 'none' && active === 0) bad('encrypted volume without any active key slot');

  return attachSecrets(
    { version, volumeId: Buffer.from(b.subarray(O.volumeId, O.volumeId + 16)), generation: Number(generation), cipher, slots },
    {
      digestIterations,
      digestSalt: Buffer.from(b.subarray(O.digestSalt, O.digestSalt + 32)),
      digest: Buffer.from(b.subarray(O.digest, O.digest + 32)),
      clearKey: cipher === 'none' ? Buffer.from(clearKeyBytes) : null,
      slots: slotSecrets,
    },
  );
}

export function decodeKeyHeader(buf: Buffer): KeyHeader {
  try {
    return decodeKeyHeaderStrict(buf);
  } catch (e) {
    // Belt and braces for callers: a header copy is either usable or a HeaderError, never a crash.
    if (e instanceof HeaderError) throw e;
    throw new HeaderError(`malformed key header: ${(e as Error)?.message ?? String(e)}`);
  }
}

function checksumField(buf: Uint8Array): Buffer {
  return Buffer.from(buf.subarray(O.checksum, O.checksum + 32));
}

/**
 * Picks the current header among redundant copies: the valid one with the highest generation.
 * good[i] is true only for copies identical to the chosen one; the caller rewrites the others.
 * With expectVolumeId, copies of another volume's header count as bad.
 */
export function newerHeader(copies: (Buffer | null)[], expectVolumeId?: Buffer): { header: KeyHeader; good: boolean[] } {
  const decoded = copies.map((c) => {
    if (!c) return null;
    try {
      const h = decodeKeyHeader(c);
      if (expectVolumeId && !h.volumeId.equals(expectVolumeId)) return null;
      return { h, sum: checksumField(c) };
    } catch (e) {
      if (e instanceof HeaderError) return null;
      throw e;
    }
  });
  let best: { h: KeyHeader; sum: Buffer } | null = null;
  for (const d of decoded) if (d && (!best || d.h.generation > best.h.generation)) best = d;
  if (!best) throw new HeaderError(`no valid key header among ${copies.length} copies`);
  const chosen = best;
  return {
    header: chosen.h,
    good: decoded.map((d) => !!d && d.h.generation === chosen.h.generation && d.sum.equals(chosen.sum)),
  };
}
