// An ingest worker: cuts a range into content-defined chunks and ids them, then seals the ones
// the main thread says are new. Range bytes arrive in SharedArrayBuffers (no copy), and the
// envelopes are written into shared memory the main thread gives with the job.
import { parentPort } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { chunkIds, sealChunks, VolumeKeys, type Cipher } from '../crypto/index.ts';
import { Chunker, gearTable, type ChunkerParams } from './cdc.ts';

// A range's SharedArrayBuffer is freed only when every isolate that saw it has collected it. This
// isolate allocates little, so its GC would almost never run and each 64 MiB range would stay
// alive here (measured: daemon RSS 1.0-1.4 GiB instead of ~0.4). The wrappers that hold them die
// young, so a scavenge after each job releases them; a full GC after each job did the same but
// cost about 10 ms each (a tenth of a worker's time), so it now runs only every 16th job, for
// whatever a scavenge missed.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
let gcQueued = false;
let jobs = 0;
function collectSoon(): void {
  if (gcQueued) return;
  gcQueued = true;
  setImmediate(() => {
    gcQueued = false;
    collect(++jobs % 16 === 0 ? { type: 'major' } : { type: 'minor' });
  });
}

let keys: VolumeKeys | null = null;
let chunker: Chunker | null = null;

type Msg =
  | { type: 'keys'; keys: { cipher: Cipher; idKey: Uint8Array; sealKey: Uint8Array; gearKey: Uint8Array }; params: ChunkerParams }
  | { type: 'cut'; id: number; data: Uint8Array; final: boolean }
  | { type: 'seal'; id: number; data: Uint8Array; offs: number[]; lens: number[]; ids: Uint8Array; out: Uint8Array };

parentPort!.on('message', (m: Msg) => {
  try {
    if (m.type === 'keys') {
      keys?.wipe();
      keys = VolumeKeys.forWorker(m.keys);
      chunker = new Chunker(m.params, gearTable(keys.gearKey));
      return;
    }
    if (!keys || !chunker) throw new Error('ingest worker has no keys');
    const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
    if (m.type === 'cut') {
      const offs: number[] = [];
      const lens: number[] = [];
      let pos = 0;
      while (pos < data.length) {
        const len = chunker.next(data, pos, data.length, m.final);
        if (len === 0) break;
        offs.push(pos);
        lens.push(len);
        pos += len;
      }
      const ids = chunkIds(keys, data, offs, lens);
      const out = new Uint8Array(ids.length);
      out.set(ids);
      parentPort!.postMessage({ id: m.id, lens, ids: out }, [out.buffer]);
      collectSoon();
      return;
    }
    const { sizes } = sealChunks(keys, data, m.offs, m.lens, m.ids, m.out);
    parentPort!.postMessage({ id: m.id, sizes });
    collectSoon();
  } catch (e) {
    parentPort!.postMessage({ id: (m as { id?: number }).id ?? -1, error: (e as Error).message });
  }
});
