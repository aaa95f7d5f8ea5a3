// Key-slot and key-header management on an open volume (LUKS-style): every change rewrites the
// fixed-size header on every device, so a removed slot's material is gone from every copy.
import { readFileSync, writeFileSync } from 'node:fs';
import {
  addSlot,
  calibrateKdf,
  decodeKeyHeader,
  encodeKeyHeader,
  headerInfo,
  kdfParamsFromEnv,
  newerHeader,
  removeSlot,
  unlock,
  MAX_SLOTS,
  KEY_HEADER_SIZE,
  KeySlotError,
  type KdfParams,
  type KeyHeader,
} from '../crypto/index.ts';
import { openArray, readConfig, VolumeError } from './config.ts';
import type { Secret, Volume } from './volume.ts';
import { decodeKeyState, type KeyState } from './reencrypt.ts';

async function kdf(): Promise<KdfParams> {
  return kdfParamsFromEnv() ?? (await calibrateKdf());
}

async function store(vol: Volume): Promise<void> {
  await vol.writeHeaders();
}

function freeSlot(h: KeyHeader): number {
  const i = h.slots.findIndex((s) => s === null);
  if (i < 0) throw new KeySlotError(`all ${MAX_SLOTS} key slots are in use`);
  return i;
}

// Key operations on one volume run one at a time: each rewrites the whole header area from the
// in-memory header, so two interleaved writes could put an older state on the devices last.
const keyLocks = new WeakMap<Volume, Promise<unknown>>();

export function withKeyLock<T>(vol: Volume, fn: () => Promise<T>): Promise<T> {
  const prev = keyLocks.get(vol) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  keyLocks.set(vol, run.catch(() => {}));
  return run;
}

export async function addKey(vol: Volume, existing: Secret, added: Secret, slot?: number): Promise<number> {
  return withKeyLock(vol, () => addKeyLocked(vol, existing, added, slot));
}

async function addKeyLocked(vol: Volume, existing: Secret, added: Secret, slot?: number): Promise<number> {
  const { masterKey } = await unlock(vol.header, existing.secret);
  try {
    const index = await addSlot(vol.header, masterKey, added.secret, added.kind, await kdf(), slot ?? freeSlot(vol.header));
    await store(vol);
    return index;
  } finally {
    masterKey.fill(0);
  }
}

export async function removeKey(vol: Volume, slot: number, authorizing: Secret): Promise<void> {
  return withKeyLock(vol, () => removeKeyLocked(vol, slot, authorizing));
}

async function removeKeyLocked(vol: Volume, slot: number, authorizing: Secret): Promise<void> {
  const { masterKey, slot: used } = await unlock(vol.header, authorizing.secret);
  masterKey.fill(0);
  void used;
  removeSlot(vol.header, slot);
  await store(vol);
}

export async function changeKey(vol: Volume, old: Secret, next: Secret): Promise<number> {
  return withKeyLock(vol, () => changeKeyLocked(vol, old, next));
}

async function changeKeyLocked(vol: Volume, old: Secret, next: Secret): Promise<number> {
  const { masterKey, slot } = await unlock(vol.header, old.secret);
  try {
    const free = vol.header.slots.findIndex((s, i) => s === null && i !== slot);
    const params = await kdf();
    if (free >= 0) {
      await addSlot(vol.header, masterKey, next.secret, next.kind, params, free);
      removeSlot(vol.header, slot);
      await store(vol);
      return free;
    }
    removeSlot(vol.header, slot);
    await addSlot(vol.header, masterKey, next.secret, next.kind, params, slot);
    await store(vol);
    return slot;
  } finally {
    masterKey.fill(0);
  }
}

/** The newest valid key header of an unmounted volume, without unlocking it. */
export async function readKeyHeader(dir: string): Promise<KeyHeader> {
  const c = readConfig(dir);
  const raid = await openArray(dir, c);
  try {
    return newerHeader(await raid.readHeaderArea(), Buffer.from(c.volumeId, 'hex')).header;
  } finally {
    await raid.close();
  }
}

export function dumpHeader(h: KeyHeader, ks?: KeyState | null): object {
  const info = headerInfo(h) as Record<string, unknown>;
  if (ks) info.keyRotation = { keyGeneration: ks.keyGen, lastRotationStarted: new Date(ks.rotatedAt).toISOString(), inProgress: !!ks.prev };
  return info;
}

/** The key-state block next to the newest key header (no secret needed; it holds none in clear). */
export async function readKeyState(dir: string): Promise<KeyState | null> {
  const c = readConfig(dir);
  const raid = await openArray(dir, c);
  try {
    const copies = await raid.readHeaderArea();
    const { good } = newerHeader(copies, Buffer.from(c.volumeId, 'hex'));
    for (let i = 0; i < copies.length; i++) if (good[i]) {
      const s = decodeKeyState(copies[i]);
      if (s) return s;
    }
    return null;
  } finally {
    await raid.close();
  }
}

export async function backupHeader(dir: string, file: string): Promise<void> {
  const h = await readKeyHeader(dir);
  writeFileSync(file, encodeKeyHeader(h), { mode: 0o600, flag: 'wx' });
}

/** The master-key digest (salt + PBKDF2 value) of an encoded header: tells two master keys apart without a secret. */
function digestOf(encoded: Buffer): Buffer {
  return encoded.subarray(92, 156);
}

export async function restoreHeader(dir: string, file: string): Promise<{ slots: number; sameKey: boolean | null }> {
  const c = readConfig(dir);
  let blob: Buffer;
  try {
    blob = readFileSync(file);
  } catch (e) {
    throw new VolumeError(`cannot read header backup ${file}: ${(e as Error).message}`);
  }
  const h = decodeKeyHeader(blob);
  if (!h.volumeId.equals(Buffer.from(c.volumeId, 'hex'))) throw new VolumeError(`${file} is the key header of another volume`);
  const raid = await openArray(dir, c);
  try {
    // The restored header must win over the copies on the devices: give it the next generation.
    const current = await raid.readHeaderArea();
    let gen = h.generation;
    let tail = Buffer.alloc(0);
    let sameKey: boolean | null = null;
    try {
      const picked = newerHeader(current, h.volumeId);
      gen = Math.max(gen, picked.header.generation + 1);
      // Keep what follows the key header on the devices: the snapshot manifest and the
      // key-state block (which refuses a header whose master key was rotated away).
      const good = current[picked.good.indexOf(true)];
      if (good) tail = Buffer.from(good.subarray(KEY_HEADER_SIZE));
      sameKey = digestOf(encodeKeyHeader(picked.header)).equals(digestOf(blob));
    } catch {
      /* no valid copy left on the devices: the backup's own generation will do */
    }
    h.generation = gen;
    await raid.writeHeaderArea(Buffer.concat([encodeKeyHeader(h), tail]));
    return { slots: h.slots.filter(Boolean).length, sameKey };
  } finally {
    await raid.close();
  }
}
