// Metadata snapshots: a consistent image of the database, sealed like chunks and written into
// rows of the volume's own devices (so RAID and encryption protect it), with a small sealed
// manifest stored after the key header on every device. restore-metadata rebuilds meta.db
// from the newest one.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chunkId, encodeKeyHeader, KEY_HEADER_SIZE, newerHeader, openChunk, sealChunk, sealedSize, unlock, VolumeKeys, type KeyHeader } from '../crypto/index.ts';
import { Metadata } from '../meta/metadata.ts';
import type { RaidArray } from '../raid/index.ts';
import { META_NAME, openArray, readConfig, VolumeError } from './config.ts';
import type { Secret, Volume } from './volume.ts';

const MAGIC = Buffer.from('HOARDSNP');

export interface Piece {
  row: number;
  height: number;
  storedLen: number;
  plainLen: number;
  hash: string;
}

export interface Manifest {
  generation: number;
  createdAt: string;
  dbBytes: number;
  pieces: Piece[];
}

export function encodeManifest(keys: VolumeKeys, m: Manifest): Buffer {
  const plain = Buffer.from(JSON.stringify(m));
  const id = chunkId(keys, plain);
  const env = sealChunk(keys, id, plain);
  const head = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(head);
  head.writeUInt32LE(env.length, MAGIC.length);
  return Buffer.concat([head, id, env]);
}

/** The manifest stored after a key header copy, or null when absent or damaged. */
export function decodeManifest(keys: VolumeKeys, area: Buffer | null): Manifest | null {
  if (!area || area.length < KEY_HEADER_SIZE + 44) return null;
  const b = area.subarray(KEY_HEADER_SIZE);
  if (!b.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const len = b.readUInt32LE(MAGIC.length);
  if (len > b.length - 44) return null;
  try {
    const id = b.subarray(12, 44);
    const m = JSON.parse(openChunk(keys, Buffer.from(id), b.subarray(44, 44 + len)).toString()) as Manifest;
    if (!Number.isInteger(m.generation) || !Array.isArray(m.pieces)) return null;
    return m;
  } catch {
    return null;
  }
}

export function newestManifest(keys: VolumeKeys, areas: (Buffer | null)[]): Manifest | null {
  let best: Manifest | null = null;
  for (const a of areas) {
    const m = decodeManifest(keys, a);
    if (m && (!best || m.generation > best.generation)) best = m;
  }
  return best;
}

/** The manifest's room after the key header; the key-state block (reencrypt.ts) follows it. */
export const MANIFEST_AREA = 65536;

export function headerArea(header: KeyHeader, manifest: Buffer | null, keyState: Buffer | null = null): Buffer {
  const h = encodeKeyHeader(header);
  if (keyState) {
    const m = Buffer.alloc(MANIFEST_AREA);
    manifest?.copy(m);
    return Buffer.concat([h, m, keyState]);
  }
  return manifest ? Buffer.concat([h, manifest]) : h;
}

function pieceSize(keys: VolumeKeys, rowBytes: number): number {
  let p = Math.floor(rowBytes / 1.15) - 64;
  while (sealedSize(keys, p) > rowBytes) p -= 4096;
  return p;
}

/** Takes a snapshot; the caller holds the filesystem's exclusive section. */
export async function takeSnapshot(vol: Volume): Promise<Manifest> {
  const image = vol.meta.serialize();
  const generation = vol.snapshotGeneration() + 1;
  const size = pieceSize(vol.keys, vol.raid.rowDataBytes);
  const pieces: Piece[] = [];
  const rows: number[] = [];
  try {
    for (let off = 0; off < image.length; off += size) {
      const plain = image.subarray(off, Math.min(image.length, off + size));
      const id = chunkId(vol.keys, plain);
      const env = sealChunk(vol.keys, id, plain);
      const row = vol.store.allocRow(true);
      rows.push(row);
      const height = await vol.raid.writeRow(row, env);
      pieces.push({ row, height, storedLen: env.length, plainLen: plain.length, hash: id.toString('hex') });
    }
    await vol.raid.sync();
  } catch (e) {
    vol.store.releaseRows(rows);
    throw e;
  }
  const m: Manifest = { generation, createdAt: new Date().toISOString(), dbBytes: image.length, pieces };
  vol.manifest = encodeManifest(vol.keys, m);
  await vol.raid.writeHeaderArea(headerArea(vol.header, vol.manifest, vol.keyState));
  const freed = vol.meta.apply<number[]>(
    { op: 'snapshotTaken', generation, createdAt: m.createdAt, rows: pieces.map((p) => ({ row: p.row, height: p.height, bytes: p.storedLen })) },
    true,
  );
  vol.store.releaseRows(freed);
  // Keep room for the next snapshot (twice this one: the metadata grows) even on a full volume.
  vol.store.reservedRows = Math.max(2, 2 * pieces.length + 1);
  return m;
}

async function readImage(raid: RaidArray, keys: VolumeKeys, m: Manifest): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const p of m.pieces) {
    const id = Buffer.from(p.hash, 'hex');
    let plain: Buffer | undefined;
    await raid.readRange(p.row, p.height, 0, p.storedLen, (b) => {
      try {
        plain = openChunk(keys, id, b);
        return plain.length === p.plainLen;
      } catch {
        return false;
      }
    });
    if (!plain) throw new VolumeError(`snapshot piece in row ${p.row} failed verification`);
    parts.push(plain);
  }
  const image = Buffer.concat(parts);
  if (image.length !== m.dbBytes) throw new VolumeError('snapshot is incomplete');
  return image;
}

export interface RestoreReport {
  snapshotGeneration: number;
  snapshotCreatedAt: string;
  previousDatabase: 'missing' | 'unreadable' | 'readable';
  lost: { added: string[]; removed: string[]; changed: string[] } | null;
  movedAside?: string;
}

export async function restoreMetadata(dir: string, getSecret: () => Promise<Secret>): Promise<RestoreReport> {
  const c = readConfig(dir);
  const volumeId = Buffer.from(c.volumeId, 'hex');
  const raid = await openArray(dir, c);
  let keys: VolumeKeys | undefined;
  try {
    const areas = await raid.readHeaderArea();
    const header = newerHeader(areas, volumeId).header;
    let master: Buffer;
    if (header.cipher === 'none') master = (await unlock(header, Buffer.alloc(0))).masterKey;
    else {
      const s = await getSecret();
      master = (await unlock(header, s.secret)).masterKey;
      s.secret.fill(0);
    }
    keys = VolumeKeys.derive(master, header.cipher);
    master.fill(0);
    const m = newestManifest(keys, areas);
    if (!m) throw new VolumeError(`no metadata snapshot found on the devices of ${dir}`);
    const snap = Metadata.fromImage(await readImage(raid, keys, m));
    const hexKey = header.cipher === 'none' ? undefined : keys.metaKey.toString('hex');
    const path = join(dir, META_NAME);
    let previous: RestoreReport['previousDatabase'] = existsSync(path) ? 'unreadable' : 'missing';
    let lost: RestoreReport['lost'] = null;
    const tmp = join(dir, `${META_NAME}.restoring`);
    try {
      if (previous === 'unreadable') {
        try {
          const old = Metadata.open(path, { hexKey, readonly: true });
          try {
            const before = snap.listing();
            const now = old.listing();
            lost = { added: [], removed: [], changed: [] };
            for (const [p, info] of now) {
              const b = before.get(p);
              if (!b) lost.added.push(p);
              else if (b.size !== info.size || b.mtime !== info.mtime || b.type !== info.type) lost.changed.push(p);
            }
            for (const p of before.keys()) if (!now.has(p)) lost.removed.push(p);
            previous = 'readable';
          } finally {
            old.close();
          }
        } catch {
          previous = 'unreadable';
        }
      }
      rmSync(tmp, { force: true });
      snap.writeTo(tmp, hexKey);
    } finally {
      snap.close();
    }
    let movedAside: string | undefined;
    if (existsSync(path)) {
      movedAside = `${path}.before-restore-${Date.now()}`;
      renameSync(path, movedAside);
      for (const ext of ['-wal', '-shm']) if (existsSync(path + ext)) renameSync(path + ext, movedAside + ext);
    }
    renameSync(tmp, path);
    const meta = Metadata.open(path, { hexKey });
    try {
      meta.apply({ op: 'snapshotTaken', generation: m.generation, createdAt: m.createdAt, rows: m.pieces.map((p) => ({ row: p.row, height: p.height, bytes: p.storedLen })) }, true);
    } finally {
      meta.close();
    }
    return { snapshotGeneration: m.generation, snapshotCreatedAt: m.createdAt, previousDatabase: previous, lost, movedAside };
  } finally {
    keys?.wipe();
    await raid.close();
  }
}
