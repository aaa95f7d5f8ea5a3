// hoardfs reencrypt: rotates the master key of a volume, online or offline, resumably.
//
// State on disk (see docs/crypto.md, "Master-key rotation"):
// - a small **key-state block** stored after the key header and the snapshot manifest on every
//   header copy: the volume's key generation, a check value of the current master key (so an old
//   header restored from a backup is refused with a clear message), and, while a rotation runs,
//   the previous master key sealed under a key derived from the new one;
// - `config.key_gen` in the metadata and `chunks.key_gen` per chunk: which key set each chunk is
//   sealed (and its id keyed) under.
//
// Steps: (1) the key header is rewritten with the new master key in the slot the given secret
// opened (other slots are dropped, as LUKS2 reencrypt does) plus the block with the sealed old
// key; (2) the metadata gets the new key generation and `PRAGMA rekey`; new writes switch to the
// new key set (and gear table); a snapshot under the new key replaces the old one; (3) chunks are
// re-sealed in batches, one `rekeyChunks` command per batch; (4) the block is rewritten without
// the old key, with a new snapshot. A crash anywhere resumes from the state on disk.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { addSlot, hkdf, KEY_HEADER_SIZE, newKeyHeader, unlock, VolumeKeys, WrongSecretError, type Cipher, type KeyHeader } from '../crypto/index.ts';
import { Metadata, MetadataError } from '../meta/metadata.ts';
import type { Progress } from './control.ts';
import { VolumeError } from './config.ts';
import { headerArea, MANIFEST_AREA, takeSnapshot } from './snapshot.ts';
import type { Secret, Volume } from './volume.ts';
import { withKeyLock } from './keys.ts';

const MAGIC = Buffer.from('HOARDKST');
const BLOCK_SIZE = 256;
const PREV_LEN = 12 + 32 + 16;
export const KEY_STATE_OFFSET = KEY_HEADER_SIZE + MANIFEST_AREA;

export interface KeyState {
  keyGen: number;
  rotatedAt: number; // ms since the epoch of the newest rotation start
  check: Buffer; // HMAC(HKDF(master, "hoardfs key check"), volumeId)
  prev: Buffer | null; // previous master key sealed under the current one, while rotating
}

export function keyCheck(master: Buffer, volumeId: Buffer): Buffer {
  return createHmac('sha256', hkdf(master, 'hoardfs key check')).update(volumeId).digest();
}

function prevAad(volumeId: Buffer, keyGen: number): Buffer {
  const b = Buffer.alloc(20);
  volumeId.copy(b);
  b.writeUInt32LE(keyGen, 16);
  return b;
}

function sealPrev(current: Buffer, previous: Buffer, volumeId: Buffer, keyGen: number): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', hkdf(current, 'hoardfs reencrypt previous key'), nonce);
  c.setAAD(prevAad(volumeId, keyGen));
  const ct = Buffer.concat([c.update(previous), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

function openPrev(current: Buffer, sealed: Buffer, volumeId: Buffer, keyGen: number): Buffer | null {
  try {
    const d = createDecipheriv('aes-256-gcm', hkdf(current, 'hoardfs reencrypt previous key'), sealed.subarray(0, 12));
    d.setAAD(prevAad(volumeId, keyGen));
    d.setAuthTag(sealed.subarray(12 + 32));
    return Buffer.concat([d.update(sealed.subarray(12, 12 + 32)), d.final()]);
  } catch {
    return null;
  }
}

export function encodeKeyState(s: KeyState): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(1, 8);
  b.writeUInt16LE(s.prev ? 1 : 0, 10);
  b.writeUInt32LE(s.keyGen, 12);
  b.writeDoubleLE(s.rotatedAt, 16);
  s.check.copy(b, 24);
  if (s.prev) s.prev.copy(b, 56);
  createHash('sha256').update(b.subarray(0, 56 + PREV_LEN)).digest().copy(b, 56 + PREV_LEN);
  return b;
}

export function decodeKeyState(area: Buffer | null): KeyState | null {
  if (!area || area.length < KEY_STATE_OFFSET + BLOCK_SIZE) return null;
  const b = area.subarray(KEY_STATE_OFFSET, KEY_STATE_OFFSET + BLOCK_SIZE);
  if (!b.subarray(0, 8).equals(MAGIC) || b.readUInt16LE(8) !== 1) return null;
  const sum = createHash('sha256').update(b.subarray(0, 56 + PREV_LEN)).digest();
  if (!sum.equals(b.subarray(56 + PREV_LEN, 56 + PREV_LEN + 32))) return null;
  const rotating = b.readUInt16LE(10) & 1;
  return {
    keyGen: b.readUInt32LE(12),
    rotatedAt: b.readDoubleLE(16),
    check: Buffer.from(b.subarray(24, 56)),
    prev: rotating ? Buffer.from(b.subarray(56, 56 + PREV_LEN)) : null,
  };
}

export interface OpenedKeyState {
  block: Buffer | null;
  keyGen: number;
  /** The previous key set while a rotation is in progress. */
  prev: VolumeKeys | null;
}

/**
 * Reads the key-state block of the header copies that hold the chosen key header, checks that
 * the unlocked master key is the volume's current one, and recovers the previous key while a
 * rotation is in progress.
 */
export function openKeyState(copies: (Buffer | null)[], good: boolean[], volumeId: Buffer, master: Buffer, cipher: Cipher): OpenedKeyState {
  let st: KeyState | null = null;
  for (let i = 0; i < copies.length && !st; i++) if (good[i]) st = decodeKeyState(copies[i]);
  if (!st) return { block: null, keyGen: 0, prev: null };
  if (!keyCheck(master, volumeId).equals(st.check)) {
    throw new VolumeError(
      `this key header holds an old master key: the volume was re-encrypted with 'hoardfs reencrypt' (key generation ${st.keyGen}, ` +
        `${new Date(st.rotatedAt).toISOString()}), so its data and metadata are under a newer key. ` +
        `The header was probably restored from a backup made before that: restore a header backup made after the rotation`,
    );
  }
  let prev: VolumeKeys | null = null;
  if (st.prev) {
    const k = openPrev(master, st.prev, volumeId, st.keyGen);
    if (!k) throw new VolumeError('the key-rotation state on the devices is damaged: the previous master key cannot be recovered');
    prev = VolumeKeys.derive(k, cipher);
    k.fill(0);
  }
  return { block: encodeKeyState(st), keyGen: st.keyGen, prev };
}

/** Re-keys the metadata database in place (SQLite3MultipleCiphers rekey needs a rollback journal). */
export function rekeyMetadata(meta: Metadata, hexKey: string): void {
  meta.rekey(hexKey);
}

/**
 * Opens meta.db with the current key; while a rotation is in progress the database may still be
 * under the previous key (a crash between the header write and the rekey): it is then re-keyed.
 */
export function openMetadata(path: string, keys: VolumeKeys, ks: OpenedKeyState, readonly: boolean): Metadata {
  if (keys.cipher === 'none') return Metadata.open(path, { readonly });
  let meta: Metadata;
  try {
    meta = Metadata.open(path, { hexKey: keys.metaKey.toString('hex'), readonly });
  } catch (e) {
    if (!ks.prev || !(e instanceof MetadataError)) throw e;
    try {
      meta = Metadata.open(path, { hexKey: ks.prev.metaKey.toString('hex'), readonly });
    } catch {
      throw e;
    }
    if (!readonly) {
      meta.apply({ op: 'setConfig', key: 'key_gen', value: ks.keyGen }, true);
      rekeyMetadata(meta, keys.metaKey.toString('hex'));
    }
    return meta;
  }
  if (!readonly && ks.prev && Number(meta.config('key_gen') ?? 0) !== ks.keyGen) meta.apply({ op: 'setConfig', key: 'key_gen', value: ks.keyGen }, true);
  return meta;
}

export interface ReencryptOptions {
  /** Bytes of plaintext per second at most (0 or absent: as fast as possible). */
  maxRate?: number;
  progress?: Progress;
  batchBytes?: number;
  log?: (m: string) => void;
}

export interface ReencryptReport {
  resumed: boolean;
  keyGeneration: number;
  slot: number;
  droppedSlots: number[];
  chunks: number;
  bytes: number;
  seconds: number;
  bytesPerSec: number;
}

const running = new WeakSet<Volume>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function reencrypt(vol: Volume, secret: Secret, o: ReencryptOptions = {}): Promise<ReencryptReport> {
  if (vol.header.cipher === 'none') throw new VolumeError('the volume is not encrypted: there is no master key to rotate');
  if (vol.readonly || !vol.raid.canWrite) throw new VolumeError('the volume is read-only (or lost too many devices): cannot re-encrypt it');
  if (running.has(vol)) throw new VolumeError('a reencrypt is already running on this volume');
  running.add(vol);
  const start = Date.now();
  try {
    const resumed = !!vol.store.prevKeys;
    const { slot, dropped } = await withKeyLock(vol, async () => {
      let unlocked: { masterKey: Buffer; slot: number };
      try {
        unlocked = await unlock(vol.header, secret.secret);
      } catch (e) {
        if (e instanceof WrongSecretError) throw new VolumeError(`wrong passphrase or key file: ${e.message}; nothing was changed`);
        throw e;
      }
      try {
        return { slot: unlocked.slot, dropped: resumed ? [] : await begin(vol, unlocked.masterKey, unlocked.slot, secret) };
      } finally {
        unlocked.masterKey.fill(0);
      }
    });
    const keyGen = Number(vol.meta.config('key_gen') ?? 0);
    if (Number(vol.meta.garbageChunks()) > 0) await vol.gc();
    const tot = vol.meta.chunksBeforeKeyGen(keyGen);
    const maxRate = o.maxRate && o.maxRate > 0 ? o.maxRate : 0;
    const batchBytes = o.batchBytes ?? (maxRate ? Math.min(16 << 20, Math.max(256 << 10, Math.floor(maxRate / 4))) : 16 << 20);
    let chunks = 0;
    let bytes = 0;
    let sinceSnapshot = 0;
    const loopStart = Date.now();
    const report = () => o.progress?.({ phase: 'reencrypt', done: chunks, total: tot.n, bytesPerSec: bytes / Math.max(0.001, (Date.now() - loopStart) / 1000) });
    report();
    for (;;) {
      const n = await vol.fs.exclusive(() => resealBatch(vol, keyGen, batchBytes));
      if (!n) {
        if (await withKeyLock(vol, () => vol.fs.exclusive(() => finish(vol, keyGen)))) break;
        continue;
      }
      chunks += n.chunks;
      bytes += n.bytes;
      sinceSnapshot += n.bytes;
      report();
      // Rows emptied by the rotation stay quarantined until a newer snapshot exists.
      if (sinceSnapshot >= 256 << 20 || vol.store.freeRows < 64) {
        await vol.snapshot(true);
        sinceSnapshot = 0;
      }
      if (maxRate) {
        const ahead = (bytes / maxRate) * 1000 - (Date.now() - loopStart);
        if (ahead > 0) await sleep(ahead);
      }
    }
    vol.store.dropCache();
    const seconds = (Date.now() - start) / 1000;
    return {
      resumed,
      keyGeneration: keyGen,
      slot,
      droppedSlots: dropped,
      chunks,
      bytes,
      seconds,
      bytesPerSec: bytes / Math.max(0.001, (Date.now() - loopStart) / 1000),
    };
  } finally {
    running.delete(vol);
  }
}

/** Step 1 and 2: new master key in the header (with the old one sealed under it), metadata re-keyed. */
async function begin(vol: Volume, oldMaster: Buffer, slot: number, secret: Secret): Promise<number[]> {
  const old = vol.header;
  const info = old.slots[slot]!;
  const { header: h1, masterKey: k1 } = newKeyHeader(old.volumeId, old.cipher);
  try {
    await addSlot(h1, k1, secret.secret, info.kind, info.kdf, slot);
    h1.generation = old.generation + 1;
    const keyGen = Number(vol.meta.config('key_gen') ?? 0) + 1;
    const block = encodeKeyState({ keyGen, rotatedAt: Date.now(), check: keyCheck(k1, old.volumeId), prev: sealPrev(k1, oldMaster, old.volumeId, keyGen) });
    const keys1 = VolumeKeys.derive(k1, old.cipher);
    await vol.fs.exclusive(async () => {
      // From here on the given secret opens the new key, and the old one through the block.
      await vol.raid.writeHeaderArea(headerArea(h1, null, block));
      setHeader(vol, h1);
      vol.manifest = null; // sealed under the old key: an old header backup must not reach it
      vol.keyState = block;
      vol.meta.apply({ op: 'setConfig', key: 'key_gen', value: keyGen }, true);
      rekeyMetadata(vol.meta, keys1.metaKey.toString('hex'));
      const prev = vol.keys;
      vol.keys = keys1;
      vol.store.setKeys(keys1, prev);
      await takeSnapshot(vol);
    });
    return old.slots.flatMap((s, i) => (s && i !== slot ? [i] : []));
  } finally {
    k1.fill(0);
  }
}

function setHeader(vol: Volume, h: KeyHeader): void {
  vol.header = h;
}

interface OldChunk {
  hash: Buffer;
  segment: number;
  off: number;
  storedLen: number;
  plainLen: number;
  height: number;
}

/** Step 3: one batch of chunks re-sealed under the new key set; the caller holds the exclusive section. */
async function resealBatch(vol: Volume, keyGen: number, batchBytes: number): Promise<{ chunks: number; bytes: number } | null> {
  const candidates: OldChunk[] = vol.meta.chunksUnderOldKeys(keyGen, 2048);
  if (!candidates.length) return null;
  const rows: OldChunk[] = [];
  let sum = 0;
  for (const c of candidates) {
    if (rows.length && sum + c.plainLen > batchBytes) break;
    rows.push(c);
    sum += c.plainLen;
  }
  const plains: Buffer[] = [];
  for (let i = 0; i < rows.length; i += 16) {
    const part = rows.slice(i, i + 16);
    try {
      plains.push(...(await Promise.all(part.map((c) => vol.store.readUncached(c, true)))));
    } catch (e) {
      throw new VolumeError(
        `a chunk cannot be read (${(e as Error).message}); repair the devices (hoardfs scrub / replace) and run reencrypt again: it resumes where it stopped`,
      );
    }
  }
  const w = vol.store.newBatch();
  try {
    const moves = rows.map((c, i) => {
      const id = vol.store.id(plains[i]);
      const p = w.add(id, plains[i]);
      return { from: c.hash, hash: id, segment: p.segment, off: p.off, storedLen: p.storedLen };
    });
    await w.finish();
    vol.meta.apply({ op: 'rekeyChunks', keyGen, snapshotGeneration: vol.snapshotGeneration(), segments: w.segments, moves });
  } catch (e) {
    await w.abort();
    throw e;
  }
  return { chunks: rows.length, bytes: sum };
}

/** Step 4: no chunk is left under the old key: forget it (block rewritten on every header copy). */
async function finish(vol: Volume, keyGen: number): Promise<boolean> {
  if (vol.meta.chunksBeforeKeyGen(keyGen).n > 0) return false;
  const st = decodeKeyState(Buffer.concat([Buffer.alloc(KEY_STATE_OFFSET), vol.keyState ?? Buffer.alloc(0)]));
  if (!st) throw new VolumeError('lost track of the key-rotation state');
  vol.keyState = encodeKeyState({ ...st, prev: null });
  vol.header.generation++;
  // The snapshot writes the header area (new block, new manifest) and releases the rows that
  // the rotation emptied.
  await takeSnapshot(vol);
  const prev = vol.store.prevKeys;
  vol.store.setKeys(vol.keys, null);
  prev?.wipe();
  return true;
}
