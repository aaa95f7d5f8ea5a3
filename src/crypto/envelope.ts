import { createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { loadAddon } from '../addons.ts';
import { IntegrityError } from './errors.ts';
import { chunkId, type VolumeKeys } from './keys.ts';

interface NativeEnvelopes {
  ids(data: Uint8Array, offs: Float64Array, lens: Float64Array, idKey: Uint8Array, out: Uint8Array): void;
  seal(data: Uint8Array, offs: Float64Array, lens: Float64Array, ids: Uint8Array, sealKey: Uint8Array, out: Uint8Array): void;
  /** The plaintext length, or -1 (no authentication), -2 (length field), -3 (padding). */
  open(id: Uint8Array, envelope: Uint8Array, sealKey: Uint8Array, out: Uint8Array): number;
}
let nativeEnv: NativeEnvelopes | null | undefined;

/**
 * Ids and envelopes in C (native/hoardfs_aead.c, on node's own OpenSSL), or null: HOARDFS_AEAD=js
 * forces node:crypto, and without a built addon it is used too. Both give the same bytes.
 */
export function nativeEnvelopes(): NativeEnvelopes | null {
  if (nativeEnv !== undefined) return nativeEnv;
  nativeEnv = process.env.HOARDFS_AEAD === 'js' ? null : loadAddon<NativeEnvelopes>('hoardfs_aead');
  return nativeEnv;
}

export const NONCE_LEN = 12;
export const TAG_LEN = 16;
const LEN_FIELD = 4;
const ID_LEN = 32;
// The length field is a u32 and Padmé may round up by < 12 %; stay well inside both.
export const MAX_CHUNK = 0x7000_0000;
// Padmé adds at most ~12 % (<= 2^(E-S) bytes); chunks beyond this size get a fresh zero buffer.
const ZEROS = Buffer.alloc(1 << 20);

/**
 * Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
 * PURBs", PETS 2019, Algorithm 1): round L up so that only the top ~log2(log2 L) + 1 bits of the
 * length stay visible. Overhead is at most ~12 % and shrinks as L grows. Uses arithmetic rather than
 * bitwise ops because JS bitwise operators truncate to 32 bits.
 */
export function padme(len: number): number {
  if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`padme: bad length ${len}`);
  if (len < 2) return len;
  const e = Math.floor(Math.log2(len));
  const s = Math.floor(Math.log2(e)) + 1;
  const unit = 2 ** (e - s);
  return Math.ceil(len / unit) * unit;
}

export function sealedSize(keys: VolumeKeys, plainLength: number): number {
  if (keys.cipher === 'none') return plainLength;
  return NONCE_LEN + padme(plainLength + LEN_FIELD) + TAG_LEN;
}

/** AES-256-GCM returning ciphertext || tag. Kept separate so the NIST vectors exercise exactly this. */
export function gcmSeal(key: Buffer, nonce: Buffer, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN });
  c.setAAD(aad);
  const ct = c.update(plaintext);
  c.final();
  return Buffer.concat([ct, c.getAuthTag()]);
}

/** Inverse of gcmSeal; returns undefined (never partial plaintext) when the tag does not verify. */
export function gcmOpen(key: Buffer, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < TAG_LEN) return undefined;
  const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN });
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
  const pt = d.update(sealed.subarray(0, sealed.length - TAG_LEN));
  try {
    d.final();
  } catch {
    pt.fill(0);
    return undefined;
  }
  return pt;
}

// Every chunk gets its own key, so the GCM per-key limits (2^32 random-nonce messages, 2^39 bits)
// apply per chunk rather than per volume. And because id = HMAC(idKey, plaintext), every message
// ever sealed under a given chunk key has the same plaintext: even a repeated nonce would only
// produce an identical envelope, never the XOR of two different plaintexts or a forgery key.
function chunkKey(keys: VolumeKeys, id: Buffer): Buffer {
  return createHmac('sha256', keys.sealKey).update(id).digest();
}

// randomBytes(12) costs ~8 us per call here (about 8 % of sealing a 64 KiB chunk), so nonces are
// carved from a pool refilled in bulk. Each pool byte is handed out exactly once.
const NONCE_POOL = Buffer.alloc(NONCE_LEN * 4096);
let noncePos = NONCE_POOL.length;
function freshNonce(): Buffer {
  if (noncePos === NONCE_POOL.length) {
    randomFillSync(NONCE_POOL);
    noncePos = 0;
  }
  const n = Buffer.from(NONCE_POOL.subarray(noncePos, noncePos + NONCE_LEN));
  NONCE_POOL.fill(0, noncePos, noncePos + NONCE_LEN);
  noncePos += NONCE_LEN;
  return n;
}

function checkId(id: Buffer): void {
  if (!(id instanceof Uint8Array) || id.length !== ID_LEN) throw new RangeError(`chunk id must be ${ID_LEN} bytes`);
}

export function sealChunk(keys: VolumeKeys, id: Buffer, data: Uint8Array): Buffer {
  keys.assertLive();
  checkId(id);
  if (data.length > MAX_CHUNK) throw new RangeError(`chunk of ${data.length} bytes exceeds ${MAX_CHUNK}`);
  if (keys.cipher === 'none') return Buffer.from(data);
  const native = nativeEnvelopes();
  if (native) return sealChunks(keys, data, [0], [data.length], id).env;
  return sealChunkJs(keys, id, data);
}

/**
 * Seals data[offs[i], offs[i] + lens[i]) under ids[32i, 32i + 32) for every i, envelopes back to
 * back in into (exactly their size) or in a new buffer.
 */
export function sealChunks(keys: VolumeKeys, data: Uint8Array, offs: number[], lens: number[], ids: Uint8Array, into?: Uint8Array): { env: Buffer; sizes: number[] } {
  keys.assertLive();
  if (ids.length !== ID_LEN * offs.length || lens.length !== offs.length) throw new RangeError('sealChunks: offs, lens and ids disagree');
  const sizes = lens.map((l) => {
    if (l > MAX_CHUNK) throw new RangeError(`chunk of ${l} bytes exceeds ${MAX_CHUNK}`);
    return sealedSize(keys, l);
  });
  const total = sizes.reduce((a, b) => a + b, 0);
  if (into && into.length !== total) throw new RangeError(`sealChunks: ${into.length} bytes given for ${total} bytes of envelopes`);
  const env = into ? Buffer.from(into.buffer, into.byteOffset, into.length) : Buffer.allocUnsafe(total);
  const native = keys.cipher === 'none' ? null : nativeEnvelopes();
  if (native) native.seal(data, Float64Array.from(offs), Float64Array.from(lens), ids, keys.sealKey, env);
  else {
    let o = 0;
    for (let i = 0; i < offs.length; i++) {
      const id = Buffer.from(ids.buffer, ids.byteOffset + ID_LEN * i, ID_LEN);
      const chunk = data.subarray(offs[i], offs[i] + lens[i]);
      (keys.cipher === 'none' ? Buffer.from(chunk) : sealChunkJs(keys, id, chunk)).copy(env, o);
      o += sizes[i];
    }
  }
  return { env, sizes };
}

/** The ids of data[offs[i], offs[i] + lens[i]), 32 bytes each, back to back. */
export function chunkIds(keys: VolumeKeys, data: Uint8Array, offs: number[], lens: number[]): Buffer {
  keys.assertLive();
  const out = Buffer.allocUnsafe(ID_LEN * offs.length);
  const native = nativeEnvelopes();
  if (native) native.ids(data, Float64Array.from(offs), Float64Array.from(lens), keys.idKey, out);
  else for (let i = 0; i < offs.length; i++) chunkId(keys, data.subarray(offs[i], offs[i] + lens[i])).copy(out, ID_LEN * i);
  return out;
}

/** The node:crypto seal (the reference the C one is tested against). */
export function sealChunkJs(keys: VolumeKeys, id: Buffer, data: Uint8Array): Buffer {

  const padded = padme(data.length + LEN_FIELD);
  const lenField = Buffer.alloc(LEN_FIELD);
  lenField.writeUInt32LE(data.length, 0);
  const nonce = freshNonce();
  const key = chunkKey(keys, id);
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN });
  key.fill(0);
  c.setAAD(id);
  // Feeding the three plaintext parts separately avoids assembling a padded copy of the chunk;
  // GCM is a stream mode, so update() returns every ciphertext byte immediately.
  const padLen = padded - LEN_FIELD - data.length;
  const zeros = padLen <= ZEROS.length ? ZEROS.subarray(0, padLen) : Buffer.alloc(padLen);
  const parts = [nonce, c.update(lenField), c.update(data), c.update(zeros)];
  c.final();
  parts.push(c.getAuthTag());
  return Buffer.concat(parts, NONCE_LEN + padded + TAG_LEN);
}

export function openChunk(keys: VolumeKeys, id: Buffer, envelope: Uint8Array): Buffer {
  keys.assertLive();
  checkId(id);
  if (keys.cipher === 'none') {
    const want = chunkId(keys, envelope);
    if (!timingSafeEqual(want, id)) throw new IntegrityError('chunk content does not match its id');
    return Buffer.from(envelope);
  }
  if (envelope.length < NONCE_LEN + LEN_FIELD + TAG_LEN) {
    throw new IntegrityError(`chunk envelope too short (${envelope.length} bytes)`);
  }
  const native = nativeEnvelopes();
  if (!native) return openChunkJs(keys, id, envelope);
  const out = Buffer.allocUnsafe(envelope.length - NONCE_LEN - TAG_LEN);
  const len = native.open(id, envelope, keys.sealKey, out);
  if (len === -2) throw new IntegrityError('chunk length field inconsistent with envelope size');
  if (len === -3) throw new IntegrityError('chunk padding is not zero');
  if (len < 0) throw new IntegrityError('chunk authentication failed (damaged, or not the chunk with this id)');
  return out.subarray(LEN_FIELD, LEN_FIELD + len);
}

/** The node:crypto open (the reference the C one is tested against). */
export function openChunkJs(keys: VolumeKeys, id: Buffer, envelope: Uint8Array): Buffer {
  const key = chunkKey(keys, id);
  const pt = gcmOpen(key, envelope.subarray(0, NONCE_LEN), id, envelope.subarray(NONCE_LEN));
  key.fill(0);
  if (!pt) throw new IntegrityError('chunk authentication failed (damaged, or not the chunk with this id)');
  const len = pt.readUInt32LE(0);
  // The tag makes these unreachable without the seal key; they guard against sealer bugs.
  if (len > pt.length - LEN_FIELD || padme(len + LEN_FIELD) !== pt.length) {
    throw new IntegrityError(`chunk length field ${len} inconsistent with envelope size`);
  }
  for (let i = LEN_FIELD + len; i < pt.length; i++) {
    if (pt[i] !== 0) throw new IntegrityError('chunk padding is not zero');
  }
  return pt.subarray(LEN_FIELD, LEN_FIELD + len);
}
