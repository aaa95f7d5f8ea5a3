// RAID volumes on real FUSE mounts, driven through the hoardfs CLI: a reference data set kept in
// memory, device damage of every kind, byte-for-byte reads, status as JSON, and restoring the
// device files (and the volume directory) from a saved copy between cases.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { basename, join } from 'node:path';
import { buildGeometry, dataStartFor, mirrorOrder, normalizeLayout, rowMap, type Geometry, type LayoutSpec } from '../../src/raid/layout.ts';
import { forceUnmount, hoardfs, makeVolume, mounted, randomData, sh, type RunResult, type TestVolume } from '../helpers.ts';

export const MiB = 1024 * 1024;
export const KINDS = ['deleted', 'truncated', 'zeros', 'eio', 'flipped'] as const;
export type Kind = (typeof KINDS)[number];
export const SHORT: Record<Kind, string> = { deleted: 'del', truncated: 'trunc', zeros: 'zero', eio: 'eio', flipped: 'flip' };

export interface Level {
  name: string;
  level: number;
  devices: number;
  mirrors?: number;
  groupSize?: number;
}

export interface DeviceStatus {
  slot: number | null;
  path: string;
  state: string;
  readErrors: number;
  writeErrors: number;
  checksumErrors: number;
  rebuild?: { done: number; total: number; percent: number; bytesPerSec?: number; etaSeconds?: number; maxBytesPerSec?: number };
}

export interface Status {
  level: number;
  layout: { level: number; devices: number; groupSize: number; mirrors: number; stripSize: number };
  capacityBytes: number;
  freeBytes: number;
  state: 'ONLINE' | 'DEGRADED' | 'FAULTED';
  canWrite: boolean;
  devices: DeviceStatus[];
  damagedFiles: string[];
}

export interface Flip {
  pos: number;
  orig: number;
  /** 'read': a full read of every file verifies these bytes; 'scrub': only scrub looks at them. */
  role: 'read' | 'scrub';
  row: number;
}

/** The reference data set: files of many sizes so that rows hold several files and files span rows. */
export function dataSet(seed: number, totalMiB = 4): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  files.set('empty', Buffer.alloc(0));
  files.set('tiny', Buffer.from('seven b'));
  files.set('dir/sub/big', randomData(Math.round(1.5 * MiB) + 17, seed));
  let left = totalMiB * MiB - 1.5 * MiB;
  for (let i = 0; left > 0; i++) {
    const n = 40_000 + ((i * 97_531 + seed * 7919) % 360_000);
    files.set(`f${String(i).padStart(2, '0')}`, randomData(n, seed * 1000 + i + 1));
    left -= n;
  }
  return files;
}

export interface ReadResult {
  ok: string[];
  eio: string[];
}

/** Reads every file through the mount and compares with the reference; anything but equal bytes or EIO fails. */
export function readAll(mnt: string, files: Map<string, Buffer>, what: string): ReadResult {
  const r: ReadResult = { ok: [], eio: [] };
  for (const [name, want] of files) {
    let got: Buffer;
    try {
      got = fs.readFileSync(join(mnt, name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      assert.equal(code, 'EIO', `${what}: reading ${name} failed with ${code}, not EIO: ${(e as Error).message}`);
      r.eio.push(name);
      continue;
    }
    assert.equal(got.length, want.length, `${what}: ${name} has ${got.length} bytes, want ${want.length}`);
    if (!got.equals(want)) {
      let i = 0;
      while (got[i] === want[i]) i++;
      assert.fail(`${what}: ${name} differs from the reference at byte ${i} (WRONG BYTES RETURNED)`);
    }
    r.ok.push(name);
  }
  return r;
}

export function writeFiles(mnt: string, files: Map<string, Buffer>): void {
  for (const [name, data] of files) {
    const p = join(mnt, name);
    fs.mkdirSync(join(p, '..'), { recursive: true });
    const fd = fs.openSync(p, 'w');
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
}

function must(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export interface RaidVolume {
  v: TestVolume;
  level: Level;
  devices: string[];
  spares: string[];
  rules: string;
  env: Record<string, string>;
  geo: Geometry;
  dataStart: number;
  stripSize: number;
  /** Rows [0, fileRows) hold the reference files' chunks (written before any metadata snapshot). */
  fileRows: number;
  files: Map<string, Buffer>;
  mount(extra?: string[]): Promise<RunResult>;
  umount(): Promise<void>;
  status(): Promise<Status>;
  statusText(): Promise<string>;
  cli(args: string[], o?: { timeoutMs?: number }): Promise<RunResult>;
  setRules(rules: unknown[]): void;
  save(): Promise<void>;
  restore(): Promise<void>;
  daemonPid(): number;
  cleanup(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
export async function cleanupAll(): Promise<void> {
  for (const c of cleanups.splice(0)) await c().catch(() => {});
}

/**
 * mkfs through the CLI (devices outside the volume directory, 256 MiB each), optionally mount and
 * write the reference data set, record which rows hold it, unmount.
 */
export async function raidVolume(level: Level, o: { spares?: number; deviceSize?: string; files?: Map<string, Buffer>; extra?: string[] } = {}): Promise<RaidVolume> {
  const devArgs: string[] = [];
  for (let i = 0; i < level.devices; i++) devArgs.push('--device', `{root}/d${i}.img`);
  for (let i = 0; i < (o.spares ?? 0); i++) devArgs.push('--spare', `{root}/s${i}.img`);
  const args = ['--level', String(level.level), ...devArgs, '--device-size', o.deviceSize ?? '256M', ...(o.extra ?? [])];
  if (level.mirrors) args.push('--mirrors', String(level.mirrors));
  if (level.groupSize) args.push('--group-size', String(level.groupSize));
  const v = await makeVolume(args);
  const devices = Array.from({ length: level.devices }, (_, i) => join(v.root, `d${i}.img`));
  const spares = Array.from({ length: o.spares ?? 0 }, (_, i) => join(v.root, `s${i}.img`));
  const rules = join(v.root, 'faults.json');
  fs.writeFileSync(rules, '[]');
  const env = { HOARDFS_FAULTS: rules };
  const cfg = JSON.parse(fs.readFileSync(join(v.dir, 'hoardfs.json'), 'utf8')) as { layout: LayoutSpec };
  const layout = normalizeLayout(cfg.layout);
  const saved = join(v.root, 'saved');
  const rv: RaidVolume = {
    v,
    level,
    devices,
    spares,
    rules,
    env,
    geo: buildGeometry(layout),
    dataStart: dataStartFor(layout.stripSize),
    stripSize: layout.stripSize,
    fileRows: 0,
    files: new Map(),
    mount: async (extra = []) => must(await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs, ...extra], { env }), 'mount'),
    umount: async () => {
      must(await hoardfs(['umount', v.mnt]), 'umount');
    },
    status: async () => JSON.parse(must(await hoardfs(['status', v.dir, '--json', ...v.secretArgs], { env }), 'status').stdout) as Status,
    statusText: async () => must(await hoardfs(['status', v.dir, ...v.secretArgs], { env }), 'status').stdout,
    cli: (a, co = {}) => hoardfs([...a, ...(['mount', 'umount'].includes(a[0]) ? [] : v.secretArgs)], { env, timeoutMs: co.timeoutMs }),
    setRules: (r) => fs.writeFileSync(rules, JSON.stringify(r)),
    save: async () => {
      fs.rmSync(saved, { recursive: true, force: true });
      fs.mkdirSync(saved);
      const all = [...devices, ...spares].filter((d) => fs.existsSync(d));
      const r = await sh(`cp --sparse=always ${all.map((d) => `'${d}'`).join(' ')} '${saved}/' && cp -a --sparse=always '${v.dir}' '${saved}/vol'`);
      if (r.code !== 0) throw new Error(`saving the devices failed: ${r.stderr}`);
    },
    restore: async () => {
      assert.equal(mounted(v.mnt), false, 'restore needs the volume unmounted');
      fs.writeFileSync(rules, '[]');
      const names = [...devices, ...spares].map((d) => basename(d)).filter((n) => fs.existsSync(join(saved, n)));
      const r = await sh(
        `set -e; cd '${v.root}'; rm -f ${names.map((n) => `'${n}'`).join(' ')}; for f in ${names.map((n) => `'${n}'`).join(' ')}; do cp --sparse=always "saved/$f" "$f"; done; ` +
          `rm -rf '${v.dir}'; cp -a --sparse=always saved/vol '${v.dir}'`,
      );
      if (r.code !== 0) throw new Error(`restoring the devices failed: ${r.stderr}`);
    },
    daemonPid: () => (JSON.parse(fs.readFileSync(join(v.dir, 'lock'), 'utf8')) as { pid: number }).pid,
    cleanup: async () => {
      if (mounted(v.mnt)) await hoardfs(['umount', v.mnt]).catch(() => undefined);
      forceUnmount(v.mnt);
      await v.cleanup();
    },
  };
  cleanups.push(rv.cleanup);
  if (o.files) {
    await rv.mount();
    writeFiles(v.mnt, o.files);
    const stats = JSON.parse(must(await rv.cli(['stats', v.dir, '--json']), 'stats').stdout) as { segments: number };
    rv.fileRows = stats.segments;
    rv.files = o.files;
    await rv.umount();
  }
  return rv;
}

export function tolerance(geo: Geometry): number[] {
  return geo.groups.map((g) => g.tolerance);
}

/** Whether failing these slots stays within what every group tolerates. */
export function withinTolerance(geo: Geometry, slots: number[]): boolean {
  return geo.groups.every((g) => g.slots.filter((s) => slots.includes(s)).length <= g.tolerance);
}

// ------------------------------------------------------------------ damage

/** Where in the device file a byte of row `row` at strip offset `off` lives. */
export function devicePos(rv: RaidVolume, row: number, off: number): number {
  return rv.dataStart + row * rv.stripSize + off;
}

/**
 * Which path looks at a byte of slot's strip of `row`: a full read of every file verifies data
 * strips (for mirrors the copy reads prefer, or every copy when that one cannot be read); parity and
 * the other mirror copies are only compared by scrub.
 */
export function roleOf(rv: RaidVolume, slot: number, row: number, damage: Map<number, Kind>): 'read' | 'scrub' {
  const geo = rv.geo;
  const g = geo.groups[geo.slotGroup[slot]];
  const mi = geo.slotMember[slot];
  if (g.kind === 'stripe') return 'read';
  if (g.kind === 'parity') return rowMap(g, row).data.includes(mi) ? 'read' : 'scrub';
  const gone = (s: number) => ['deleted', 'truncated', 'zeros'].includes(damage.get(s) ?? '');
  const first = mirrorOrder(g, row).find((m) => !gone(g.slots[m]));
  if (first === mi) return 'read';
  if (first !== undefined && damage.get(g.slots[first]) === 'eio') return 'read';
  return 'scrub';
}

/** Picks bytes of file rows to flip: nonzero in the original (chunk bytes or parity, not padding). */
export function pickFlips(rv: RaidVolume, slot: number, damage: Map<number, Kind>, nRead: number, nScrub: number, rows?: [number, number]): Flip[] {
  const fd = fs.openSync(rv.devices[slot], 'r');
  const out: Flip[] = [];
  const want = { read: nRead, scrub: nScrub };
  const [r0, r1] = rows ?? [0, rv.fileRows];
  try {
    const b = Buffer.alloc(1);
    for (let tries = 0; tries < 20000 && (want.read > 0 || want.scrub > 0); tries++) {
      const row = r0 + Math.floor(Math.random() * (r1 - r0));
      const role = roleOf(rv, slot, row, damage);
      if (want[role] <= 0) continue;
      const pos = devicePos(rv, row, Math.floor(Math.random() * rv.stripSize));
      if (out.some((f) => f.pos === pos)) continue;
      fs.readSync(fd, b, 0, 1, pos);
      if (b[0] === 0) continue;
      out.push({ pos, orig: b[0], role, row });
      want[role]--;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

export function applyFlips(path: string, flips: Flip[]): void {
  const fd = fs.openSync(path, 'r+');
  try {
    for (const f of flips) {
      const x = 1 + (randomBytes(1)[0] % 255);
      fs.writeSync(fd, Buffer.from([f.orig ^ x]), 0, 1, f.pos);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The flips whose byte on disk is still not the original. */
export function unhealed(path: string, flips: Flip[]): Flip[] {
  const fd = fs.openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    return flips.filter((f) => (fs.readSync(fd, b, 0, 1, f.pos), b[0] !== f.orig));
  } finally {
    fs.closeSync(fd);
  }
}

export interface Damage {
  slot: number;
  kind: Kind;
  flips: Flip[];
}

/** Damages a device of an unmounted volume; EIO goes through the fault injector's rules file. */
export function damage(rv: RaidVolume, slot: number, kind: Kind, all: Map<number, Kind>, rules: unknown[]): Damage {
  const path = rv.devices[slot];
  const size = fs.statSync(path).size;
  const d: Damage = { slot, kind, flips: [] };
  switch (kind) {
    case 'deleted':
      fs.rmSync(path);
      break;
    case 'truncated':
      fs.truncateSync(path, Math.floor(size / 2));
      break;
    case 'zeros':
      fs.truncateSync(path, 0);
      fs.truncateSync(path, size);
      break;
    case 'eio':
      // Every read of the row area fails; the superblocks and key header stay readable, so the
      // device is ONLINE and the errors happen at run time.
      rules.push({ path: basename(path), op: 'read', error: 'EIO', from: rv.dataStart });
      break;
    case 'flipped':
      d.flips = pickFlips(rv, slot, all, 6, 2);
      assert.ok(d.flips.some((f) => f.role === 'read'), 'no readable byte to flip');
      applyFlips(path, d.flips);
      break;
  }
  return d;
}

export function expectedState(kind: Kind): string {
  return kind === 'deleted' || kind === 'zeros' ? 'MISSING' : kind === 'truncated' ? 'FAULTED' : 'ONLINE';
}

export function describe(combo: Map<number, Kind>): string {
  return [...combo].map(([s, k]) => `${s}:${SHORT[k]}`).join('+');
}

/** k-subsets of xs. */
export function subsets<T>(xs: T[], k: number): T[][] {
  if (k === 0) return [[]];
  if (xs.length < k) return [];
  const [h, ...t] = xs;
  return [...subsets(t, k - 1).map((s) => [h, ...s]), ...subsets(t, k)];
}

/** Every combination that fails exactly `tolerance` members of every group (the most a layout survives). */
export function maxCombos(geo: Geometry): number[][] {
  let acc: number[][] = [[]];
  for (const g of geo.groups) {
    const choices = subsets(g.slots, g.tolerance);
    acc = acc.flatMap((a) => choices.map((c) => [...a, ...c]));
  }
  return acc;
}

/** Deterministic sample (seeded) of n items, in their original order. */
export function sample<T>(xs: T[], n: number, seed: number): T[] {
  if (n >= xs.length) return xs.slice();
  let a = seed >>> 0 || 1;
  const rnd = () => {
    a ^= a << 13;
    a ^= a >>> 17;
    a ^= a << 5;
    return (a >>> 0) / 2 ** 32;
  };
  const idx = xs.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx
    .slice(0, n)
    .sort((x, y) => x - y)
    .map((i) => xs[i]);
}

export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}
