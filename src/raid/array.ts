// RaidArray: full-stripe, write-once rows over a set of device files.
//
// Rows are immutable once written (the chunk store frees them whole and rewrites them whole), so
// there is never a read-modify-write of parity and no write hole: a crash mid-row leaves a row the
// layer above never committed. Reads get a `verify` callback (the chunk's AEAD tag / keyed hash);
// that lets a degraded or corrupted read try every reconstruction the redundancy allows and keep
// the one that verifies, as ZFS does for RAID-Z, instead of trusting parity blindly like md.

import { randomBytes } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { computePQ, solveGroup } from './gf.ts';
import {
  buildGeometry,
  dataStartFor,
  HEADER_BASE,
  HEADER_BLOB_MAX,
  HEADER_COPY,
  MAX_DEVICES,
  mirrorOrder,
  normalizeLayout,
  roundUp,
  rowMap,
  SB_SIZE,
  type Geometry,
  type GroupGeo,
  type LayoutSpec,
} from './layout.ts';
import { type DeviceIO, errCode, fileOpenDevice, ioError, type OpenDevice, readFull } from './device.ts';
import { encodeSuperblock, pickSuperblock, type PersistedState, type Superblock } from './superblock.ts';

export type DeviceState = 'ONLINE' | 'FAULTED' | 'REBUILDING' | 'SPARE' | 'MISSING';

export interface DeviceStatus {
  slot: number | null;
  path: string;
  state: DeviceState;
  readErrors: number;
  writeErrors: number;
  checksumErrors: number;
  /** done/total: rows of the running rebuild (0/0 when none runs); cursor: last row known rebuilt (persisted). */
  rebuild?: { done: number; total: number; cursor: number };
}

export interface RowRef {
  row: number;
  height: number;
}
export type RowsInUse = () => AsyncIterable<RowRef> | Iterable<RowRef>;
export type Verify = (b: Buffer) => boolean | Promise<boolean>;
/** Called after each rebuilt row; a returned promise is awaited (that is how a caller throttles). */
export type Progress = (done: number, total: number) => unknown;

interface Counters {
  readErrors: number;
  writeErrors: number;
  checksumErrors: number;
}

interface Member extends Counters {
  slot: number;
  path: string;
  io: DeviceIO | null;
  deviceId: Buffer;
  state: Exclude<DeviceState, 'SPARE'>;
  cursor: number; // REBUILDING: last row index rebuilt (rows <= cursor are valid on the device)
  written: Set<number>; // REBUILDING: rows written fresh since rebuild started (valid too)
  progress?: { done: number; total: number };
}

interface Spare extends Counters {
  path: string;
  io: DeviceIO;
  deviceId: Buffer;
}

interface Piece {
  k: number; // data strip index inside its group
  a: number; // byte range [a, b) inside the strip
  b: number;
  outOff: number;
}

interface Candidate {
  erased: Set<number> | null; // parity groups: members assumed wrong
  src: number; // mirror groups: member read from
  bytes: Uint8Array[]; // per piece
}

interface GroupRead {
  g: GroupGeo;
  pieces: Piece[];
  lo: number;
  hi: number;
  bufs: (Buffer | null)[];
  readFailed: Set<number>; // member indices whose read failed in this call
  unusable: Set<number>; // member indices not holding valid data for the row
  cands: Candidate[];
}

const MIN_HEIGHT = 4096;
const MAX_TRIES = 4096;
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);
const noop = () => {};

function hex(b: Buffer): string {
  return b.toString('hex');
}

function persisted(s: Member['state']): PersistedState {
  return s === 'ONLINE' ? 'ONLINE' : s === 'REBUILDING' ? 'REBUILDING' : 'FAULTED';
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.length);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return asBuffer(a).equals(asBuffer(b));
}

async function closeQuietly(io: DeviceIO | null): Promise<void> {
  if (io) await io.close().catch(noop);
}

async function zeroRange(io: DeviceIO, pos: number, len: number): Promise<void> {
  for (let off = 0; off < len; off += ZERO_CHUNK.length) {
    const n = Math.min(ZERO_CHUNK.length, len - off);
    await io.write(n === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n), pos + off);
  }
}

// A verifier that throws (say, a decryption error) has rejected the bytes; it must not abort the
// search for a reconstruction that does verify.
async function verifies(verify: Verify, b: Buffer): Promise<boolean> {
  try {
    return (await verify(b)) === true;
  } catch {
    return false;
  }
}

function* subsets(pool: number[], size: number, start = 0, acc: number[] = []): Generator<number[]> {
  if (acc.length === size) {
    yield acc.slice();
    return;
  }
  for (let i = start; i < pool.length; i++) {
    acc.push(pool[i]);
    yield* subsets(pool, size, i + 1, acc);
    acc.pop();
  }
}

// Candidate combinations across groups, most plausible first: nothing wrong beyond what is known,
// then one group wrong, then the rest of the product (several groups silently corrupt at once).
function* combos(sizes: number[]): Generator<number[]> {
  const t = sizes.length;
  const zero = new Array<number>(t).fill(0);
  yield zero.slice();
  for (let i = 0; i < t; i++)
    for (let c = 1; c < sizes[i]; c++) {
      const v = zero.slice();
      v[i] = c;
      yield v;
    }
  const v = zero.slice();
  for (;;) {
    let i = 0;
    while (i < t && ++v[i] === sizes[i]) v[i++] = 0;
    if (i === t) return;
    if (v.filter((x) => x !== 0).length >= 2) yield v.slice();
  }
}

export interface CreateOptions {
  volumeId: Buffer;
  layout: LayoutSpec;
  devices: string[];
  spares?: string[];
  deviceSize: number;
  force?: boolean;
  openDevice?: OpenDevice;
  log?: (msg: string) => void;
  /** Rows between rebuild-cursor checkpoints (default 64). */
  rebuildCheckpointRows?: number;
}

export interface OpenOptions {
  volumeId?: Buffer;
  devices: string[];
  spares?: string[];
  openDevice?: OpenDevice;
  log?: (msg: string) => void;
  rebuildCheckpointRows?: number;
}

interface Probe {
  path: string;
  io: DeviceIO | null;
  sb: Superblock | null;
  size: number;
  err?: unknown;
}

async function probe(openDevice: OpenDevice, path: string): Promise<Probe> {
  let io: DeviceIO;
  try {
    io = await openDevice(path, false);
  } catch (err) {
    return { path, io: null, sb: null, size: 0, err };
  }
  try {
    const head = Buffer.alloc(2 * SB_SIZE);
    const n = await readFull(io, head, 0);
    const size = await io.size();
    return { path, io, sb: n >= SB_SIZE ? pickSuperblock(head.subarray(0, n)) : null, size };
  } catch (err) {
    return { path, io, sb: null, size: 0, err };
  }
}

export class RaidArray {
  readonly layout: Required<LayoutSpec>;
  readonly rows: number;
  readonly rowDataBytes: number;
  /** Parity and short-strip buffers by strip height, for writeRow. */
  private readonly scratch = new Map<number, Buffer[]>();
  readonly volumeId: Buffer;
  /** Called after a device has been faulted (and a spare, if any, put in its slot). */
  onFault?: (slot: number) => void;
  /** Put a spare into a slot as soon as its device faults. */
  autoSpare = true;

  private readonly geo: Geometry;
  private readonly dataStart: number;
  private readonly members: Member[];
  private spares: Spare[];
  private generation: number;
  private readonly openDevice: OpenDevice;
  private readonly log: (msg: string) => void;
  private readonly checkpointRows: number;
  private sbChain: Promise<void> = Promise.resolve();
  private persistDirty = false;
  private readonly rowLocks = new Map<number, Promise<void>>();
  private rebuildRunning = false;
  private closed = false;

  private constructor(init: {
    volumeId: Buffer;
    geo: Geometry;
    rows: number;
    dataStart: number;
    members: Member[];
    spares: Spare[];
    generation: number;
    openDevice: OpenDevice;
    log: (msg: string) => void;
    checkpointRows?: number;
  }) {
    this.volumeId = init.volumeId;
    this.geo = init.geo;
    this.layout = init.geo.layout;
    this.rows = init.rows;
    this.rowDataBytes = init.geo.dataStrips * this.layout.stripSize;
    this.dataStart = init.dataStart;
    this.members = init.members;
    this.spares = init.spares;
    this.generation = init.generation;
    this.openDevice = init.openDevice;
    this.log = init.log;
    this.checkpointRows = Math.max(1, init.checkpointRows ?? 64);
  }

  // ---------------------------------------------------------------- create / open

  static async create(o: CreateOptions): Promise<RaidArray> {
    const layout = normalizeLayout(o.layout);
    const geo = buildGeometry(layout);
    if (!Buffer.isBuffer(o.volumeId) || o.volumeId.length !== 16) throw ioError('EINVAL', 'volumeId must be a 16-byte Buffer');
    if (o.devices.length !== layout.devices)
      throw ioError('EINVAL', `layout has ${layout.devices} devices but ${o.devices.length} paths were given`);
    const spares = o.spares ?? [];
    const all = [...o.devices, ...spares];
    if (all.length > MAX_DEVICES) throw ioError('EINVAL', `at most ${MAX_DEVICES} devices including spares`);
    const seen = new Set<string>();
    for (const p of all) {
      const r = resolvePath(p);
      if (seen.has(r)) throw ioError('EINVAL', `${p} is listed twice`);
      seen.add(r);
    }
    const stripSize = layout.stripSize;
    const dataStart = dataStartFor(stripSize);
    const rows = Math.floor((o.deviceSize - dataStart) / stripSize);
    if (!Number.isFinite(rows) || rows < 1)
      throw ioError('EINVAL', `deviceSize ${o.deviceSize} is too small: need at least ${dataStart + stripSize} bytes (17 MiB of metadata plus one strip)`);
    const minSize = dataStart + rows * stripSize;
    const openDevice = o.openDevice ?? fileOpenDevice;
    const log = o.log ?? noop;

    // Inspect everything before touching anything, so a refusal leaves every file as it was.
    const opened: { path: string; io: DeviceIO; hadSb: boolean; size: number }[] = [];
    try {
      for (const path of all) {
        const io = await openDevice(path, true);
        const entry = { path, io, hadSb: false, size: await io.size() };
        opened.push(entry);
        if (entry.size >= SB_SIZE) {
          const head = Buffer.alloc(2 * SB_SIZE);
          const n = await readFull(io, head, 0);
          const sb = pickSuperblock(head.subarray(0, n));
          if (sb) {
            entry.hadSb = true;
            if (!sb.volumeId.equals(o.volumeId) && !o.force)
              throw ioError('EEXIST', `${path} belongs to another hoardfs volume; use --force to overwrite`);
          }
        }
      }
      for (const d of opened) {
        if (d.size < o.deviceSize) await d.io.truncate(o.deviceSize);
        const now = await d.io.size();
        if (now < minSize) throw ioError('ENOSPC', `${d.path} is too small: ${now} bytes, need ${minSize}`);
        // A reused device must not leak the old volume's key header or superblocks.
        if (d.hadSb) await zeroRange(d.io, 0, HEADER_BASE + 2 * HEADER_COPY);
      }
    } catch (e) {
      for (const d of opened) await closeQuietly(d.io);
      throw e;
    }
    const members: Member[] = opened.slice(0, layout.devices).map((d, slot) => ({
      slot,
      path: d.path,
      io: d.io,
      deviceId: randomBytes(16),
      state: 'ONLINE',
      cursor: -1,
      written: new Set(),
      readErrors: 0,
      writeErrors: 0,
      checksumErrors: 0,
    }));
    const spareDevs: Spare[] = opened.slice(layout.devices).map((d) => ({
      path: d.path,
      io: d.io,
      deviceId: randomBytes(16),
      readErrors: 0,
      writeErrors: 0,
      checksumErrors: 0,
    }));
    const arr = new RaidArray({
      volumeId: Buffer.from(o.volumeId),
      geo,
      rows,
      dataStart,
      members,
      spares: spareDevs,
      generation: 0,
      openDevice,
      log,
      checkpointRows: o.rebuildCheckpointRows,
    });
    try {
      await arr.commit();
    } catch (e) {
      await arr.close();
      throw e;
    }
    if (layout.level === 0 && layout.devices === 1) log('raid: RAID 0 on a single device has no benefit; 2 or more recommended');
    return arr;
  }

  static async open(o: OpenOptions): Promise<RaidArray> {
    const openDevice = o.openDevice ?? fileOpenDevice;
    const log = o.log ?? noop;
    const paths: string[] = [];
    const seen = new Set<string>();
    for (const p of [...o.devices, ...(o.spares ?? [])]) {
      const r = resolvePath(p);
      if (!seen.has(r)) {
        seen.add(r);
        paths.push(p);
      }
    }
    const probes = await Promise.all(paths.map((p) => probe(openDevice, p)));
    const closeAll = async () => {
      for (const p of probes) await closeQuietly(p.io);
    };

    // Which volume: the one asked for, else the one most devices belong to (ties: newest).
    let volumeId = o.volumeId;
    if (!volumeId) {
      const votes = new Map<string, { n: number; gen: number; id: Buffer }>();
      for (const p of probes)
        if (p.sb) {
          const k = hex(p.sb.volumeId);
          const v = votes.get(k) ?? { n: 0, gen: -1, id: p.sb.volumeId };
          v.n++;
          v.gen = Math.max(v.gen, p.sb.generation);
          votes.set(k, v);
        }
      const best = [...votes.values()].sort((a, b) => b.n - a.n || b.gen - a.gen)[0];
      volumeId = best?.id;
    }
    const mine = probes.filter((p) => p.sb && volumeId && p.sb.volumeId.equals(volumeId));
    if (!volumeId || mine.length === 0) {
      await closeAll();
      throw ioError('ENODEV', `no device of ${o.volumeId ? `hoardfs volume ${hex(o.volumeId)}` : 'any hoardfs volume'} found among ${paths.join(', ')}`);
    }
    // The highest generation is the truth: a device that missed later updates (it was faulted
    // or absent) carries an older table and is judged by the newer one.
    const auth = mine.reduce((a, b) => (b.sb!.generation > a.sb!.generation ? b : a)).sb!;
    let geo: Geometry;
    try {
      geo = buildGeometry(normalizeLayout(auth.layout));
    } catch (e) {
      await closeAll();
      throw e;
    }
    const stripSize = geo.layout.stripSize;
    const minSize = auth.dataStart + auth.rows * stripSize;
    const byId = new Map<string, Probe>();
    for (const p of mine) if (!byId.has(hex(p.sb!.deviceId))) byId.set(hex(p.sb!.deviceId), p);
    const claimed = new Set<Probe>();
    let dirty = false;
    const members: Member[] = [];
    auth.members.forEach((e, slot) => {
      const p = byId.get(hex(e.deviceId));
      const m: Member = {
        slot,
        path: p?.path ?? '',
        io: null,
        deviceId: e.deviceId,
        state: 'MISSING',
        cursor: e.cursor,
        written: new Set(),
        readErrors: 0,
        writeErrors: 0,
        checksumErrors: 0,
      };
      members.push(m);
      if (!p) {
        if (e.state !== 'FAULTED') dirty = true;
        return;
      }
      claimed.add(p);
      if (e.state === 'FAULTED') {
        m.state = 'FAULTED';
        log(`raid: ${p.path} (slot ${slot}) is stale (marked FAULTED at a later generation); it needs a rebuild`);
      } else if (p.size < minSize) {
        m.state = 'FAULTED';
        dirty = true;
        log(`raid: ${p.path} (slot ${slot}) is truncated (${p.size} < ${minSize} bytes); FAULTED`);
      } else {
        m.state = e.state;
        m.io = p.io;
      }
    });
    const spares: Spare[] = [];
    for (const id of auth.spares) {
      const p = byId.get(hex(id));
      if (p && p.io && !claimed.has(p)) {
        claimed.add(p);
        spares.push({ path: p.path, io: p.io, deviceId: id, readErrors: 0, writeErrors: 0, checksumErrors: 0 });
      } else {
        dirty = true;
        log(`raid: spare ${hex(id).slice(0, 8)} not found`);
      }
    }
    // Name the slots whose device was not recognised: the path at the same position in the
    // list is the best guess (callers list devices in slot order), else any unclaimed path.
    const unclaimed = o.devices.filter((path) => ![...claimed].some((p) => p.path === path));
    for (const m of members)
      if (!m.path) {
        const guess = o.devices[m.slot];
        const i = guess !== undefined ? unclaimed.indexOf(guess) : -1;
        m.path = i >= 0 ? unclaimed.splice(i, 1)[0] : (unclaimed.shift() ?? `<missing ${hex(m.deviceId).slice(0, 8)}>`);
      }
    for (const p of probes) {
      const keep = members.some((m) => m.io === p.io) || spares.some((s) => s.io === p.io);
      if (!keep) {
        await closeQuietly(p.io);
        if (p.err && !p.io) log(`raid: cannot open ${p.path}: ${(p.err as Error).message}`);
        else if (!p.sb) log(`raid: ${p.path} carries no hoardfs superblock`);
        else if (!p.sb.volumeId.equals(volumeId)) log(`raid: ${p.path} belongs to another hoardfs volume; ignored`);
        else if (!claimed.has(p)) log(`raid: ${p.path} is no longer a member of this volume; ignored`);
      }
    }
    const arr = new RaidArray({
      volumeId: Buffer.from(volumeId),
      geo,
      rows: auth.rows,
      dataStart: auth.dataStart,
      members,
      spares,
      generation: auth.generation,
      openDevice,
      log,
      checkpointRows: o.rebuildCheckpointRows,
    });
    arr.persistDirty = dirty;
    if (arr.degraded) {
      const bad = members.filter((m) => m.state !== 'ONLINE').map((m) => `${m.path} (slot ${m.slot}) ${m.state}`);
      log(`raid: array is degraded: ${bad.join(', ')}${arr.canWrite ? '' : '; more devices lost than the layout tolerates: read-only, affected rows fail with EIO'}`);
    }
    return arr;
  }

  // ---------------------------------------------------------------- state

  get degraded(): boolean {
    return this.members.some((m) => m.state !== 'ONLINE');
  }

  get canWrite(): boolean {
    return !this.closed && this.geo.groups.every((g) => this.down(g) <= g.tolerance);
  }

  get rebuildPending(): boolean {
    return this.members.some((m) => m.state === 'REBUILDING');
  }

  status(): DeviceStatus[] {
    const out: DeviceStatus[] = this.members.map((m) => ({
      slot: m.slot,
      path: m.path,
      state: m.state,
      readErrors: m.readErrors,
      writeErrors: m.writeErrors,
      checksumErrors: m.checksumErrors,
      ...(m.state === 'REBUILDING' ? { rebuild: { ...(m.progress ?? { done: 0, total: 0 }), cursor: m.cursor } } : {}),
    }));
    for (const s of this.spares)
      out.push({ slot: null, path: s.path, state: 'SPARE', readErrors: s.readErrors, writeErrors: s.writeErrors, checksumErrors: s.checksumErrors });
    return out;
  }

  errorCounts(): Counters {
    const c: Counters = { readErrors: 0, writeErrors: 0, checksumErrors: 0 };
    for (const m of [...this.members, ...this.spares]) {
      c.readErrors += m.readErrors;
      c.writeErrors += m.writeErrors;
      c.checksumErrors += m.checksumErrors;
    }
    return c;
  }

  clearErrorCounts(): void {
    for (const m of [...this.members, ...this.spares]) m.readErrors = m.writeErrors = m.checksumErrors = 0;
  }

  private down(g: GroupGeo): number {
    return g.slots.filter((s) => !this.members[s].io || this.members[s].state === 'FAULTED' || this.members[s].state === 'MISSING').length;
  }

  private usable(m: Member, row: number): boolean {
    if (!m.io) return false;
    if (m.state === 'ONLINE') return true;
    return m.state === 'REBUILDING' && (row <= m.cursor || m.written.has(row));
  }

  private writable(m: Member): boolean {
    return m.io !== null && (m.state === 'ONLINE' || m.state === 'REBUILDING');
  }

  private pos(row: number): number {
    return this.dataStart + row * this.layout.stripSize;
  }

  private assertOpen(): void {
    if (this.closed) throw ioError('EBADF', 'raid array is closed');
  }

  private validateRow(row: number, height?: number): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.rows) throw new RangeError(`row ${row} out of range [0, ${this.rows})`);
    if (height !== undefined && (!Number.isInteger(height) || height < MIN_HEIGHT || height % MIN_HEIGHT !== 0 || height > this.layout.stripSize))
      throw new RangeError(`bad row height ${height}`);
  }

  private async withRowLock<T>(row: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.rowLocks.get(row) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    this.rowLocks.set(row, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.rowLocks.get(row) === chained) this.rowLocks.delete(row);
    }
  }

  // ---------------------------------------------------------------- superblocks and faults

  private async writeSuperblock(io: DeviceIO, sb: Superblock): Promise<void> {
    const b = encodeSuperblock(sb);
    // Copy 0, sync, copy 1, sync: at every instant at least one copy is intact.
    await io.write(b, 0);
    await io.sync();
    await io.write(b, SB_SIZE);
    await io.sync();
  }

  /** Bumps the generation and rewrites the superblock on every reachable device. */
  private commit(): Promise<void> {
    const run = async (): Promise<number[]> => {
      const newlyFaulted: number[] = [];
      for (;;) {
        this.generation++;
        const base = {
          generation: this.generation,
          volumeId: this.volumeId,
          layout: this.layout,
          rows: this.rows,
          dataStart: this.dataStart,
          members: this.members.map((m) => ({ deviceId: m.deviceId, state: persisted(m.state), cursor: m.state === 'REBUILDING' ? m.cursor : -1 })),
          spares: this.spares.map((s) => s.deviceId),
        };
        const targets: { io: DeviceIO; id: Buffer; slot: number; fail: (e: unknown) => void }[] = [];
        for (const m of this.members)
          if (this.writable(m))
            targets.push({
              io: m.io!,
              id: m.deviceId,
              slot: m.slot,
              fail: (e) => {
                m.writeErrors++;
                this.markFaulted(m, `superblock write failed: ${(e as Error).message}`);
                newlyFaulted.push(m.slot);
              },
            });
        for (const s of this.spares)
          targets.push({
            io: s.io,
            id: s.deviceId,
            slot: -1,
            fail: (e) => {
              this.spares = this.spares.filter((x) => x !== s);
              void closeQuietly(s.io);
              this.log(`raid: spare ${s.path} dropped: superblock write failed: ${(e as Error).message}`);
            },
          });
        if (targets.length === 0) throw ioError('EIO', 'no device left to record the array state on');
        const res = await Promise.allSettled(targets.map((t) => this.writeSuperblock(t.io, { ...base, deviceId: t.id, slot: t.slot })));
        let failed = 0;
        for (let i = 0; i < res.length; i++) {
          const r = res[i];
          if (r.status === 'fulfilled') continue;
          if (errCode(r.reason) === 'ENOSPC') throw ioError('ENOSPC', 'no space to write superblock', r.reason);
          failed++;
          targets[i].fail(r.reason);
        }
        if (failed === 0) break;
        if (failed === targets.length) throw ioError('EIO', 'superblock could not be written to any device');
        // Record the devices that just failed on the ones that did not.
      }
      this.persistDirty = false;
      return newlyFaulted;
    };
    const written = this.sbChain.then(run);
    this.sbChain = written.then(noop, noop);
    // Post-fault actions commit again, so they must run outside the chain link they came from.
    return written.then(async (faulted) => {
      for (const s of faulted) await this.afterFault(s);
    });
  }

  private markFaulted(m: Member, reason: string): void {
    if (m.state === 'FAULTED' || m.state === 'MISSING') return;
    m.state = 'FAULTED';
    m.written.clear();
    m.progress = undefined;
    const io = m.io;
    m.io = null;
    void closeQuietly(io);
    this.log(`raid: ${m.path} (slot ${m.slot}) FAULTED: ${reason}`);
  }

  private async afterFault(slot: number): Promise<void> {
    if (this.autoSpare && this.spares.length > 0) {
      try {
        await this.activateSpare(slot);
      } catch (e) {
        this.log(`raid: could not activate a spare for slot ${slot}: ${(e as Error).message}`);
      }
    }
    this.onFault?.(slot);
  }

  async faultDevice(slot: number, reason: string): Promise<void> {
    this.assertOpen();
    const m = this.members[slot];
    if (!m) throw new RangeError(`no slot ${slot}`);
    if (m.state === 'FAULTED' || m.state === 'MISSING') return;
    this.markFaulted(m, reason);
    await this.commit();
    await this.afterFault(slot);
  }

  /**
   * A device failed a write. Fault it if its group can do without it; otherwise the write as a
   * whole fails (the row is not committed above us, so nothing is lost by leaving it).
   */
  private async handleWriteFailures(fails: { m: Member; err: unknown }[]): Promise<void> {
    if (fails.length === 0) return;
    let enospc: unknown = null;
    let fatal: unknown = null;
    const toFault: Member[] = [];
    for (const { m, err } of fails) {
      if (errCode(err) === 'ENOSPC') {
        enospc ??= err;
        continue;
      }
      if (m.state === 'FAULTED' || m.state === 'MISSING') continue;
      m.writeErrors++;
      const g = this.geo.groups[this.geo.slotGroup[m.slot]];
      const sameGroup = toFault.filter((x) => this.geo.slotGroup[x.slot] === g.index).length;
      if (this.down(g) + sameGroup + 1 <= g.tolerance) toFault.push(m);
      else fatal ??= err;
    }
    for (const m of toFault) this.markFaulted(m, `write error: ${(fails.find((f) => f.m === m)!.err as Error).message}`);
    if (toFault.length) {
      await this.commit();
      for (const m of toFault) await this.afterFault(m.slot);
    }
    if (fatal) throw ioError('EIO', `write failed on a device its group cannot do without: ${(fatal as Error).message}`, fatal);
    if (enospc) throw ioError('ENOSPC', `no space left on a device: ${(enospc as Error).message}`, enospc);
  }

  private async ensurePersisted(): Promise<void> {
    // A device that is absent while we write would come back with stale rows: record it as
    // FAULTED everywhere before the first write, so its older superblock loses at the next open.
    if (this.persistDirty) await this.commit();
  }

  // ---------------------------------------------------------------- writes

  heightFor(length: number): number {
    return Math.max(MIN_HEIGHT, roundUp(Math.ceil(length / this.geo.dataStrips), MIN_HEIGHT));
  }

  async writeRow(row: number, data: Buffer): Promise<number> {
    this.assertOpen();
    this.validateRow(row);
    if (data.length > this.rowDataBytes) throw new RangeError(`row data ${data.length} exceeds rowDataBytes ${this.rowDataBytes}`);
    if (!this.canWrite) throw ioError('EIO', 'array has lost more devices than its layout tolerates; writes refused');
    await this.ensurePersisted();
    const h = this.heightFor(data.length);
    // Unaligned input would push computePQ onto its byte-at-a-time path.
    const src = data.byteOffset & 3 ? Buffer.from(data) : data;
    // Parity and the strip a short row ends in come from scratch buffers used again after the
    // writes: a fresh pair per row was most of what pushed V8 into its GCs while writing.
    const scratch: Buffer[] = [];
    const take = () => {
      const b = this.scratch.get(h)?.pop() ?? Buffer.allocUnsafe(h);
      scratch.push(b);
      return b;
    };
    const strips: Buffer[] = [];
    for (let j = 0; j < this.geo.dataStrips; j++) {
      const s = j * h;
      if (s + h <= src.length) strips.push(src.subarray(s, s + h));
      else if (s >= src.length) strips.push(h <= ZERO_CHUNK.length ? ZERO_CHUNK.subarray(0, h) : Buffer.alloc(h));
      else {
        const b = take();
        src.copy(b, 0, s);
        b.fill(0, src.length - s);
        strips.push(b);
      }
    }
    const writes: { m: Member; buf: Buffer }[] = [];
    for (const g of this.geo.groups) {
      const ds = strips.slice(g.firstData, g.firstData + g.dataCount);
      const map = rowMap(g, row);
      const bufs: Buffer[] = new Array(g.slots.length);
      if (g.kind === 'mirror') bufs.fill(ds[0]);
      else map.data.forEach((mi, k) => (bufs[mi] = ds[k]));
      if (g.kind === 'parity') {
        const p = take();
        const q = g.nparity === 2 ? take() : null;
        computePQ(ds, p, q);
        bufs[map.p] = p;
        if (q) bufs[map.q] = q;
      }
      g.slots.forEach((slot, mi) => {
        const m = this.members[slot];
        if (this.writable(m)) writes.push({ m, buf: bufs[mi] });
      });
    }
    try {
      await this.withRowLock(row, async () => {
        const res = await Promise.allSettled(
          writes.map((w) => (w.m.io ? w.m.io.write(w.buf, this.pos(row)) : Promise.reject(ioError('EIO', 'device closed')))),
        );
        const fails: { m: Member; err: unknown }[] = [];
        res.forEach((r, i) => {
          const m = writes[i].m;
          if (r.status === 'rejected') fails.push({ m, err: r.reason });
          else if (m.state === 'REBUILDING') m.written.add(row);
        });
        await this.handleWriteFailures(fails);
      });
    } finally {
      // Every device write has settled: nothing holds the scratch buffers any more.
      let free = this.scratch.get(h);
      if (!free) this.scratch.set(h, (free = []));
      for (const b of scratch) if (free.length < 32) free.push(b);
    }
    return h;
  }

  async sync(): Promise<void> {
    this.assertOpen();
    const targets = this.members.filter((m) => this.writable(m));
    const res = await Promise.allSettled(targets.map((m) => m.io!.sync()));
    await this.handleWriteFailures(res.flatMap((r, i) => (r.status === 'rejected' ? [{ m: targets[i], err: r.reason }] : [])));
    await Promise.allSettled(this.spares.map((s) => s.io.sync()));
  }

  // ---------------------------------------------------------------- reads

  /** Reads len bytes of a member's row; into (exactly len long) saves a buffer and a copy. */
  private async readMember(m: Member, row: number, off: number, len: number, into?: Buffer): Promise<Buffer> {
    const io = m.io;
    if (!io) throw ioError('EIO', `${m.path} is not open`);
    const buf = into ?? Buffer.allocUnsafe(len);
    let n: number;
    try {
      n = await readFull(io, buf, this.pos(row) + off);
    } catch (e) {
      m.readErrors++;
      throw e;
    }
    if (n < len) {
      m.readErrors++;
      throw ioError('EIO', `short read from ${m.path}`);
    }
    return buf;
  }

  /** Rewrites a region with bytes known to be right; a device that cannot take even that is faulted. */
  private async heal(m: Member, row: number, off: number, bytes: Uint8Array): Promise<void> {
    const io = m.io;
    if (!io) return;
    try {
      await io.write(asBuffer(bytes), this.pos(row) + off);
    } catch (e) {
      await this.handleWriteFailures([{ m, err: e }]).catch((err) => this.log(`raid: self-heal of ${m.path} failed: ${(err as Error).message}`));
    }
  }

  /**
   * Reads [offset, offset + length) of a row's data. into (exactly length long) is where the
   * bytes go instead of a new buffer: every byte of it is written before this resolves.
   */
  async readRange(row: number, height: number, offset: number, length: number, verify?: Verify, into?: Buffer): Promise<Buffer> {
    this.assertOpen();
    this.validateRow(row, height);
    const h = height;
    const span = this.geo.dataStrips * h;
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > span)
      throw new RangeError(`range [${offset}, +${length}) outside the row's ${span} data bytes`);
    if (into && into.length !== length) throw new RangeError(`readRange: into is ${into.length} bytes, not ${length}`);
    const out = into ?? Buffer.alloc(length);
    if (length === 0) return out;

    const byGroup = new Map<number, Piece[]>();
    for (let j = Math.floor(offset / h); j <= Math.floor((offset + length - 1) / h); j++) {
      const a = Math.max(offset, j * h) - j * h;
      const b = Math.min(offset + length, (j + 1) * h) - j * h;
      const gi = this.groupOfData(j);
      const g = this.geo.groups[gi];
      const list = byGroup.get(gi) ?? [];
      list.push({ k: j - g.firstData, a, b, outOff: j * h + a - offset });
      byGroup.set(gi, list);
    }

    // Fast path: each piece from the one device that holds it.
    const failed = new Set<number>(); // slots whose read failed in this call
    let fastOk = true;
    await Promise.all(
      [...byGroup].flatMap(([gi, pieces]) => {
        const g = this.geo.groups[gi];
        const map = rowMap(g, row);
        return pieces.map(async (pc) => {
          const mi = g.kind === 'mirror' ? mirrorOrder(g, row).find((c) => this.usable(this.members[g.slots[c]], row)) : map.data[pc.k];
          const m = mi === undefined ? undefined : this.members[g.slots[mi]];
          if (!m || !this.usable(m, row)) {
            fastOk = false;
            return;
          }
          try {
            await this.readMember(m, row, pc.a, pc.b - pc.a, out.subarray(pc.outOff, pc.outOff + pc.b - pc.a));
          } catch {
            failed.add(m.slot);
            fastOk = false;
          }
        });
      }),
    );
    if (fastOk && (!verify || (await verifies(verify, out)))) return out;
    return this.reconstructRead(row, h, byGroup, failed, out, verify);
  }

  private groupOfData(j: number): number {
    const gs = this.geo.groups;
    for (let i = gs.length - 1; i >= 0; i--) if (j >= gs[i].firstData) return i;
    return 0;
  }

  private async reconstructRead(row: number, h: number, byGroup: Map<number, Piece[]>, failed: Set<number>, out: Buffer, verify?: Verify): Promise<Buffer> {
    const ctxs: GroupRead[] = [];
    for (const [gi, pieces] of byGroup) {
      const g = this.geo.groups[gi];
      // Parity is bytewise, so only the touched byte range of every member is needed.
      const lo = Math.floor(Math.min(...pieces.map((p) => p.a)) / 4) * 4;
      const hi = Math.min(h, roundUp(Math.max(...pieces.map((p) => p.b)), 4));
      const ctx: GroupRead = { g, pieces, lo, hi, bufs: new Array(g.slots.length).fill(null), readFailed: new Set(), unusable: new Set(), cands: [] };
      const need = g.kind === 'stripe' ? new Set(pieces.map((p) => p.k)) : null;
      await Promise.all(
        g.slots.map(async (slot, mi) => {
          if (need && !need.has(mi)) return;
          const m = this.members[slot];
          if (!this.usable(m, row)) return void ctx.unusable.add(mi);
          if (failed.has(slot)) return void ctx.readFailed.add(mi);
          try {
            ctx.bufs[mi] = await this.readMember(m, row, lo, hi - lo);
          } catch {
            ctx.readFailed.add(mi);
          }
        }),
      );
      ctx.cands = this.candidates(ctx, row);
      if (ctx.cands.length === 0)
        throw ioError('EIO', `row ${row}: group ${gi} has lost more devices than it tolerates (${[...ctx.unusable, ...ctx.readFailed].length} of ${g.slots.length})`);
      ctxs.push(ctx);
    }
    let tries = 0;
    for (const combo of combos(ctxs.map((c) => c.cands.length))) {
      if (++tries > MAX_TRIES) break;
      ctxs.forEach((ctx, i) => ctx.cands[combo[i]].bytes.forEach((b, pi) => out.set(b, ctx.pieces[pi].outOff)));
      if (verify && !(await verifies(verify, out))) continue;
      await this.healFrom(row, ctxs, combo);
      return out;
    }
    // Nothing verifies. A plain stripe has no other copy: its bytes came straight from the
    // devices that hold them, so those are the suspects; count it where status shows it.
    const suspects = new Set<Member>();
    for (const ctx of ctxs) if (verify && ctx.g.kind === 'stripe') for (const pc of ctx.pieces) suspects.add(this.members[ctx.g.slots[pc.k]]);
    for (const m of suspects) {
      m.checksumErrors++;
      this.log(`raid: checksum error on ${m.path} (slot ${m.slot}) row ${row}; no redundancy to repair it`);
    }
    throw ioError('EIO', `row ${row}: no reconstruction of the requested range passes verification`);
  }

  private candidates(ctx: GroupRead, row: number): Candidate[] {
    const { g, pieces, lo, bufs } = ctx;
    const cut = (b: Uint8Array, pc: Piece) => b.subarray(pc.a - lo, pc.b - lo);
    const out: Candidate[] = [];
    const add = (c: Candidate) => {
      if (!out.some((o) => o.bytes.every((b, i) => sameBytes(b, c.bytes[i])))) out.push(c);
    };
    if (g.kind === 'stripe') {
      if (pieces.every((pc) => bufs[pc.k])) add({ erased: null, src: -1, bytes: pieces.map((pc) => cut(bufs[pc.k]!, pc)) });
      return out;
    }
    if (g.kind === 'mirror') {
      for (const mi of mirrorOrder(g, row)) {
        const b = bufs[mi];
        if (b) add({ erased: null, src: mi, bytes: pieces.map((pc) => cut(b, pc)) });
      }
      return out;
    }
    const map = rowMap(g, row);
    const known = new Set([...ctx.unusable, ...ctx.readFailed]);
    if (known.size > g.nparity) return out;
    const touched = new Set(pieces.map((pc) => map.data[pc.k]));
    const hyps: Set<number>[] = [known];
    const pool = g.slots.map((_, i) => i).filter((i) => !known.has(i));
    // Each extra member assumed silently wrong; only hypotheses that change a touched strip
    // can change the answer.
    for (let size = 1; size <= g.nparity - known.size; size++)
      for (const s of subsets(pool, size)) {
        const e = new Set([...known, ...s]);
        if ([...e].some((x) => touched.has(x))) hyps.push(e);
      }
    for (const e of hyps) {
      const res = solveGroup(
        map.data.map((mi) => (e.has(mi) ? null : bufs[mi])),
        !e.has(map.p) ? bufs[map.p] : null,
        map.q >= 0 && !e.has(map.q) ? bufs[map.q] : null,
        ctx.hi - lo,
        false,
        false,
      );
      if (res) add({ erased: e, src: -1, bytes: pieces.map((pc) => cut(res.data[pc.k], pc)) });
    }
    return out;
  }

  // The verified answer says what each touched strip should hold: rewrite devices that held
  // something else (silent corruption: a checksum error) or could not be read (md-style rewrite
  // to let the drive remap the sector). Same bytes as a correct device holds, so no write hole.
  private async healFrom(row: number, ctxs: GroupRead[], combo: number[]): Promise<void> {
    const corrupted = new Set<Member>();
    const work: Promise<void>[] = [];
    ctxs.forEach((ctx, i) => {
      const cand = ctx.cands[combo[i]];
      const { g, pieces, lo, bufs } = ctx;
      const map = rowMap(g, row);
      const consider = (mi: number, pi: number) => {
        if (ctx.unusable.has(mi)) return;
        const pc = pieces[pi];
        const m = this.members[g.slots[mi]];
        const want = cand.bytes[pi];
        if (ctx.readFailed.has(mi)) work.push(this.heal(m, row, pc.a, want));
        else if (bufs[mi] && !sameBytes(bufs[mi]!.subarray(pc.a - lo, pc.b - lo), want)) {
          corrupted.add(m);
          work.push(this.heal(m, row, pc.a, want));
        }
      };
      pieces.forEach((pc, pi) => {
        if (g.kind === 'mirror') g.slots.forEach((_, mi) => consider(mi, pi));
        else consider(g.kind === 'stripe' ? pc.k : map.data[pc.k], pi);
      });
    });
    for (const m of corrupted) {
      m.checksumErrors++;
      this.log(`raid: checksum error on ${m.path} (slot ${m.slot}) row ${row}; repaired`);
    }
    await Promise.all(work);
  }

  // ---------------------------------------------------------------- scrub

  async checkRow(row: number, height: number, repair: boolean): Promise<{ mismatches: number; repaired: number }> {
    this.assertOpen();
    this.validateRow(row, height);
    const h = height;
    let mismatches = 0;
    let repaired = 0;
    const fix = async (m: Member, buf: Uint8Array, corrupt: boolean) => {
      mismatches++;
      if (corrupt) m.checksumErrors++;
      if (!repair) return;
      const before = m.writeErrors;
      await this.heal(m, row, 0, buf);
      if (m.writeErrors === before) repaired++;
    };
    for (const g of this.geo.groups) {
      if (g.kind === 'stripe') continue;
      const bufs: (Buffer | null)[] = new Array(g.slots.length).fill(null);
      const failedRead = new Set<number>();
      await Promise.all(
        g.slots.map(async (slot, mi) => {
          const m = this.members[slot];
          if (!this.usable(m, row)) return;
          try {
            bufs[mi] = await this.readMember(m, row, 0, h);
          } catch {
            failedRead.add(mi);
          }
        }),
      );
      if (g.kind === 'mirror') {
        // The copy readRange prefers is the one the caller's verification went through.
        const ref = mirrorOrder(g, row).find((mi) => bufs[mi]);
        if (ref === undefined) continue;
        for (let mi = 0; mi < g.slots.length; mi++) {
          if (mi === ref) continue;
          const m = this.members[g.slots[mi]];
          if (failedRead.has(mi)) await fix(m, bufs[ref]!, false);
          else if (bufs[mi] && !bufs[mi]!.equals(bufs[ref]!)) await fix(m, bufs[ref]!, true);
        }
        continue;
      }
      const map = rowMap(g, row);
      if (map.data.some((mi) => !bufs[mi])) continue; // degraded: data is readRange's business
      const p = Buffer.allocUnsafe(h);
      const q = g.nparity === 2 ? Buffer.allocUnsafe(h) : null;
      computePQ(map.data.map((mi) => bufs[mi]!), p, q);
      for (const [mi, want] of [[map.p, p], [map.q, q]] as [number, Buffer | null][]) {
        if (mi < 0 || !want) continue;
        const m = this.members[g.slots[mi]];
        if (failedRead.has(mi)) await fix(m, want, false);
        else if (bufs[mi] && !bufs[mi]!.equals(want)) await fix(m, want, true);
      }
    }
    return { mismatches, repaired };
  }

  // ---------------------------------------------------------------- rebuild, replace, spares

  private canRebuildInto(slot: number): boolean {
    const g = this.geo.groups[this.geo.slotGroup[slot]];
    const othersDown = g.slots.filter((s) => s !== slot && this.members[s].state !== 'ONLINE').length;
    return g.tolerance > 0 && othersDown + 1 <= g.tolerance;
  }

  private async copyHeaderTo(io: DeviceIO): Promise<void> {
    const src = this.members.find((m) => m.state === 'ONLINE' && m.io && m.io !== io);
    if (!src) return;
    const buf = Buffer.allocUnsafe(HEADER_COPY);
    for (let c = 0; c < 2; c++) {
      const at = HEADER_BASE + c * HEADER_COPY;
      const n = await readFull(src.io!, buf, at);
      buf.fill(0, n);
      await io.write(buf, at);
    }
  }

  private async adopt(m: Member, io: DeviceIO, path: string, deviceId: Buffer): Promise<void> {
    m.io = io;
    m.path = path;
    m.deviceId = deviceId;
    m.state = 'REBUILDING';
    m.cursor = -1;
    m.written.clear();
    m.progress = undefined;
    m.readErrors = m.writeErrors = m.checksumErrors = 0;
    await this.commit();
  }

  /** Puts the first spare into a FAULTED/MISSING slot as REBUILDING; run resumeRebuild next. */
  async activateSpare(slot: number): Promise<boolean> {
    this.assertOpen();
    const m = this.members[slot];
    if (!m) throw new RangeError(`no slot ${slot}`);
    if (m.state !== 'FAULTED' && m.state !== 'MISSING') return false;
    if (!this.canRebuildInto(slot)) return false;
    const sp = this.spares.shift();
    if (!sp) return false;
    try {
      await this.copyHeaderTo(sp.io);
    } catch (e) {
      this.log(`raid: copying the volume header to spare ${sp.path} failed: ${(e as Error).message}`);
    }
    const old = m.path;
    await this.adopt(m, sp.io, sp.path, sp.deviceId);
    this.log(`raid: spare ${sp.path} takes over slot ${slot} (was ${old}); rebuild pending`);
    return true;
  }

  /**
   * opts.onAdopted runs once the new device holds the slot (REBUILDING, superblocks written) and
   * before the rebuild starts: the caller records the new membership there, so that a crash during
   * the rebuild finds the new device at the next open.
   */
  async replace(oldPathOrSlot: string | number, newPath: string, rowsInUse: RowsInUse, progress?: Progress, opts?: { force?: boolean; onAdopted?: () => unknown }): Promise<void> {
    this.assertOpen();
    const slot =
      typeof oldPathOrSlot === 'number'
        ? oldPathOrSlot
        : this.members.findIndex((m) => m.path === oldPathOrSlot || resolvePath(m.path) === resolvePath(oldPathOrSlot));
    const m = this.members[slot];
    if (!m) throw ioError('ENOENT', `${String(oldPathOrSlot)} is not a member of this array`);
    if (this.rebuildRunning) throw ioError('EBUSY', 'a rebuild is already running');
    if (!this.canRebuildInto(slot))
      throw ioError('EIO', `cannot rebuild slot ${slot}: its group has no redundancy left to reconstruct from`);
    const inUse = [...this.members.filter((x) => x !== m).map((x) => x.path), ...this.spares.map((s) => s.path)].map((p) => resolvePath(p));
    if (inUse.includes(resolvePath(newPath))) throw ioError('EINVAL', `${newPath} is already part of this array`);
    await this.ensurePersisted();
    // Validate the new device before giving up the old one: a bad path must not cost a healthy
    // member. Opening the same file twice (re-adding a stale device) is fine.
    const io = await this.openDevice(newPath, true);
    let dropped = false;
    try {
      const size = await io.size();
      if (size >= SB_SIZE && !opts?.force) {
        const head = Buffer.alloc(2 * SB_SIZE);
        const sb = pickSuperblock(head.subarray(0, await readFull(io, head, 0)));
        if (sb && !sb.volumeId.equals(this.volumeId)) throw ioError('EEXIST', `${newPath} belongs to another hoardfs volume; use --force to overwrite`);
      }
      const need = this.pos(this.rows);
      if (size < need) await io.truncate(need);
      if ((await io.size()) < need) throw ioError('ENOSPC', `${newPath} is too small, need ${need} bytes`);
      dropped = m.state === 'ONLINE' || m.state === 'REBUILDING';
      this.markFaulted(m, 'being replaced');
      await this.copyHeaderTo(io);
    } catch (e) {
      await closeQuietly(io);
      if (dropped) await this.commit();
      throw e;
    }
    await this.adopt(m, io, newPath, randomBytes(16));
    this.log(`raid: ${newPath} replaces slot ${slot}; rebuilding`);
    await opts?.onAdopted?.();
    await this.resumeRebuild(rowsInUse, progress);
  }

  private async reconstructStrip(slot: number, row: number, h: number): Promise<Buffer> {
    const g = this.geo.groups[this.geo.slotGroup[slot]];
    const self = this.geo.slotMember[slot];
    if (g.kind === 'stripe') throw ioError('EIO', 'RAID 0 has no redundancy to rebuild from');
    if (g.kind === 'mirror') {
      for (const mi of mirrorOrder(g, row)) {
        const m = this.members[g.slots[mi]];
        if (mi === self || !this.usable(m, row)) continue;
        try {
          return await this.readMember(m, row, 0, h);
        } catch {
          /* try the next copy */
        }
      }
      throw ioError('EIO', `row ${row}: no readable mirror copy to rebuild from`);
    }
    const map = rowMap(g, row);
    const bufs: (Buffer | null)[] = await Promise.all(
      g.slots.map(async (s, mi) => {
        const m = this.members[s];
        if (mi === self || !this.usable(m, row)) return null;
        return this.readMember(m, row, 0, h).catch(() => null);
      }),
    );
    const res = solveGroup(
      map.data.map((mi) => bufs[mi]),
      bufs[map.p],
      map.q >= 0 ? bufs[map.q] : null,
      h,
      map.p === self,
      map.q === self,
    );
    if (!res) throw ioError('EIO', `row ${row}: too many unreadable devices in group ${g.index} to rebuild`);
    const out = self === map.p ? res.p! : self === map.q ? res.q! : res.data[map.data.indexOf(self)];
    return asBuffer(out);
  }

  async resumeRebuild(rowsInUse: RowsInUse, progress?: Progress): Promise<void> {
    this.assertOpen();
    if (this.rebuildRunning) throw ioError('EBUSY', 'a rebuild is already running');
    const targets = this.members.filter((m) => m.state === 'REBUILDING' && m.io);
    if (targets.length === 0) return;
    this.rebuildRunning = true;
    try {
      const byRow = new Map<number, number>();
      for await (const r of rowsInUse()) {
        this.validateRow(r.row, r.height);
        byRow.set(r.row, r.height);
      }
      // Ascending order is what makes "last completed row" a sufficient cursor.
      const list = [...byRow].sort((a, b) => a[0] - b[0]);
      const total = list.length;
      for (const m of targets) {
        let done = list.filter(([row]) => row <= m.cursor).length;
        m.progress = { done, total };
        let sinceCheckpoint = 0;
        for (const [row, height] of list) {
          if (row <= m.cursor) continue;
          if (m.state !== 'REBUILDING' || !m.io) throw ioError('EIO', `rebuild of slot ${m.slot} aborted: device ${m.state}`);
          await this.withRowLock(row, async () => {
            if (m.written.has(row)) return; // written fresh since the rebuild started
            const strip = await this.reconstructStrip(m.slot, row, height);
            try {
              await m.io!.write(strip, this.pos(row));
            } catch (e) {
              await this.handleWriteFailures([{ m, err: e }]);
              throw e;
            }
          });
          m.cursor = row;
          m.progress = { done: ++done, total };
          // The superblock write syncs the device first, so a persisted cursor never points
          // past rows that are not yet durable.
          if (++sinceCheckpoint >= this.checkpointRows) {
            sinceCheckpoint = 0;
            await this.commit();
          }
          await progress?.(done, total);
        }
        m.state = 'ONLINE';
        m.cursor = -1;
        m.written.clear();
        m.progress = undefined;
        await this.commit();
        this.log(`raid: rebuild of ${m.path} (slot ${m.slot}) complete`);
      }
    } finally {
      this.rebuildRunning = false;
    }
  }

  // ---------------------------------------------------------------- volume header area

  async readHeaderArea(): Promise<(Buffer | null)[]> {
    this.assertOpen();
    const devs: (DeviceIO | null)[] = [
      ...this.members.map((m) => (m.io && (m.state === 'ONLINE' || m.state === 'REBUILDING') ? m.io : null)),
      ...this.spares.map((s) => s.io),
    ];
    const out: (Buffer | null)[] = [];
    for (const io of devs)
      for (let c = 0; c < 2; c++) {
        if (!io) {
          out.push(null);
          continue;
        }
        try {
          const b = Buffer.alloc(HEADER_BLOB_MAX);
          const n = await readFull(io, b, HEADER_BASE + c * HEADER_COPY);
          out.push(n === HEADER_BLOB_MAX ? b : null);
        } catch {
          out.push(null);
        }
      }
    return out;
  }

  async writeHeaderArea(blob: Buffer): Promise<void> {
    this.assertOpen();
    if (blob.length > HEADER_BLOB_MAX) throw new RangeError(`header blob of ${blob.length} bytes exceeds ${HEADER_BLOB_MAX}`);
    await this.ensurePersisted();
    // Whole zero-padded areas, so a shorter blob leaves no tail of a longer old one.
    const padded = Buffer.alloc(HEADER_BLOB_MAX);
    blob.copy(padded);
    let wrote = 0;
    // All copy 0s, synced, before any copy 1: a crash leaves every device with one intact copy.
    for (let c = 0; c < 2; c++) {
      const members = this.members.filter((m) => this.writable(m));
      const at = HEADER_BASE + c * HEADER_COPY;
      const res = await Promise.allSettled(members.map(async (m) => (await m.io!.write(padded, at), await m.io!.sync())));
      const sres = await Promise.allSettled(this.spares.map(async (s) => (await s.io.write(padded, at), await s.io.sync())));
      wrote += res.filter((r) => r.status === 'fulfilled').length + sres.filter((r) => r.status === 'fulfilled').length;
      sres.forEach((r, i) => {
        if (r.status === 'rejected') this.log(`raid: header write to spare ${this.spares[i].path} failed: ${(r.reason as Error).message}`);
      });
      await this.handleWriteFailures(res.flatMap((r, i) => (r.status === 'rejected' ? [{ m: members[i], err: r.reason }] : [])));
    }
    if (wrote === 0) throw ioError('EIO', 'volume header could not be written to any device');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.sbChain;
    this.closed = true;
    for (const m of this.members) {
      const io = m.io;
      m.io = null;
      await closeQuietly(io);
    }
    for (const s of this.spares) await closeQuietly(s.io);
  }
}
