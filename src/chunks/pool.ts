// A small pool of ingest workers, so that cutting, hashing and sealing run beside the thread that
// answers the kernel. Ranges go out in SharedArrayBuffers; results come back transferred.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { VolumeKeys } from '../crypto/index.ts';
import type { ChunkerParams } from './cdc.ts';

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
  b.copy(s);
  return s;
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

  async seal(data: Buffer, offs: number[], lens: number[], ids: Buffer): Promise<SealResult> {
    const r = await this.send<{ env: Uint8Array; sizes: number[] }>({ type: 'seal', data, offs, lens, ids: new Uint8Array(ids) });
    return { env: Buffer.from(r.env.buffer, r.env.byteOffset, r.env.byteLength), sizes: r.sizes };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.dead = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
