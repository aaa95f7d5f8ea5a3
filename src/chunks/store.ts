// The chunk store: seals chunks, packs them into segments (one full-stripe RAID row each), reads
// them back verified, and keeps a byte-bounded cache of verified plaintext.
// It does not decide what to store: the filesystem layer dedups against the metadata index and
// hands over only chunks that are new.
import { LRUCache } from 'lru-cache';
import { chunkId, openChunk, sealChunk, sealedSize, type VolumeKeys } from '../crypto/index.ts';
import type { RaidArray } from '../raid/index.ts';
import { FsError } from '../fs/types.ts';
import { Chunker, gearTable, type ChunkerParams } from './cdc.ts';
import { IngestPool, shared, SharedBuffers } from './pool.ts';
export { shared, SharedBuffers };

export interface ChunkLocation {
  hash: Buffer;
  segment: number;
  height: number;
  off: number;
  storedLen: number;
  plainLen: number;
}

export interface PlacedChunk {
  hash: Buffer;
  segment: number;
  off: number;
  storedLen: number;
  plainLen: number;
}

export interface PlacedSegment {
  row: number;
  height: number;
  bytes: number;
}

export interface ChunkStoreOptions {
  raid: RaidArray;
  keys: VolumeKeys;
  chunker: ChunkerParams;
  usedRows: Iterable<number>;
  cacheBytes?: number;
}

/** Envelopes up to this size are read into reused scratch buffers (chunks are at most 256 KiB by default). */
const SCRATCH_BYTES = 512 * 1024;

export class ChunkStore {
  readonly raid: RaidArray;
  keys: VolumeKeys;
  /** The previous key set while 'hoardfs reencrypt' rotates the master key; reads fall back to it. */
  prevKeys: VolumeKeys | null = null;
  chunker: Chunker;
  private readonly chunkerParams: ChunkerParams;
  private readonly cache: LRUCache<string, Buffer>;
  private readonly used: Uint8Array;
  private nextFree = 0;
  private freeCount: number;
  readonly stats = { reads: 0, cacheHits: 0, bytesRead: 0, bytesWritten: 0, rowsWritten: 0 };

  constructor(o: ChunkStoreOptions) {
    this.raid = o.raid;
    this.keys = o.keys;
    this.chunkerParams = o.chunker;
    this.chunker = new Chunker(o.chunker, gearTable(o.keys.gearKey));
    this.cache = new LRUCache<string, Buffer>({
      maxSize: o.cacheBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (b) => Math.max(1, b.length),
    });
    this.used = new Uint8Array(o.raid.rows);
    let n = 0;
    for (const r of o.usedRows) {
      if (r < this.used.length && !this.used[r]) {
        this.used[r] = 1;
        n++;
      }
    }
    this.freeCount = this.used.length - n;
  }

  /** Switches to a new key set (reencrypt): new chunks are cut, named and sealed with it. */
  setKeys(keys: VolumeKeys, prev: VolumeKeys | null): void {
    this.keys = keys;
    this.prevKeys = prev;
    this.chunker = new Chunker(this.chunkerParams, gearTable(keys.gearKey));
    this.ingest?.setKeys(keys, this.chunkerParams);
  }

  private ingest: IngestPool | null = null;
  /** HOARDFS_INGEST_WORKERS=N sets the number of ingest workers; 0 keeps all ingest work on the main thread. */
  private readonly poolSize = process.env.HOARDFS_INGEST_WORKERS !== undefined ? Math.max(0, Number(process.env.HOARDFS_INGEST_WORKERS) | 0) : undefined;
  readonly poolEnabled = this.poolSize !== 0;

  /** Worker threads for cutting, hashing and sealing large ranges; started on first use. */
  pool(): IngestPool {
    if (!this.ingest || this.ingest.dead) {
      void this.ingest?.close();
      this.ingest = new IngestPool(this.poolSize);
      this.ingest.setKeys(this.keys, this.chunkerParams);
    }
    return this.ingest;
  }

  /**
   * Cuts and ids a large range with every worker at once: each worker cuts one piece from the
   * piece's own start; here, cutting resumes from the last accepted cut until it lands on one of
   * the next piece's cut points, after which that piece's cuts are exactly the sequential ones
   * (a cut depends only on the bytes after the previous cut). The result equals a sequential cut.
   */
  async cutParallel(data: Buffer, final: boolean, pieceBytes = 8 << 20): Promise<{ lens: number[]; ids: Buffer }> {
    const pool = this.pool();
    const starts: number[] = [];
    for (let b = 0; b < data.length; b += pieceBytes) starts.push(b);
    const jobs = starts.map((b, i) => {
      const end = i + 1 < starts.length ? starts[i + 1] : data.length;
      const last = i + 1 === starts.length;
      return pool.cut(data.subarray(b, end), last ? final : false);
    });
    const lens: number[] = [];
    const ids: Buffer[] = [];
    let cursor = 0;
    for (let i = 0; i < jobs.length; i++) {
      const r = await jobs[i];
      const base = starts[i];
      // Positions where the worker's chunks start: base, base + l0, base + l0 + l1, ...
      let k = 0;
      let at = base;
      if (cursor !== base) {
        // Resync: cut sequentially from cursor until a cut lands on one of the piece's chunk starts.
        const startsSet = new Map<number, number>();
        let q = base;
        for (let j = 0; j < r.lens.length; j++) {
          startsSet.set(q, j);
          q += r.lens[j];
        }
        startsSet.set(q, r.lens.length);
        while (!startsSet.has(cursor)) {
          if (cursor >= q) break; // past everything the worker cut: continue sequentially below
          const len = this.chunker.next(data, cursor, data.length, final);
          if (len === 0) break;
          lens.push(len);
          ids.push(chunkId(this.keys, data.subarray(cursor, cursor + len)));
          cursor += len;
        }
        if (!startsSet.has(cursor)) continue; // no resync within this piece (very rare): next piece resyncs
        k = startsSet.get(cursor)!;
        at = cursor;
      }
      for (; k < r.lens.length; k++) {
        lens.push(r.lens[k]);
        ids.push(r.ids.subarray(32 * k, 32 * k + 32));
        at += r.lens[k];
      }
      cursor = at;
    }
    // Whatever the last piece left (only possible after a missed resync): finish sequentially.
    while (cursor < data.length) {
      const len = this.chunker.next(data, cursor, data.length, final);
      if (len === 0) break;
      lens.push(len);
      ids.push(chunkId(this.keys, data.subarray(cursor, cursor + len)));
      cursor += len;
    }
    return { lens, ids: Buffer.concat(ids) };
  }

  async close(): Promise<void> {
    await this.ingest?.close();
    this.ingest = null;
  }

  id(data: Uint8Array): Buffer {
    return chunkId(this.keys, data);
  }

  /**
   * Rows only metadata snapshots may take. gc frees rows through a snapshot (freed rows stay
   * quarantined until a newer snapshot exists), so a volume filled to its last row could never get
   * space back: gc failed with ENOSPC however much was deleted. takeSnapshot sizes it after each
   * snapshot.
   */
  reservedRows = 2;

  /** Rows data may still take (the snapshot reserve excluded). */
  get freeRows(): number {
    return Math.max(0, this.freeCount - this.reservedRows);
  }

  get rowBytes(): number {
    return this.raid.rowDataBytes;
  }

  allocRow(forSnapshot = false): number {
    if (this.freeCount === 0 || (!forSnapshot && this.freeCount <= this.reservedRows)) throw new FsError('ENOSPC', 'no free space on the devices');
    const n = this.used.length;
    for (let k = 0; k < n; k++) {
      const r = (this.nextFree + k) % n;
      if (!this.used[r]) {
        this.used[r] = 1;
        this.freeCount--;
        this.nextFree = r + 1;
        return r;
      }
    }
    throw new FsError('ENOSPC');
  }

  releaseRows(rows: Iterable<number>): void {
    for (const r of rows) {
      if (this.used[r]) {
        this.used[r] = 0;
        this.freeCount++;
        if (r < this.nextFree) this.nextFree = r;
      }
    }
  }

  async read(loc: ChunkLocation): Promise<Buffer> {
    const key = loc.hash.toString('latin1');
    const hit = this.cache.get(key);
    this.stats.reads++;
    if (hit) {
      this.stats.cacheHits++;
      return hit;
    }
    const plain = await this.readUncached(loc);
    this.cache.set(key, plain);
    return plain;
  }

  /**
   * Reads several chunks (one file read's worth): chunks stored next to each other in one row
   * come in one device read per strip instead of one per chunk, and are verified together; a
   * group that does not verify as a whole falls back to reading its chunks one by one, which is
   * where damage is found and repaired.
   */
  async readMany(locs: ChunkLocation[]): Promise<Buffer[]> {
    const out: (Buffer | Promise<Buffer>)[] = new Array(locs.length);
    const misses: number[] = [];
    for (let i = 0; i < locs.length; i++) {
      const hit = this.cache.get(locs[i].hash.toString('latin1'));
      this.stats.reads++;
      if (hit) {
        this.stats.cacheHits++;
        out[i] = hit;
      } else misses.push(i);
    }
    // Misses were counted above: fetch them without going through read() again.
    const fetch = (l: ChunkLocation) =>
      this.readUncached(l).then((plain) => {
        this.cache.set(l.hash.toString('latin1'), plain);
        return plain;
      });
    misses.sort((a, b) => locs[a].segment - locs[b].segment || locs[a].off - locs[b].off);
    for (let g = 0; g < misses.length; ) {
      const first = locs[misses[g]];
      let end = first.off + first.storedLen;
      let h = g + 1;
      // Same row, and at most a small gap between them (chunks of other files in between).
      while (h < misses.length) {
        const l = locs[misses[h]];
        if (l.segment !== first.segment || l.height !== first.height || l.off < end || l.off - end > 64 << 10 || l.off + l.storedLen - first.off > 4 << 20) break;
        end = l.off + l.storedLen;
        h++;
      }
      const group = misses.slice(g, h);
      g = h;
      if (group.length === 1) {
        out[group[0]] = fetch(locs[group[0]]);
        continue;
      }
      // A group that does not verify as a whole is read again chunk by chunk.
      const whole = this.readGroup(group.map((i) => locs[i]), first.off, end).catch(() => null);
      group.forEach((i, k) => {
        out[i] = whole.then((plains) => {
          if (!plains) return fetch(locs[i]);
          this.cache.set(locs[i].hash.toString('latin1'), plains[k]);
          return plains[k];
        });
      });
    }
    return Promise.all(out);
  }

  private async readGroup(group: ChunkLocation[], lo: number, hi: number): Promise<Buffer[]> {
    const plains: Buffer[] = new Array(group.length);
    const verify = (b: Buffer): boolean => {
      for (let k = 0; k < group.length; k++) {
        const l = group[k];
        const p = this.open(l, b.subarray(l.off - lo, l.off - lo + l.storedLen), false);
        if (!p) return false;
        plains[k] = p;
      }
      return true;
    };
    const env = await this.raid.readRange(group[0].segment, group[0].height, lo, hi - lo, verify);
    if (plains.some((p) => !p) && !verify(env)) throw new Error('group did not verify');
    for (const p of plains) this.stats.bytesRead += p.length;
    return plains;
  }

  /** Opens an envelope with the current key set (or, during a rotation, the previous one). */
  private open(loc: ChunkLocation, env: Buffer, preferPrev: boolean): Buffer | undefined {
    // During a key rotation a chunk is under the old or the new key set; the AEAD tag (or the
    // keyed id) tells which, so trying both never accepts wrong bytes.
    const sets = this.prevKeys ? (preferPrev ? [this.prevKeys, this.keys] : [this.keys, this.prevKeys]) : [this.keys];
    for (const k of sets) {
      try {
        const plain = openChunk(k, loc.hash, env);
        if (plain.length === loc.plainLen) return plain;
      } catch {
        /* not this key set */
      }
    }
    return undefined;
  }

  /**
   * Envelopes of single chunks are read into scratch buffers used again once opened (the
   * plaintext is a buffer of its own): a fresh one per random 4 KiB read was half of what kept
   * V8's GC busy, about a fifth of the time of each read.
   */
  private readonly scratch: Buffer[] = [];

  /** Reads from the devices, whatever the cache holds (scrub). */
  async readUncached(loc: ChunkLocation, preferPrev = false): Promise<Buffer> {
    let plain: Buffer | undefined;
    const verify = (b: Buffer): boolean => {
      plain = this.open(loc, b, preferPrev);
      return plain !== undefined;
    };
    const scratch = loc.storedLen <= SCRATCH_BYTES ? (this.scratch.pop() ?? Buffer.allocUnsafeSlow(SCRATCH_BYTES)) : null;
    try {
      let env: Buffer;
      try {
        env = await this.raid.readRange(loc.segment, loc.height, loc.off, loc.storedLen, verify, scratch?.subarray(0, loc.storedLen));
      } catch (e) {
        throw new FsError('EIO', `chunk in row ${loc.segment} could not be read: ${(e as Error).message}`);
      }
      if (!plain) {
        // readRange may have returned without calling verify (it should not); check once more.
        if (!verify(env) || !plain) throw new FsError('EIO', `chunk in row ${loc.segment} failed verification`);
      }
    } finally {
      // readRange has settled (no device read writes into it any more) and plain is a copy.
      if (scratch && this.scratch.length < 8) this.scratch.push(scratch);
    }
    this.stats.bytesRead += plain.length;
    return plain;
  }

  /** Drops cached plaintext, e.g. after reencryption or in tests that damage devices. */
  dropCache(): void {
    this.cache.clear();
  }

  newBatch(): SegmentWriter {
    return new SegmentWriter(this);
  }

  /** Bookkeeping for SegmentWriter. */
  noteRowWritten(bytes: number): void {
    this.stats.rowsWritten++;
    this.stats.bytesWritten += bytes;
  }

  /** The size of the envelopes of chunks of these lengths, back to back. */
  sealedBytes(lens: number[]): number {
    let n = 0;
    for (const l of lens) n += sealedSize(this.keys, l);
    return n;
  }

  seal(hash: Buffer, data: Uint8Array): Buffer {
    return sealChunk(this.keys, hash, data);
  }
}

/**
 * Packs sealed chunks into row-sized segments and writes each one as a full stripe as soon as it
 * is full, so that device I/O overlaps with the sealing of the next chunks.
 */
export class SegmentWriter {
  private current: { row: number; parts: Buffer[]; bytes: number } | null = null;
  private readonly pending: Promise<void>[] = [];
  readonly segments: PlacedSegment[] = [];
  readonly chunks: PlacedChunk[] = [];
  private readonly rows: number[] = [];
  private failed: unknown = null;

  constructor(private readonly store: ChunkStore) {}

  add(hash: Buffer, data: Uint8Array): PlacedChunk {
    return this.addSealed(hash, this.store.seal(hash, data), data.length);
  }

  /** A chunk sealed elsewhere (an ingest worker). */
  addSealed(hash: Buffer, env: Buffer, plainLen: number): PlacedChunk {
    const cap = this.store.rowBytes;
    if (env.length > cap) throw new Error(`sealed chunk of ${env.length} bytes does not fit a row of ${cap}`);
    if (this.current && this.current.bytes + env.length > cap) this.closeCurrent();
    if (!this.current) {
      const row = this.store.allocRow();
      this.rows.push(row);
      this.current = { row, parts: [], bytes: 0 };
    }
    const placed: PlacedChunk = { hash, segment: this.current.row, off: this.current.bytes, storedLen: env.length, plainLen };
    this.current.parts.push(env);
    this.current.bytes += env.length;
    this.chunks.push(placed);
    return placed;
  }

  private closeCurrent(): void {
    const seg = this.current;
    if (!seg) return;
    this.current = null;
    const data = contiguous(seg.parts, seg.bytes) ?? Buffer.concat(seg.parts, seg.bytes);
    const placed: PlacedSegment = { row: seg.row, height: 0, bytes: seg.bytes };
    this.segments.push(placed);
    this.pending.push(
      this.store.raid.writeRow(seg.row, data).then(
        (height) => {
          placed.height = height;
          this.store.noteRowWritten(seg.bytes);
        },
        (e) => {
          this.failed ??= e;
        },
      ),
    );
  }

  /** Writes what is left and makes it durable; after this the metadata may reference the chunks. */
  async finish(): Promise<void> {
    this.closeCurrent();
    await Promise.all(this.pending);
    if (this.failed) throw toFsError(this.failed);
    if (this.segments.length) {
      try {
        await this.store.raid.sync();
      } catch (e) {
        throw toFsError(e);
      }
    }
  }

  /** Gives the rows back when the batch will not be committed. */
  async abort(): Promise<void> {
    this.current = null;
    await Promise.allSettled(this.pending);
    this.store.releaseRows(this.rows);
  }
}

/**
 * The parts as one view when they lie back to back in one buffer: envelopes sealed together by a
 * worker arrive that way, and a row made of them is written without another copy.
 */
function contiguous(parts: Buffer[], bytes: number): Buffer | null {
  const first = parts[0];
  if (!first) return null;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i];
    if (p.buffer !== first.buffer || p.byteOffset !== end) return null;
    end += p.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, bytes);
}

function toFsError(e: unknown): FsError {
  if (e instanceof FsError) return e;
  const code = (e as { code?: string }).code;
  return new FsError(code === 'ENOSPC' ? 'ENOSPC' : 'EIO', (e as Error).message);
}
