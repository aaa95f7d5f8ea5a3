// A small pool of ingest workers, so that cutting, hashing and sealing run beside the thread that
// answers the kernel. Ranges go out in SharedArrayBuffers; results come back transferred.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { VolumeKeys } from '../crypto/index.ts';
import { nativeCopier, type ChunkerParams } from './cdc.ts';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export interface CutResult {
  lens: number[];
  ids: Buffer; // 32 bytes per chunk
}

export interface SealResult {
  env: Buffer; // envelopes back to back
  sizes: number[];
}

/** A Buffer over shared memory: workers read it without a copy. */
export function shared(b: Buffer): Buffer {
  if (b.buffer instanceof SharedArrayBuffer) return b;
  const s = Buffer.from(new SharedArrayBuffer(b.length));
  copyInto(s, 0, b);
  return s;
}

const memcpy = nativeCopier();
function copyInto(dst: Buffer, at: number, src: Buffer): void {
  if (memcpy) memcpy(dst, at, src);
  else src.copy(dst, at);
}

/**
 * Shared memory for batches, used again instead of allocated per batch: a fresh 16 MiB buffer
 * costs its page faults and zeroing on the thread that answers the kernel (measured: most of the
 * time that thread spent copying batches), and each one pushed V8 towards another full GC.
 * A buffer given back may still be overlaid by a read that captured its range before the batch
 * committed, so it waits until every read that started before it came back has finished.
 */
export class SharedBuffers {
  private readonly free: SharedArrayBuffer[] = [];
  /** Handed out by take() and not given back: give() takes only these, and each once. */
  private readonly lent = new WeakSet<SharedArrayBuffer>();
  private readonly waiting: { sab: SharedArrayBuffer; after: number }[] = [];
  private readonly reads = new Set<number>();
  private readSeq = 0;

  constructor(private readonly keep = 4) {}

  /** A buffer of exactly len bytes, over pooled memory when a pooled buffer is large enough. */
  take(len: number): Buffer {
    this.reclaim();
    for (let i = 0; i < this.free.length; i++) {
      const sab = this.free[i];
      if (sab.byteLength >= len && sab.byteLength <= 2 * len) {
        this.free.splice(i, 1);
        this.lent.add(sab);
        return Buffer.from(sab, 0, len);
      }
    }
    // Rounded up, so that batches of slightly different sizes can share buffers.
    const sab = new SharedArrayBuffer(Math.ceil(len / (1 << 20)) * (1 << 20));
    this.lent.add(sab);
    return Buffer.from(sab, 0, len);
  }

  /** memcpy (into shared memory at memory speed). */
  copy(dst: Buffer, at: number, src: Buffer): void {
    copyInto(dst, at, src);
  }

  /** The parts back to back in one buffer from take(), copied at memory speed. */
  assemble(parts: Buffer[], len: number): Buffer {
    const out = this.take(len);
    let pos = 0;
    for (const p of parts) {
      copyInto(out, pos, p);
      pos += p.length;
    }
    return out;
  }

  /**
   * Gives back the memory under b if take() lent it and it was not given back yet; the caller
   * guarantees that nothing but reads already running still looks at it.
   */
  give(b: Buffer): void {
    const sab = b.buffer;
    if (sab instanceof SharedArrayBuffer && this.lent.delete(sab)) this.waiting.push({ sab, after: this.readSeq });
  }

  /** A read that may copy from buffered ranges starts: buffers given back meanwhile wait for it. */
  readStart(): number {
    const seq = ++this.readSeq;
    this.reads.add(seq);
    return seq;
  }

  readEnd(seq: number): void {
    this.reads.delete(seq);
  }

  /** Drops every idle buffer (nothing is being written). */
  trim(): void {
    this.reclaim();
    this.free.length = 0;
  }

  private reclaim(): void {
    if (!this.waiting.length) return;
    // Sets iterate in insertion order: the first is the oldest read still running.
    let oldest = Infinity;
    for (const s of this.reads) {
      oldest = s;
      break;
    }
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i];
      if (w.after < oldest) {
        this.waiting.splice(i, 1);
        if (this.free.length < this.keep) this.free.push(w.sab);
      } else i++;
    }
  }
}

export class IngestPool {
  private readonly workers: Worker[] = [];
  private readonly busy: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  /** A worker died: this pool takes no more work (the store starts a new one). */
  dead = false;

  constructor(size = Math.max(1, Math.min(2, availableParallelism()))) {
    const url = new URL('./worker-boot.mjs', import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
      w.unref();
      w.on('message', (m: { id: number; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.busy[i]--;
        if (m.error) p.reject(new Error(m.error));
        else p.resolve(m);
      });
      // A worker that fails or exits must not leave a flush waiting forever.
      const fail = (e: Error) => {
        this.dead = true;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
        this.busy.fill(0);
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (!this.closed) fail(new Error(`ingest worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.busy.push(0);
    }
  }

  setKeys(keys: VolumeKeys, params: ChunkerParams): void {
    for (const w of this.workers) w.postMessage({ type: 'keys', keys: keys.exportForWorker(), params });
  }

  private send<T>(msg: Record<string, unknown>): Promise<T> {
    if (this.closed || this.dead) return Promise.reject(new Error('ingest pool is closed'));
    let best = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.busy[i] < this.busy[best]) best = i;
    const id = this.nextId++;
    this.busy[best]++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.workers[best].postMessage({ ...msg, id });
    });
  }

  async cut(data: Buffer, final: boolean): Promise<CutResult> {
    const r = await this.send<{ lens: number[]; ids: Uint8Array }>({ type: 'cut', data, final });
    return { lens: r.lens, ids: Buffer.from(r.ids.buffer, r.ids.byteOffset, r.ids.byteLength) };
  }

  /** Seals into out, shared memory exactly the size of the envelopes (see ChunkStore.sealedBytes). */
  async seal(data: Buffer, offs: number[], lens: number[], ids: Buffer, out: Buffer): Promise<SealResult> {
    const r = await this.send<{ sizes: number[] }>({ type: 'seal', data, offs, lens, ids: new Uint8Array(ids), out });
    return { env: out, sizes: r.sizes };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.dead = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
