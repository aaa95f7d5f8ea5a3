// Live metrics of a mounted volume: per-operation latency (log2 histograms, microseconds),
// throughput over the last few seconds, cache hit rate. Recording costs one performance.now()
// and one array increment per request. Served by `hoardfs stats` (control socket) and, with
// `hoardfs mount --metrics HOST:PORT`, as Prometheus text on GET /metrics.
import { createServer, type Server } from 'node:http';
import type { FsOps } from '../fs/types.ts';

/** Bucket i holds latencies in [2^(i-1), 2^i) microseconds (bucket 0: below 1 us). */
const BUCKETS = 32;

export class Histogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  sumUs = 0;

  record(us: number): void {
    const b = us < 1 ? 0 : Math.min(BUCKETS - 1, 32 - Math.clz32(us));
    this.counts[b]!++;
    this.count++;
    this.sumUs += us;
  }

  /** Upper bound (us) of the bucket holding quantile q: within a factor 2 of the true value. */
  quantile(q: number): number {
    if (!this.count) return 0;
    const want = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= want) return 2 ** i;
    }
    return 2 ** (BUCKETS - 1);
  }
}

/** Operations with their own histogram; everything else is counted under "other". */
export const TIMED_OPS = ['read', 'write', 'getattr', 'lookup', 'fsync', 'create', 'open', 'release', 'flush', 'setattr', 'unlink', 'readdir', 'mkdir', 'rename', 'other'] as const;
export type TimedOp = (typeof TIMED_OPS)[number];

export interface LiveCounters {
  bytesRead: number;
  bytesWritten: number;
  reads: number;
  writes: number;
  cacheReads: number;
  cacheHits: number;
}

export class Metrics {
  readonly hist: Record<string, Histogram> = Object.fromEntries(TIMED_OPS.map((o) => [o, new Histogram()]));
  private samples: { t: number; c: LiveCounters }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly counters: () => LiveCounters,
    private readonly windowMs = 5000,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 1000);
    this.timer.unref();
  }

  private sample(): void {
    const now = performance.now();
    this.samples.push({ t: now, c: this.counters() });
    while (this.samples.length > 2 && now - this.samples[1]!.t >= this.windowMs) this.samples.shift();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Bytes and operations per second over the last ~5 s. */
  throughput(): { readBytesPerSec: number; writeBytesPerSec: number; readsPerSec: number; writesPerSec: number } {
    const now = performance.now();
    const c = this.counters();
    const old = this.samples[0]!;
    const dt = Math.max(0.001, (now - old.t) / 1000);
    return {
      readBytesPerSec: (c.bytesRead - old.c.bytesRead) / dt,
      writeBytesPerSec: (c.bytesWritten - old.c.bytesWritten) / dt,
      readsPerSec: (c.reads - old.c.reads) / dt,
      writesPerSec: (c.writes - old.c.writes) / dt,
    };
  }

  latency(): Record<string, { count: number; p50us: number; p99us: number; meanUs: number }> {
    const out: Record<string, { count: number; p50us: number; p99us: number; meanUs: number }> = {};
    for (const op of TIMED_OPS) {
      const h = this.hist[op]!;
      out[op] = { count: h.count, p50us: h.quantile(0.5), p99us: h.quantile(0.99), meanUs: h.count ? h.sumUs / h.count : 0 };
    }
    return out;
  }

  /** Prometheus text exposition format 0.0.4. */
  prometheus(extra: Record<string, number> = {}): string {
    const c = this.counters();
    const lines: string[] = [];
    const counter = (name: string, help: string, v: number) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${v}`);
    const gauge = (name: string, help: string, v: number) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${v}`);
    counter('hoardfs_read_bytes_total', 'Bytes returned by read requests.', c.bytesRead);
    counter('hoardfs_written_bytes_total', 'Bytes accepted by write requests.', c.bytesWritten);
    counter('hoardfs_chunk_cache_lookups_total', 'Chunk reads asked of the chunk cache.', c.cacheReads);
    counter('hoardfs_chunk_cache_hits_total', 'Chunk reads served from the chunk cache.', c.cacheHits);
    gauge('hoardfs_chunk_cache_hit_ratio', 'Chunk cache hits / lookups since mount.', c.cacheReads ? c.cacheHits / c.cacheReads : 0);
    const t = this.throughput();
    gauge('hoardfs_read_bytes_per_second', 'Read throughput over the last 5 s.', t.readBytesPerSec);
    gauge('hoardfs_write_bytes_per_second', 'Write throughput over the last 5 s.', t.writeBytesPerSec);
    for (const [k, v] of Object.entries(extra)) gauge(`hoardfs_${k.replace(/[A-Z]/g, (m) => '_' + m.toLowerCase())}`, k, v);
    lines.push('# HELP hoardfs_op_latency_seconds Latency of filesystem requests, from arrival in the daemon to the reply.', '# TYPE hoardfs_op_latency_seconds histogram');
    for (const op of TIMED_OPS) {
      const h = this.hist[op]!;
      let cum = 0;
      for (let i = 0; i < BUCKETS; i++) {
        cum += h.counts[i]!;
        if (i < 26) lines.push(`hoardfs_op_latency_seconds_bucket{op="${op}",le="${2 ** i / 1e6}"} ${cum}`);
      }
      lines.push(`hoardfs_op_latency_seconds_bucket{op="${op}",le="+Inf"} ${h.count}`);
      lines.push(`hoardfs_op_latency_seconds_sum{op="${op}"} ${h.sumUs / 1e6}`);
      lines.push(`hoardfs_op_latency_seconds_count{op="${op}"} ${h.count}`);
    }
    return lines.join('\n') + '\n';
  }
}

const OP_OF: Record<string, TimedOp> = Object.fromEntries(TIMED_OPS.map((o) => [o, o]));

/**
 * An FsOps that forwards every call to `fs` and records how long its answer took (at once or
 * through a promise). Methods keep their `this`; forget, init and destroy are passed through untimed.
 */
export function instrument(fs: FsOps, m: Metrics): FsOps {
  const wrapped: Record<string, unknown> = {};
  const target = fs as unknown as Record<string, unknown>;
  const names = new Set<string>();
  for (let p: object | null = fs; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) names.add(k);
  }
  for (const name of names) {
    if (name === 'constructor') continue;
    const f = target[name];
    if (typeof f !== 'function') continue;
    if (name === 'forget' || name === 'init' || name === 'destroy') {
      wrapped[name] = (f as (...a: unknown[]) => unknown).bind(fs);
      continue;
    }
    const h = m.hist[OP_OF[name] ?? 'other']!;
    wrapped[name] = (...args: unknown[]) => {
      const t0 = performance.now();
      let r: unknown;
      try {
        r = (f as (...a: unknown[]) => unknown).apply(fs, args);
      } catch (e) {
        h.record((performance.now() - t0) * 1000);
        throw e;
      }
      if (r instanceof Promise) {
        const done = () => h.record((performance.now() - t0) * 1000);
        r.then(done, done);
      } else h.record((performance.now() - t0) * 1000);
      return r;
    };
  }
  return wrapped as unknown as FsOps;
}

/** Serves GET /metrics (Prometheus text) on host:port. */
export function serveMetrics(listen: string, body: () => string): Promise<Server> {
  const i = listen.lastIndexOf(':');
  const host = i > 0 ? listen.slice(0, i).replace(/^\[|\]$/g, '') : '127.0.0.1';
  const port = Number(i >= 0 ? listen.slice(i + 1) : listen);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return Promise.reject(new Error(`--metrics: '${listen}' is not HOST:PORT`));
  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url === '/')) {
      let text: string;
      try {
        text = body();
      } catch (e) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String((e as Error).message));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text);
    } else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.unref();
      resolve(server);
    });
  });
}
