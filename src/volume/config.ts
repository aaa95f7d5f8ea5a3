// hoardfs.json: the one plaintext file of a volume. It says where the device files are and how
// the volume is put together; it holds no key and nothing about the files inside.
import { readFileSync, writeFileSync, renameSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { join, resolve, isAbsolute } from 'node:path';
import type { ChunkerParams } from '../chunks/cdc.ts';
import type { Cipher } from '../crypto/index.ts';
import { RaidArray, openDeviceFromEnv, type LayoutSpec } from '../raid/index.ts';

export const CONFIG_NAME = 'hoardfs.json';
export const META_NAME = 'meta.db';
export const FORMAT = 'hoardfs-volume';
export const FORMAT_VERSION = 1;

export interface VolumeConfig {
  format: typeof FORMAT;
  version: number;
  volumeId: string; // hex, 16 bytes
  cipher: Cipher;
  layout: LayoutSpec;
  devices: string[]; // relative to the volume directory unless absolute
  spares: string[];
  chunker: ChunkerParams;
  createdAt: string;
}

export class VolumeError extends Error {}

export function readConfig(dir: string): VolumeConfig {
  let text: string;
  try {
    text = readFileSync(join(dir, CONFIG_NAME), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VolumeError(`${dir} is not a hoardfs volume (no ${CONFIG_NAME})`);
    if (code === 'ENOTDIR') throw new VolumeError(`${dir} is not a hoardfs volume (not a directory)`);
    throw new VolumeError(`cannot read ${join(dir, CONFIG_NAME)}: ${(e as Error).message}`);
  }
  let c: VolumeConfig;
  try {
    c = JSON.parse(text);
  } catch {
    throw new VolumeError(`${join(dir, CONFIG_NAME)} is damaged (not valid JSON)`);
  }
  const bad = (what: string) => new VolumeError(`${join(dir, CONFIG_NAME)} is damaged: ${what}`);
  if (!c || typeof c !== 'object' || c.format !== FORMAT) throw new VolumeError(`${dir} is not a hoardfs volume (unknown format in ${CONFIG_NAME})`);
  if (c.version !== FORMAT_VERSION) throw new VolumeError(`${dir} has volume format version ${c.version}; this hoardfs reads version ${FORMAT_VERSION}`);
  if (typeof c.volumeId !== 'string' || !/^[0-9a-f]{32}$/.test(c.volumeId)) throw bad('volumeId');
  if (c.cipher !== 'none' && c.cipher !== 'aes-256-gcm') throw bad('cipher');
  if (!Array.isArray(c.devices) || !c.devices.length || !c.devices.every((d) => typeof d === 'string' && d)) throw bad('devices');
  if (!Array.isArray(c.spares) || !c.spares.every((d) => typeof d === 'string' && d)) throw bad('spares');
  if (!c.layout || typeof c.layout !== 'object' || typeof c.layout.level !== 'number') throw bad('layout');
  const ch = c.chunker;
  if (!ch || ![ch.min, ch.avg, ch.max].every((n) => Number.isInteger(n) && n > 0)) throw bad('chunker');
  return c;
}

export function writeConfig(dir: string, c: VolumeConfig): void {
  const tmp = join(dir, `${CONFIG_NAME}.tmp`);
  writeFileSync(tmp, JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, join(dir, CONFIG_NAME));
  const dfd = openSync(dir, 'r');
  fsyncSync(dfd);
  closeSync(dfd);
}

export function devicePath(dir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dir, p);
}

/** The array of an unmounted volume, opened quietly for header and snapshot work. */
export function openArray(dir: string, c: VolumeConfig): Promise<RaidArray> {
  return RaidArray.open({
    volumeId: Buffer.from(c.volumeId, 'hex'),
    devices: c.devices.map((d) => devicePath(dir, d)),
    spares: c.spares.map((d) => devicePath(dir, d)),
    openDevice: openDeviceFromEnv(),
    log: () => {},
  });
}
