// POSIX semantics over the metadata store and the chunk store. Usable in-process (tests call it
// directly) and through the FUSE adapter. Writes are buffered per inode and stored in batches:
// one batch cuts, dedups, seals and packs the data of every dirty file, writes full stripes,
// makes them durable, and only then commits one metadata command that references them.
// Batches are pipelined: the next one is cut and sealed while the previous one syncs and commits;
// commits stay in order, and a failed batch takes every later one down with it.
import { constants as fsc } from 'node:fs';
import { SharedBuffers, type ChunkLocation, type ChunkStore, type SegmentWriter } from '../chunks/store.ts';
import type { CutResult, SealResult } from '../chunks/pool.ts';

/** Ranges at least this large are cut, hashed and sealed in the ingest workers. */
const POOL_MIN_RANGE = 1 << 20;
import type { AttrChange, ExtentRef, FileUpdate } from '../meta/commands.ts';
import { Metadata, ROOT_INO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isDirMode, type InodeRow } from '../meta/metadata.ts';
import { Ranges, type AccumulatorShape } from './ranges.ts';
import { ACL_ACCESS, ACL_DEFAULT, chmodAcl, encodeAcl, equivalentToMode, inheritAcl, modeFromAcl, parseAcl } from './acl.ts';

const ACL_ACCESS_NAME = Buffer.from(ACL_ACCESS);
const ACL_DEFAULT_NAME = Buffer.from(ACL_DEFAULT);
import {
  FsError,
  type Answer,
  type Attr,
  type Ctx,
  type DirEntry,
  type Entry,
  type FsOps,
  type Ino,
  type OpenResult,
  type SetAttr,
  type StatFs,
} from './types.ts';

const NAME_MAX = 255;
const XATTR_NAME_MAX = 255;
const XATTR_SIZE_MAX = 65536;
const S_ISGID = 0o2000;
const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER;
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_APPEND = fsc.O_APPEND;
const O_TRUNC = fsc.O_TRUNC;

export interface FilesystemOptions {
  /** Buffered bytes across all files before a background flush starts. */
  dirtyLimit?: number;
  /** How long written data may stay only in memory. */
  flushIntervalMs?: number;
  entryTimeout?: number;
  attrTimeout?: number;
  log?: (msg: string) => void;
  /** Nothing is written: no orphan purge, no flush timer, no sync at close. */
  readonly?: boolean;
}

interface FileState {
  dirty: Ranges;
  /** Ranges taken by batches not yet committed, oldest first (reads overlay them in order). */
  flushing: Ranges[];
  size: number;
  mtime: bigint;
  opens: number;
  error: FsError | null;
}

/** One batch between being taken from the buffers and its commit. */
interface Flight {
  work: { ino: Ino; st: FileState; ranges: Ranges }[];
  batch: SegmentWriter;
  extentsOf: Map<Ino, ExtentRef[]>;
  flushedEndOf: Map<Ino, number>;
  /** Chunks this batch stores: later batches dedup against them before they are committed. */
  fresh: string[];
  /** Batch buffers from the shared pool, given back when the batch commits. */
  pooled: Buffer[];
  taken: number;
  aborted: FsError | null;
}

function toFsError(e: unknown): FsError {
  return e instanceof FsError ? e : new FsError('EIO', (e as Error).message);
}

interface Handle {
  ino: Ino;
  flags: number;
}

export function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

function checkName(name: Buffer): void {
  if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG');
  if (name.length === 0 || name.includes(0) || name.includes(0x2f)) throw new FsError('EINVAL');
}

export class Filesystem implements FsOps {
  readonly meta: Metadata;
  readonly store: ChunkStore;
  private readonly files = new Map<Ino, FileState>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  /** Buffered bytes not yet committed: in the files' buffers plus taken by batches in flight. */
  private dirtyBytes = 0;
  private inflightBytes = 0;
  private readonly inflight: Flight[] = [];
  private readonly inflightChunks = new Set<string>();
  private readonly batchBuffers = new SharedBuffers();
  /** A batch takes about dirtyLimit of a file's appends; the head holds a handed-back tail. */
  private readonly accumulator: AccumulatorShape;
  /** Settles when every batch taken so far has committed or failed; never rejects. */
  private commitTail: Promise<void> = Promise.resolve();
  private exclusiveTail: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private backgroundFlush: Promise<void> | null = null;
  private closed = false;
  private readonly readonly: boolean;
  private readonly dirtyLimit: number;
  private readonly entryTimeout: number;
  private readonly attrTimeout: number;
  private readonly log: (msg: string) => void;
  readonly counters = { writes: 0, reads: 0, bytesWritten: 0, bytesRead: 0, flushes: 0, dedupHits: 0, newChunks: 0 };

  constructor(meta: Metadata, store: ChunkStore, o: FilesystemOptions = {}) {
    this.meta = meta;
    this.store = store;
    this.dirtyLimit = o.dirtyLimit ?? Number(process.env.HOARDFS_DIRTY_MIB ?? 16) * 1024 * 1024;
    this.accumulator = { bytes: this.dirtyLimit + (4 << 20), head: store.chunker.params.max, from: 1 << 20 };
    this.entryTimeout = o.entryTimeout ?? 1;
    this.attrTimeout = o.attrTimeout ?? 1;
    this.log = o.log ?? (() => {});
    this.readonly = !!o.readonly;
    const interval = o.flushIntervalMs ?? 2000;
    if (interval > 0 && !this.readonly) {
      this.timer = setInterval(() => {
        if (this.dirtyBytes > this.inflightBytes && !this.backgroundFlush) this.startBackgroundFlush();
        else if (this.dirtyBytes === 0) this.batchBuffers.trim();
      }, interval);
      this.timer.unref();
    }
    // Inodes that lost their last name while open when the previous mount ended.
    if (!this.readonly) for (const ino of meta.orphans()) meta.apply({ op: 'purge', ino });
  }

  // ---- helpers ----

  /**
   * Runs fn after every earlier exclusive section (flushes, truncates, gc) and, unless drain is
   * false, after every batch in flight has committed: gc must not drop a chunk a batch is about
   * to reference, a truncate must not be followed by a commit of older data past the new end.
   */
  exclusive<T>(fn: () => Promise<T> | T, drain = true): Promise<T> {
    const go = drain ? async () => (await this.commitTail, fn()) : fn;
    const run = this.exclusiveTail.then(go, go);
    this.exclusiveTail = run.catch(() => {});
    return run;
  }

  private inodeRow(ino: Ino): InodeRow {
    const i = this.meta.inode(ino);
    if (!i) throw new FsError('ENOENT');
    return i;
  }

  private attrOf(i: InodeRow): Attr {
    const st = this.files.get(i.ino);
    const size = st ? st.size : i.size;
    const mtime = st && st.mtime > i.mtime ? st.mtime : i.mtime;
    const ctime = st && st.mtime > i.ctime ? st.mtime : i.ctime;
    return {
      ino: i.ino,
      mode: i.mode,
      nlink: i.nlink,
      uid: i.uid,
      gid: i.gid,
      rdev: i.rdev,
      size,
      blocks: Math.ceil(size / 512),
      blksize: 65536,
      atimeNs: i.atime,
      mtimeNs: mtime,
      ctimeNs: ctime,
    };
  }

  private entry(ino: Ino): Entry {
    return { attr: this.attrOf(this.inodeRow(ino)), generation: 0, entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
  }

  private state(ino: Ino, i?: InodeRow): FileState {
    let st = this.files.get(ino);
    if (!st) {
      const row = i ?? this.inodeRow(ino);
      st = { dirty: new Ranges(), flushing: [], size: row.size, mtime: row.mtime, opens: 0, error: null };
      this.files.set(ino, st);
    }
    return st;
  }

  private newOwner(parent: InodeRow, ctx: Ctx, mode: number): { gid: number; mode: number } {
    if (parent.mode & S_ISGID) {
      return { gid: parent.gid, mode: isDirMode(mode) ? mode | S_ISGID : mode };
    }
    return { gid: ctx.gid, mode };
  }

  private create_(parent: Ino, name: Buffer, mode: number, rdev: number, ctx: Ctx, target?: Buffer): Entry {
    checkName(name);
    const p = this.inodeRow(parent);
    if (!isDirMode(p.mode)) throw new FsError('ENOTDIR');
    const own = this.newOwner(p, ctx, mode);
    // The kernel leaves umask to us (FUSE_CAP_DONT_MASK): a default ACL replaces it.
    const dflt = (mode & S_IFMT) === S_IFLNK ? undefined : this.meta.getxattr(parent, ACL_DEFAULT_NAME);
    const parsed = dflt ? parseAcl(dflt) : null;
    let newMode = own.mode;
    let access: Buffer | undefined;
    if (parsed) {
      const inh = inheritAcl(parsed, own.mode);
      newMode = inh.mode;
      if (!equivalentToMode(inh.access)) access = encodeAcl(inh.access);
    } else if ((mode & S_IFMT) !== S_IFLNK) newMode = own.mode & ~(ctx.umask & 0o777);
    const now = nowNs();
    const ino = this.meta.apply<number>({ op: 'mknod', parent, name, mode: newMode, uid: ctx.uid, gid: own.gid, rdev, target, now });
    if (access) this.meta.apply({ op: 'setxattr', ino, name: ACL_ACCESS_NAME, value: access, flags: 0, now });
    if (dflt && isDirMode(newMode)) this.meta.apply({ op: 'setxattr', ino, name: ACL_DEFAULT_NAME, value: dflt, flags: 0, now });
    return this.entry(ino);
  }

  private afterUnlink(orphan: number | undefined): void {
    if (orphan === undefined) return;
    const st = this.files.get(orphan);
    if (st && st.opens > 0) return;
    this.dropState(orphan);
    this.meta.apply({ op: 'purge', ino: orphan });
  }

  private dropState(ino: Ino): void {
    const st = this.files.get(ino);
    if (!st) return;
    this.dirtyBytes -= st.dirty.bytes;
    this.files.delete(ino);
  }

  // ---- FsOps ----

  lookup(parent: Ino, name: Buffer): Entry {
    if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG');
    const ino = this.meta.lookup(parent, name);
    if (ino === undefined) throw new FsError('ENOENT');
    return this.entry(ino);
  }

  forget(): void {}

  getattr(ino: Ino): Attr {
    return this.attrOf(this.inodeRow(ino));
  }

  setattr(ino: Ino, set: SetAttr, _fh: number | undefined, _ctx: Ctx): Answer<Attr> {
    const now = nowNs();
    const change: { mode?: number; uid?: number; gid?: number; size?: number; atime?: bigint; mtime?: bigint } = {};
    if (set.mode !== undefined) change.mode = set.mode;
    if (set.uid !== undefined) change.uid = set.uid;
    if (set.gid !== undefined) change.gid = set.gid;
    if (set.atimeNs !== undefined) change.atime = set.atimeNs === 'now' ? now : set.atimeNs;
    if (set.mtimeNs !== undefined) change.mtime = set.mtimeNs === 'now' ? now : set.mtimeNs;
    if (set.size !== undefined) return this.truncate(ino, set.size, change, now);
    this.meta.apply({ op: 'setattr', ino, set: change, now });
    if (change.mode !== undefined) {
      // chmod keeps an access ACL in step with the new mode bits.
      const acl = this.meta.getxattr(ino, ACL_ACCESS_NAME);
      const parsed = acl ? parseAcl(acl) : null;
      if (parsed) this.meta.apply({ op: 'setxattr', ino, name: ACL_ACCESS_NAME, value: encodeAcl(chmodAcl(parsed, change.mode)), flags: 0, now });
    }
    const st = this.files.get(ino);
    if (st && change.mtime !== undefined) st.mtime = change.mtime;
    return this.attrOf(this.inodeRow(ino));
  }

  /** setattr with a size: the only one that waits (for the flush pipeline). */
  private async truncate(ino: Ino, size: number, change: AttrChange, now: bigint): Promise<Attr> {
    if (size < 0 || size > MAX_FILE_SIZE) throw new FsError(size < 0 ? 'EINVAL' : 'EFBIG');
    const i = this.inodeRow(ino);
    if (isDirMode(i.mode)) throw new FsError('EISDIR');
    if ((i.mode & S_IFMT) !== S_IFREG) throw new FsError('EINVAL');
    await this.exclusive(() => {
      const st = this.files.get(ino);
      if (st) {
        const before = st.dirty.bytes;
        st.dirty.truncate(size);
        this.dirtyBytes -= before - st.dirty.bytes;
      }
      // The stored extents are cut in the same command; a size only the buffer knew about
      // becomes the stored size, so the cut never exposes stale bytes past it.
      this.meta.apply({ op: 'setattr', ino, set: { ...change, size }, now });
      if (st) {
        st.size = size;
        st.mtime = change.mtime ?? now;
      }
    });
    return this.attrOf(this.inodeRow(ino));
  }

  readlink(ino: Ino): Buffer {
    const i = this.inodeRow(ino);
    if ((i.mode & S_IFMT) !== S_IFLNK || !i.target) throw new FsError('EINVAL');
    return i.target;
  }

  mknod(parent: Ino, name: Buffer, mode: number, rdev: number, ctx: Ctx): Entry {
    return this.create_(parent, name, mode, rdev, ctx);
  }

  mkdir(parent: Ino, name: Buffer, mode: number, ctx: Ctx): Entry {
    return this.create_(parent, name, S_IFDIR | (mode & 0o7777), 0, ctx);
  }

  symlink(target: Buffer, parent: Ino, name: Buffer, ctx: Ctx): Entry {
    if (target.length > 4095) throw new FsError('ENAMETOOLONG');
    return this.create_(parent, name, S_IFLNK | 0o777, 0, ctx, target);
  }

  unlink(parent: Ino, name: Buffer): void {
    if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG');
    // A file nobody holds open goes in the same command as its last name (one commit, not two).
    const target = this.meta.lookup(parent, name);
    const open = target !== undefined && (this.files.get(target)?.opens ?? 0) > 0;
    const orphan = this.meta.apply<number | undefined>({ op: 'unlink', parent, name, now: nowNs(), purge: !open });
    if (orphan !== undefined && !open) this.dropState(orphan);
    else this.afterUnlink(orphan);
  }

  rmdir(parent: Ino, name: Buffer): void {
    if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG');
    if (name.equals(Buffer.from('.'))) throw new FsError('EINVAL');
    if (name.equals(Buffer.from('..'))) throw new FsError('ENOTEMPTY');
    this.afterUnlink(this.meta.apply<number | undefined>({ op: 'rmdir', parent, name, now: nowNs() }));
  }

  rename(parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number): void {
    if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG');
    checkName(newName);
    if (flags & ~3) throw new FsError('EINVAL');
    this.afterUnlink(this.meta.apply<number | undefined>({ op: 'rename', parent, name, newParent, newName, flags, now: nowNs() }));
  }

  link(ino: Ino, newParent: Ino, newName: Buffer): Entry {
    checkName(newName);
    this.meta.apply({ op: 'link', ino, parent: newParent, name: newName, now: nowNs() });
    return this.entry(ino);
  }

  open(ino: Ino, flags: number): Answer<OpenResult> {
    const i = this.inodeRow(ino);
    if (isDirMode(i.mode) && (flags & O_ACCMODE) !== 0) throw new FsError('EISDIR');
    const st = this.state(ino, i);
    st.opens++;
    const fh = this.nextFh++;
    this.handles.set(fh, { ino, flags });
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== 0 && (i.mode & S_IFMT) === S_IFREG && st.size > 0) return this.truncateAtOpen(ino, fh, st);
    return this.opened(fh, flags);
  }

  /**
   * Every change to a file goes through the kernel, so its page cache stays right across opens
   * (keep_cache). A FLUSH at close is only needed to report a deferred write error, which is the
   * business of descriptors that could write: a read-only close skips the round trip.
   */
  private opened(fh: number, flags: number): OpenResult {
    return { fh, keepCache: true, noFlush: (flags & O_ACCMODE) === 0 };
  }

  private async truncateAtOpen(ino: Ino, fh: number, st: FileState): Promise<OpenResult> {
    try {
      await this.truncate(ino, 0, {}, nowNs());
    } catch (e) {
      this.handles.delete(fh);
      st.opens--;
      throw e;
    }
    return this.opened(fh, O_WRONLY);
  }

  create(parent: Ino, name: Buffer, mode: number, flags: number, ctx: Ctx): { entry: Entry; open: OpenResult } {
    const entry = this.create_(parent, name, S_IFREG | (mode & 0o7777), 0, ctx);
    // A new file has nothing to truncate, so opening it never waits.
    const open = this.open(entry.attr.ino, flags & ~O_TRUNC) as OpenResult;
    return { entry, open };
  }

  async read(ino: Ino, _fh: number, size: number, offset: number): Promise<Buffer> {
    const st = this.files.get(ino);
    const fileSize = st ? st.size : this.inodeRow(ino).size;
    if (offset >= fileSize || size <= 0) return Buffer.alloc(0);
    const end = Math.min(fileSize, offset + size);
    // Everything that decides what the bytes are is captured before the first await, so a
    // flush that commits meanwhile cannot make this read mix old and new views.
    const extents = this.meta.readMap(ino, offset, end);
    // Only the holes between extents need zeros; chunk bytes cover the rest.
    const out = Buffer.allocUnsafe(end - offset);
    let covered = offset;
    for (const e of extents) {
      if (e.off > covered) out.fill(0, covered - offset, Math.min(e.off, end) - offset);
      covered = Math.max(covered, Math.min(e.off + e.len, end));
    }
    if (covered < end) out.fill(0, covered - offset);
    const flushing = st ? st.flushing.slice() : [];
    const dirtyCopy = st && !st.dirty.empty ? Buffer.alloc(end - offset) : null;
    const dirtyMask = dirtyCopy ? this.snapshotDirty(st!.dirty, offset, end, dirtyCopy) : null;
    const index = new Map<number, number>();
    const locs: ChunkLocation[] = [];
    for (const e of extents) {
      if (index.has(e.chunk)) continue;
      if (!e.at) throw new FsError('EIO', `extent references missing chunk ${e.chunk}`);
      index.set(e.chunk, locs.length);
      locs.push(e.at);
    }
    // The batch buffers the captured ranges live in must not be used again before this read is done.
    const pin = flushing.length ? this.batchBuffers.readStart() : 0;
    try {
      const plains = await this.store.readMany(locs);
      for (const e of extents) {
        const plain = plains[index.get(e.chunk)!];
        const from = Math.max(e.off, offset);
        const to = Math.min(e.off + e.len, end);
        // out was not zeroed: a chunk shorter than its extent must not leave old memory in it.
        if (plain.copy(out, from - offset, e.chunkOff + (from - e.off), e.chunkOff + (to - e.off)) !== to - from) {
          throw new FsError('EIO', `chunk ${e.chunk} is shorter than its extent`);
        }
      }
      for (const f of flushing) f.overlay(out, offset);
    } finally {
      if (pin) this.batchBuffers.readEnd(pin);
    }
    if (dirtyCopy && dirtyMask) for (const [a, b] of dirtyMask) dirtyCopy.copy(out, a, a, b);
    this.counters.reads++;
    this.counters.bytesRead += out.length;
    return out;
  }

  private snapshotDirty(dirty: Ranges, offset: number, end: number, into: Buffer): [number, number][] {
    dirty.overlay(into, offset);
    const mask: [number, number][] = [];
    for (const r of dirty.list) {
      if (r.end <= offset) continue;
      if (r.off >= end) break;
      mask.push([Math.max(r.off, offset) - offset, Math.min(r.end, end) - offset]);
    }
    return mask;
  }

  write(ino: Ino, fh: number, data: Buffer, offset: number): Answer<number> {
    const h = this.handles.get(fh);
    const st = this.state(ino);
    if (st.error) {
      const e = st.error;
      st.error = null;
      throw e;
    }
    let off = offset;
    if (h && h.flags & O_APPEND) off = st.size;
    if (off + data.length > MAX_FILE_SIZE) throw new FsError('EFBIG');
    if (data.length === 0) return 0;
    this.reserveSpace(data.length);
    const before = st.dirty.bytes;
    // A copy: data may be the FUSE binding's receive buffer (borrowWrites), reused after this.
    st.dirty.writeCopy(off, data, this.batchBuffers, this.accumulator);
    this.dirtyBytes += st.dirty.bytes - before;
    if (off + data.length > st.size) st.size = off + data.length;
    st.mtime = nowNs();
    this.counters.writes++;
    this.counters.bytesWritten += data.length;
    const kicks = this.kickFlush() ? 1 : 0;
    // Most writes are answered at once; only back-pressure makes the writer wait.
    if (this.dirtyBytes < 2 * this.dirtyLimit) return data.length;
    return this.backPressure(data.length, kicks);
  }

  /** Starts a batch when a limit's worth of buffered data is not yet taken by one. */
  private kickFlush(): boolean {
    if (this.backgroundFlush || this.dirtyBytes - this.inflightBytes < this.dirtyLimit) return false;
    this.startBackgroundFlush();
    return true;
  }

  /**
   * The writer waits while twice the limit is buffered or in flight. A batch starts whenever a
   * limit's worth is not yet taken, also while the writer waits, so the next one is cut while the
   * previous one commits.
   */
  private async backPressure(n: number, kicks: number): Promise<number> {
    for (;;) {
      if (kicks < 2 && this.kickFlush()) kicks++;
      if (this.dirtyBytes < 2 * this.dirtyLimit) break;
      const wait = this.backgroundFlush ?? (this.inflight.length ? this.commitTail : null);
      if (!wait) break;
      await wait;
    }
    return n;
  }

  /** ENOSPC up front: the writer must hear it, not a later writeback. */
  private reserveSpace(n: number): void {
    const free = this.store.freeRows * this.store.rowBytes;
    // A sealed chunk is at most ~12% (Padmé) plus its envelope larger than its data.
    if ((this.dirtyBytes + n) * 1.15 + 65536 > free) throw new FsError('ENOSPC');
  }

  /** Starts a batch; backgroundFlush covers only its cutting and sealing, so the next can follow. */
  private startBackgroundFlush(): void {
    const report = (e: unknown) => this.log(`background flush failed: ${(e as Error).message}`);
    this.backgroundFlush = this.flushStaged(false, false)
      .then((s) => void s.committed.catch(report), report)
      .finally(() => {
        this.backgroundFlush = null;
      });
  }

  flush(ino: Ino): void {
    const st = this.files.get(ino);
    if (st?.error) {
      const e = st.error;
      st.error = null;
      throw e;
    }
  }

  release(ino: Ino, fh: number): Answer<void> {
    this.handles.delete(fh);
    const st = this.files.get(ino);
    if (!st) return;
    st.opens--;
    if (st.opens > 0) return;
    const i = this.meta.inode(ino);
    if (i && i.nlink === 0) {
      return this.exclusive(() => {
        if (st.opens > 0) return;
        this.dropState(ino);
        this.meta.apply({ op: 'purge', ino });
      });
    }
  }

  async fsync(ino: Ino): Promise<void> {
    let err: unknown = null;
    await this.flushAll(true, true).catch((e) => (err = e));
    // Reported once: a failed batch both rejects the flush and marks its files.
    const st = this.files.get(ino);
    if (st?.error) {
      err ??= st.error;
      st.error = null;
    }
    if (err) throw err;
  }

  /** Stores all buffered data; durable makes the devices and the database sync before returning. */
  flushAll(final: boolean, durable: boolean): Promise<void> {
    return this.flushStaged(final, durable).then((s) => s.committed);
  }

  /** Takes and seals a batch in the exclusive section; resolves once the next batch may start. */
  private flushStaged(final: boolean, durable: boolean): Promise<{ committed: Promise<void> }> {
    return this.exclusive(async () => {
      const flight = await this.stage(final);
      // Commits run in the order batches were taken, each after the previous one settled.
      const committed = this.commitTail.then(() => (flight ? this.commit(flight, durable) : durable ? this.meta.sync() : undefined));
      this.commitTail = committed.catch(() => {});
      return { committed };
    }, false);
  }

  private async stage(final: boolean): Promise<Flight | null> {
    const work: Flight['work'] = [];
    for (const [ino, st] of this.files) {
      if (st.dirty.empty) continue;
      work.push({ ino, st, ranges: st.dirty });
      st.flushing.push(st.dirty);
      st.dirty = new Ranges();
    }
    if (!work.length) return null;
    const f: Flight = { work, batch: this.store.newBatch(), extentsOf: new Map(), flushedEndOf: new Map(), fresh: [], pooled: [], taken: 0, aborted: null };
    this.inflight.push(f);
    const inBatch = new Set<string>();
    try {
      // Cut and id every range: large ones in the ingest workers (all at once), small ones here.
      type Job = { ino: Ino; st: FileState; off: number; data: Buffer; cut: Promise<CutResult> | CutResult };
      const jobs: Job[] = [];
      for (const { ino, st, ranges } of work) {
        const list = ranges.list;
        for (let ri = 0; ri < list.length; ri++) {
          const r = list[ri];
          // An open file's last range keeps its uncut tail in memory, so chunk boundaries do not
          // depend on when the flush happened (and a copy dedups against the original).
          const keepTail = !final && st.opens > 0 && ri === list.length - 1;
          const big = r.len >= POOL_MIN_RANGE && this.store.poolEnabled;
          const data = big ? r.flatShared(this.batchBuffers) : r.flat();
          if (big) f.pooled.push(data);
          jobs.push({ ino, st, off: r.off, data, cut: big ? this.store.cutParallel(data, !keepTail) : this.cutHere(data, !keepTail) });
        }
      }
      const seals: { job: Job; offs: number[]; lens: number[]; ids: Buffer[]; sealed: Promise<SealResult> | null }[] = [];
      for (const job of jobs) {
        const { lens, ids } = await job.cut;
        if (f.aborted) throw f.aborted;
        const extents = f.extentsOf.get(job.ino) ?? [];
        f.extentsOf.set(job.ino, extents);
        const fresh = { job, offs: [] as number[], lens: [] as number[], ids: [] as Buffer[], sealed: null as Promise<SealResult> | null };
        let pos = 0;
        for (let k = 0; k < lens.length; k++) {
          const len = lens[k];
          const hash = Buffer.from(ids.subarray(32 * k, 32 * k + 32));
          const key = hash.toString('latin1');
          if (!inBatch.has(key)) {
            if (this.inflightChunks.has(key) || this.meta.chunkByHash(hash)) this.counters.dedupHits++;
            else {
              fresh.offs.push(pos);
              fresh.lens.push(len);
              fresh.ids.push(hash);
              f.fresh.push(key);
              this.counters.newChunks++;
            }
            inBatch.add(key);
          } else this.counters.dedupHits++;
          extents.push({ off: job.off + pos, len, hash, chunkOff: 0 });
          pos += len;
        }
        f.taken += pos;
        if (pos < job.data.length) {
          // The uncut tail goes back under whatever was written meanwhile; bytes overwritten
          // since are no longer buffered twice.
          const before = job.st.dirty.bytes;
          // A copy: the batch's buffer goes back to the pool when it commits. It usually goes in
          // front of the writes since, into their accumulator.
          job.st.dirty.writeUnder(job.off + pos, Buffer.from(job.data.subarray(pos)), this.batchBuffers);
          this.dirtyBytes -= job.data.length - pos - (job.st.dirty.bytes - before);
        }
        if (pos > 0) f.flushedEndOf.set(job.ino, Math.max(f.flushedEndOf.get(job.ino) ?? 0, job.off + pos));
        if (fresh.offs.length && job.data.length >= POOL_MIN_RANGE && this.store.poolEnabled) {
          // Seal in pieces of about 8 MiB, so every worker takes part and rows start early.
          let from = 0;
          while (from < fresh.offs.length) {
            let to = from;
            let bytes = 0;
            while (to < fresh.offs.length && (to === from || bytes < 8 << 20)) bytes += fresh.lens[to++];
            const part = { job, offs: fresh.offs.slice(from, to), lens: fresh.lens.slice(from, to), ids: fresh.ids.slice(from, to), sealed: null as Promise<SealResult> | null };
            // Rows are views of the envelopes; the buffer goes back to the pool at the commit.
            const out = this.batchBuffers.take(this.store.sealedBytes(part.lens));
            f.pooled.push(out);
            part.sealed = this.store.pool().seal(job.data, part.offs, part.lens, Buffer.concat(part.ids), out);
            seals.push(part);
            from = to;
          }
        } else seals.push(fresh);
      }
      for (const key of f.fresh) this.inflightChunks.add(key);
      this.inflightBytes += f.taken;
      for (const part of seals) {
        if (part.sealed) {
          const { env, sizes } = await part.sealed;
          part.sealed = null; // the envelopes are copied into rows next; do not keep them to the end
          let o = 0;
          for (let k = 0; k < sizes.length; k++) {
            f.batch.addSealed(part.ids[k], env.subarray(o, o + sizes[k]), part.lens[k]);
            o += sizes[k];
          }
        } else for (let k = 0; k < part.offs.length; k++) f.batch.add(part.ids[k], part.job.data.subarray(part.offs[k], part.offs[k] + part.lens[k]));
      }
      if (f.aborted) throw f.aborted;
    } catch (e) {
      const err = f.aborted ?? toFsError(e);
      this.log(`storing buffered data failed: ${err.message}`);
      await f.batch.abort();
      this.abortFrom(f, err);
      // Tails handed back after an earlier batch's failure already returned this one's data.
      this.recount();
      throw err;
    }
    return f;
  }

  /** Runs after every earlier batch settled: makes the rows durable, then commits. */
  private async commit(f: Flight, durable: boolean): Promise<void> {
    if (f.aborted) {
      // An earlier batch failed; this one's data was handed back already.
      await f.batch.abort();
      throw f.aborted;
    }
    try {
      await f.batch.finish();
      // Sizes and mtimes are read now, with no await before the commit: against what the earlier
      // batches committed, and after any utimens that came in while the rows were synced (rsync
      // sets the mtime right after close; reading it before the sync put the write time back).
      const files: FileUpdate[] = [];
      for (const { ino, st } of f.work) {
        const storedSize = this.meta.inode(ino)?.size ?? 0;
        const flushedEnd = f.flushedEndOf.get(ino) ?? 0;
        const pending = !st.dirty.empty || st.flushing.length > 1;
        const size = pending ? Math.min(st.size, Math.max(storedSize, flushedEnd)) : st.size;
        files.push({ ino, size, mtime: st.mtime, extents: f.extentsOf.get(ino) ?? [] });
      }
      this.meta.apply({ op: 'write', now: nowNs(), segments: f.batch.segments, chunks: f.batch.chunks, files }, durable);
    } catch (e) {
      const err = toFsError(e);
      this.log(`storing buffered data failed: ${err.message}`);
      await f.batch.abort();
      this.abortFrom(f, err);
      throw err;
    }
    this.inflight.splice(this.inflight.indexOf(f), 1);
    this.inflightBytes -= f.taken;
    this.dirtyBytes -= f.taken;
    for (const key of f.fresh) this.inflightChunks.delete(key);
    this.counters.flushes++;
    for (const { ino, st, ranges } of f.work) {
      st.flushing.splice(st.flushing.indexOf(ranges), 1);
      if (st.opens === 0 && st.dirty.empty && !st.flushing.length && this.files.get(ino) === st) this.files.delete(ino);
    }
    // Every cut and seal of this batch has finished, and no buffer holds its ranges any more.
    for (const b of f.pooled) this.batchBuffers.give(b);
  }

  /**
   * Fails f and every batch taken after it, handing their data back to the buffers newest first,
   * each under what is newer (reads still see it; a later flush retries), and reports the error
   * at fsync and close.
   */
  private abortFrom(f: Flight, err: FsError): void {
    const i = this.inflight.indexOf(f);
    if (i < 0) return;
    const doomed = this.inflight.splice(i);
    for (let k = doomed.length - 1; k >= 0; k--) {
      const d = doomed[k];
      d.aborted ??= err;
      for (const key of d.fresh) this.inflightChunks.delete(key);
      for (const { st, ranges } of d.work) {
        const at = st.flushing.indexOf(ranges);
        if (at >= 0) st.flushing.splice(at, 1);
        for (const r of ranges.list) st.dirty.writeUnder(r.off, r.flat());
        st.error = err;
      }
    }
    this.recount();
  }

  /** Recounts from the buffers: handed-back ranges may overlap each other and newer writes. */
  private recount(): void {
    this.inflightBytes = this.inflight.reduce((n, x) => n + x.taken, 0);
    let n = this.inflightBytes;
    for (const st of this.files.values()) n += st.dirty.bytes;
    this.dirtyBytes = n;
  }

  /** Cuts and ids a small range on this thread (a worker round trip would cost more). */
  private cutHere(data: Buffer, final: boolean): CutResult {
    const lens: number[] = [];
    const ids: Buffer[] = [];
    let pos = 0;
    while (pos < data.length) {
      const len = this.store.chunker.next(data, pos, data.length, final);
      if (len === 0) break;
      ids.push(this.store.id(data.subarray(pos, pos + len)));
      lens.push(len);
      pos += len;
    }
    return { lens, ids: Buffer.concat(ids) };
  }

  async fallocate(ino: Ino, _fh: number, mode: number, offset: number, length: number): Promise<void> {
    if (mode !== 0) throw new FsError('EOPNOTSUPP');
    const st = this.state(ino);
    if (offset + length > st.size) await this.setattr(ino, { size: offset + length }, undefined, { uid: 0, gid: 0, pid: 0, umask: 0 });
  }

  opendir(ino: Ino): OpenResult {
    const i = this.inodeRow(ino);
    if (!isDirMode(i.mode)) throw new FsError('ENOTDIR');
    return { fh: 0 };
  }

  readdir(ino: Ino, _fh: number, offset: number, maxEntries: number): DirEntry[] {
    const i = this.meta.inode(ino);
    if (!i) return [];
    const out: DirEntry[] = [];
    if (offset < 1) out.push({ name: Buffer.from('.'), ino, mode: S_IFDIR, nextOffset: 1 });
    if (offset < 2 && out.length < maxEntries) {
      out.push({ name: Buffer.from('..'), ino: this.meta.parentOf(ino) ?? ino, mode: S_IFDIR, nextOffset: 2 });
    }
    const rows = this.meta.readdir(ino, Math.max(offset, 2), Math.max(0, maxEntries - out.length));
    for (const r of rows) out.push({ name: r.name, ino: r.ino, mode: r.mode, nextOffset: r.cookie });
    return out;
  }

  releasedir(): void {}

  async fsyncdir(): Promise<void> {
    this.meta.sync();
  }

  statfs(): StatFs {
    const bsize = 4096;
    const total = this.store.raid.rows * this.store.rowBytes;
    const free = Math.max(0, this.store.freeRows * this.store.rowBytes - this.dirtyBytes);
    return {
      bsize,
      frsize: bsize,
      blocks: Math.floor(total / bsize),
      bfree: Math.floor(free / bsize),
      bavail: Math.floor(free / bsize),
      files: 1 << 30,
      ffree: (1 << 30) - 1,
      namemax: NAME_MAX,
    };
  }

  private checkXattrName(ino: Ino, name: string): Buffer {
    const b = Buffer.from(name);
    if (b.length === 0 || b.length > XATTR_NAME_MAX) throw new FsError('ERANGE');
    if (!/^(user|trusted|security|system)\./.test(name)) throw new FsError('EOPNOTSUPP');
    if (name.startsWith('user.')) {
      const t = this.inodeRow(ino).mode & S_IFMT;
      if (t !== S_IFREG && t !== S_IFDIR) throw new FsError('EPERM');
    }
    return b;
  }

  setxattr(ino: Ino, name: string, value: Buffer, flags: number): void {
    const n = this.checkXattrName(ino, name);
    if (value.length > XATTR_SIZE_MAX) throw new FsError('E2BIG');
    if (name === ACL_ACCESS || name === ACL_DEFAULT) {
      const acl = parseAcl(value);
      if (!acl) throw new FsError('EINVAL');
      const i = this.inodeRow(ino);
      if (name === ACL_DEFAULT && !isDirMode(i.mode)) throw new FsError('EACCES');
      if (name === ACL_ACCESS) {
        const now = nowNs();
        const mode = modeFromAcl(acl, i.mode);
        if (mode !== i.mode) this.meta.apply({ op: 'setattr', ino, set: { mode }, now });
        // An ACL the mode bits say in full is not stored (as ext4 does).
        if (equivalentToMode(acl)) {
          if (this.meta.getxattr(ino, n)) this.meta.apply({ op: 'removexattr', ino, name: n, now });
          return;
        }
      }
    }
    this.meta.apply({ op: 'setxattr', ino, name: n, value, flags, now: nowNs() });
  }

  getxattr(ino: Ino, name: string): Buffer {
    const b = Buffer.from(name);
    if (b.length > XATTR_NAME_MAX) throw new FsError('ERANGE');
    this.inodeRow(ino);
    const v = this.meta.getxattr(ino, b);
    if (!v) throw new FsError('ENODATA');
    return v;
  }

  listxattr(ino: Ino): string[] {
    this.inodeRow(ino);
    return this.meta.listxattr(ino).map((n) => n.toString());
  }

  removexattr(ino: Ino, name: string): void {
    const n = this.checkXattrName(ino, name);
    this.meta.apply({ op: 'removexattr', ino, name: n, now: nowNs() });
  }

  access(ino: Ino, mask: number, ctx: Ctx): void {
    const i = this.inodeRow(ino);
    if (mask === 0 || ctx.uid === 0) {
      if (ctx.uid === 0 && mask & 1 && !isDirMode(i.mode) && !(i.mode & 0o111)) throw new FsError('EACCES');
      return;
    }
    const bits = ctx.uid === i.uid ? (i.mode >> 6) & 7 : ctx.gid === i.gid ? (i.mode >> 3) & 7 : i.mode & 7;
    if ((bits & mask) !== mask) throw new FsError('EACCES');
  }

  async init(): Promise<void> {}

  /** Stores everything buffered, durably; the filesystem stays usable. */
  async sync(): Promise<void> {
    if (this.backgroundFlush) await this.backgroundFlush;
    await this.flushAll(true, true);
  }

  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (!this.readonly) await this.sync();
  }

  get buffered(): number {
    return this.dirtyBytes;
  }

  get openFiles(): number {
    return this.handles.size;
  }
}

export { ROOT_INO, S_IFDIR, S_IFREG, S_IFLNK, O_WRONLY, O_RDWR };
