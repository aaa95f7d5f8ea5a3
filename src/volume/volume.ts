// A volume: its directory (hoardfs.json, meta.db, lock), its device files (RAID), its keys.
// Opening one unlocks the key header, opens the array and the database, and assembles the
// filesystem; nothing is written until every check passed.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { ChunkStore } from '../chunks/store.ts';
import { DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from '../chunks/cdc.ts';
import {
  VolumeKeys,
  addSlot,
  calibrateKdf,
  encodeKeyHeader,
  kdfParamsFromEnv,
  newKeyHeader,
  newerHeader,
  unlock,
  type Cipher,
  type KdfParams,
  type KeyHeader,
} from '../crypto/index.ts';
import { Filesystem, type FilesystemOptions } from '../fs/filesystem.ts';
import { Metadata } from '../meta/metadata.ts';
import { RaidArray, openDeviceFromEnv, type LayoutSpec, type OpenDevice } from '../raid/index.ts';
import { headerArea, newestManifest, takeSnapshot, encodeManifest } from './snapshot.ts';
import { openKeyState, openMetadata } from './reencrypt.ts';
import { CONFIG_NAME, FORMAT, FORMAT_VERSION, META_NAME, VolumeError, devicePath, readConfig, writeConfig, type VolumeConfig } from './config.ts';

export { VolumeError };

export interface Secret {
  secret: Buffer;
  kind: 'passphrase' | 'keyfile';
}

export interface CreateOptions {
  dir: string;
  layout?: LayoutSpec;
  devices?: string[];
  spares?: string[];
  deviceSize?: number;
  cipher?: Cipher;
  secret?: Secret; // required unless cipher is 'none'
  kdf?: KdfParams;
  chunker?: ChunkerParams;
  force?: boolean;
  log?: (msg: string) => void;
}

export interface OpenOptions {
  dir: string;
  /** Asked for only when the volume is encrypted. */
  getSecret?: () => Promise<Secret>;
  readonly?: boolean;
  /** Take the volume's lock (a mount, fsck --repair, gc, ...). */
  lock?: boolean;
  fs?: FilesystemOptions;
  log?: (msg: string) => void;
}

// HOARDFS_FAULTS=rules.json puts a fault-injecting device layer under the array (tests only).
function defaultOpenDevice(): OpenDevice {
  return openDeviceFromEnv();
}

export async function createVolume(o: CreateOptions): Promise<void> {
  const dir = resolve(o.dir);
  const log = o.log ?? (() => {});
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new VolumeError(`${o.dir} exists and is not a directory`);
    if (existsSync(join(dir, CONFIG_NAME)) && !o.force) throw new VolumeError(`${o.dir} is already a hoardfs volume; use --force to replace it`);
    const extra = readdirSync(dir).filter((n) => ![CONFIG_NAME, META_NAME, `${META_NAME}-wal`, `${META_NAME}-shm`, 'lock'].includes(n));
    const devRel = new Set((o.devices ?? []).map((d) => resolve(d)));
    if (extra.some((n) => !devRel.has(join(dir, n))) && !o.force) {
      throw new VolumeError(`${o.dir} is not empty; pick an empty or new directory (or --force)`);
    }
  }
  const cipher = o.cipher ?? 'aes-256-gcm';
  if (cipher !== 'none' && !o.secret) throw new VolumeError('an encrypted volume needs a passphrase or key file');
  const chunker = o.chunker ?? DEFAULT_CHUNKER;
  try {
    validateChunkerParams(chunker);
  } catch (e) {
    throw new VolumeError((e as Error).message);
  }
  const devices = (o.devices?.length ? o.devices : [join(dir, 'dev0.img')]).map((d) => resolve(d));
  const spares = (o.spares ?? []).map((d) => resolve(d));
  const layout: LayoutSpec = o.layout ?? { level: devices.length === 1 ? 0 : 1, devices: devices.length };
  layout.devices = devices.length;
  // A chunk must fit one row: its sealed size is at most max + 12% (Padmé) + envelope.
  const dataStrips = dataStripsOf(layout);
  if (!layout.stripSize) {
    const need = Math.ceil((chunker.max * 1.13 + 64) / dataStrips);
    layout.stripSize = Math.max(64 * 1024, 2 ** Math.ceil(Math.log2(need)));
  }
  mkdirSync(dir, { recursive: true });
  for (const n of [META_NAME, `${META_NAME}-wal`, `${META_NAME}-shm`]) rmSync(join(dir, n), { force: true });
  const volumeId = randomBytes(16);
  let raid: RaidArray | undefined;
  let meta: Metadata | undefined;
  let master: Buffer | undefined;
  try {
    raid = await RaidArray.create({
      volumeId,
      layout,
      devices,
      spares,
      deviceSize: o.deviceSize ?? 16 * 1024 ** 3,
      force: o.force,
      openDevice: defaultOpenDevice(),
    });
    const { header, masterKey } = newKeyHeader(volumeId, cipher);
    master = masterKey;
    if (cipher !== 'none') {
      const kdf = o.kdf ?? kdfParamsFromEnv() ?? (log('calibrating the key derivation (about 2 s)...'), await calibrateKdf());
      await addSlot(header, masterKey, o.secret!.secret, o.secret!.kind, kdf, 0);
    }
    await raid.writeHeaderArea(headerArea(header, null));
    const keys = VolumeKeys.derive(masterKey, cipher);
    meta = Metadata.open(join(dir, META_NAME), { create: true, hexKey: cipher === 'none' ? undefined : keys.metaKey.toString('hex') });
    keys.wipe();
    meta.close();
    meta = undefined;
    const rel = (p: string) => (p.startsWith(dir + '/') ? relative(dir, p) : p);
    const config: VolumeConfig = {
      format: FORMAT,
      version: FORMAT_VERSION,
      volumeId: volumeId.toString('hex'),
      cipher,
      layout: raid.layout,
      devices: devices.map(rel),
      spares: spares.map(rel),
      chunker,
      createdAt: new Date().toISOString(),
    };
    writeConfig(dir, config);
  } finally {
    master?.fill(0);
    meta?.close();
    await raid?.close();
  }
}

export function dataStripsOf(l: LayoutSpec): number {
  const n = l.devices;
  switch (l.level) {
    case 0:
      return n;
    case 1:
      return 1;
    case 5:
      return n - 1;
    case 6:
      return n - 2;
    case 10:
      return Math.max(1, Math.floor(n / (l.mirrors ?? 2)));
    case 50:
      return Math.max(1, (n / (l.groupSize ?? n)) * ((l.groupSize ?? n) - 1));
    case 60:
      return Math.max(1, (n / (l.groupSize ?? n)) * ((l.groupSize ?? n) - 2));
    default:
      throw new VolumeError(`unknown RAID level ${String(l.level)}`);
  }
}

// ---- the lock: one process owns a volume at a time ----

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie (killed, not yet reaped) holds nothing.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export interface LockInfo {
  pid: number;
  mountpoint?: string;
}

export function lockHolder(dir: string): LockInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'lock'), 'utf8')) as LockInfo;
    if (Number.isInteger(info.pid) && processAlive(info.pid)) return info;
  } catch {
    /* no lock, or a damaged one: nobody holds it */
  }
  return undefined;
}

export function takeLock(dir: string, info: LockInfo): void {
  const path = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeFileSync(fd, JSON.stringify(info));
      closeSync(fd);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = lockHolder(dir);
      if (holder) {
        throw new VolumeError(
          holder.mountpoint
            ? `volume ${dir} is already mounted at ${holder.mountpoint} (process ${holder.pid})`
            : `volume ${dir} is in use by process ${holder.pid}`,
        );
      }
      rmSync(path, { force: true }); // left by a process that died
    }
  }
  throw new VolumeError(`cannot take the lock of volume ${dir}`);
}

export function updateLock(dir: string, info: LockInfo): void {
  writeFileSync(join(dir, 'lock'), JSON.stringify(info));
}

export function releaseLock(dir: string): void {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'lock'), 'utf8')) as LockInfo;
    if (info.pid === process.pid) unlinkSync(join(dir, 'lock'));
  } catch {
    /* already gone */
  }
}

// ---- an open volume ----

export class Volume {
  /** The sealed manifest of the newest metadata snapshot, stored after the key header. */
  manifest: Buffer | null = null;
  /** The key-state block (reencrypt.ts) stored after the manifest; null until the first rotation. */
  keyState: Buffer | null = null;

  private constructor(
    readonly dir: string,
    readonly config: VolumeConfig,
    readonly raid: RaidArray,
    public header: KeyHeader, // replaced by reencrypt
    public keys: VolumeKeys, // replaced by reencrypt
    readonly meta: Metadata,
    readonly store: ChunkStore,
    readonly fs: Filesystem,
    private readonly locked: boolean,
    readonly readonly: boolean,
  ) {}

  /** Rewrites the key header (and the snapshot manifest after it) on every device. */
  async writeHeaders(): Promise<void> {
    await this.raid.writeHeaderArea(headerArea(this.header, this.manifest, this.keyState));
  }

  /** Snapshots the metadata into the store if anything changed since the last snapshot. */
  async snapshot(force = false): Promise<boolean> {
    return this.fs.exclusive(async () => {
      if (this.readonly || !this.raid.canWrite) return false;
      if (!force && !this.meta.changedSinceSnapshot()) return false;
      await takeSnapshot(this);
      return true;
    });
  }

  static async open(o: OpenOptions): Promise<Volume> {
    const dir = resolve(o.dir);
    const log = o.log ?? ((m: string) => process.stderr.write(`hoardfs: ${m}\n`));
    const config = readConfig(dir);
    if (o.lock) takeLock(dir, { pid: process.pid });
    let raid: RaidArray | undefined;
    let meta: Metadata | undefined;
    let keys: VolumeKeys | undefined;
    try {
      const volumeId = Buffer.from(config.volumeId, 'hex');
      raid = await RaidArray.open({
        volumeId,
        devices: config.devices.map((d) => devicePath(dir, d)),
        spares: config.spares.map((d) => devicePath(dir, d)),
        openDevice: defaultOpenDevice(),
        log,
      });
      const copies = await raid.readHeaderArea();
      let picked: { header: KeyHeader; good: boolean[] };
      try {
        picked = newerHeader(copies, volumeId);
      } catch (e) {
        throw new VolumeError(`no readable key header on any device of ${dir}: ${(e as Error).message} (restore one with 'hoardfs header restore')`);
      }
      const header = picked.header;
      if (header.cipher !== config.cipher) throw new VolumeError(`key header cipher ${header.cipher} does not match ${CONFIG_NAME} (${config.cipher})`);
      let masterKey: Buffer;
      if (header.cipher === 'none') masterKey = (await unlock(header, Buffer.alloc(0))).masterKey;
      else {
        if (!o.getSecret) throw new VolumeError(`volume ${dir} is encrypted: a passphrase or key file is needed`);
        const s = await o.getSecret();
        try {
          masterKey = (await unlock(header, s.secret)).masterKey;
        } finally {
          s.secret.fill(0);
        }
      }
      let ks;
      try {
        // Refuses an old master key (a header restored from before a reencrypt); recovers the
        // previous key while a rotation is in progress.
        ks = openKeyState(copies, picked.good, volumeId, masterKey, header.cipher);
      } catch (e) {
        masterKey.fill(0);
        throw e;
      }
      keys = VolumeKeys.derive(masterKey, header.cipher);
      masterKey.fill(0);
      const manifest = newestManifest(keys, copies);
      const manifestBlob = manifest ? encodeManifest(keys, manifest) : null;
      if (!o.readonly && raid.canWrite && picked.good.some((g) => !g)) {
        log('rewriting damaged or stale key header copies');
        await raid.writeHeaderArea(headerArea(header, manifestBlob, ks.block));
      }
      meta = openMetadata(join(dir, META_NAME), keys, ks, !!o.readonly);
      const store = new ChunkStore({ raid, keys, chunker: config.chunker, usedRows: meta.usedRows() });
      if (ks.prev) store.setKeys(keys, ks.prev);
      const fs = new Filesystem(meta, store, { log, readonly: o.readonly, ...o.fs });
      const vol = new Volume(dir, config, raid, header, keys, meta, store, fs, !!o.lock, !!o.readonly);
      vol.manifest = manifestBlob;
      vol.keyState = ks.block;
      return vol;
    } catch (e) {
      meta?.close();
      keys?.wipe();
      await raid?.close().catch(() => {});
      if (o.lock) releaseLock(dir);
      throw e;
    }
  }

  async close(): Promise<void> {
    try {
      await this.fs.destroy();
      if (!this.readonly) await this.snapshot();
    } finally {
      await this.store.close().catch(() => {});
      this.meta.close();
      this.keys.wipe();
      this.store.prevKeys?.wipe();
      await this.raid.close();
      if (this.locked) releaseLock(this.dir);
    }
  }

  /** Reclaims unreferenced chunks and returns emptied rows to the allocator. */
  async gc(): Promise<{ chunks: number; bytes: number; rows: number }> {
    const r = await this.fs.exclusive(() =>
      this.meta.apply<{ chunks: number; bytes: number; segments: number[] }>({ op: 'gc', now: 0n, snapshotGeneration: this.snapshotGeneration() }),
    );
    // Emptied rows stay quarantined until a snapshot newer than their freeing exists; taking
    // one now ends the quarantine (the snapshot releases them).
    if (r.segments.length) await this.snapshot(true);
    return { chunks: r.chunks, bytes: r.bytes, rows: r.segments.length };
  }

  snapshotGeneration(): number {
    return Number(this.meta.config('snapshot_generation') ?? 0);
  }
}

export function isAbsolutePath(p: string): boolean {
  return isAbsolute(p);
}
