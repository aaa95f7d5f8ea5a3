import type { Volume } from './volume.ts';

export interface VolumeStats {
  files: number;
  directories: number;
  logicalBytes: number;
  referencedBytes: number;
  uniqueBytes: number;
  storedBytes: number;
  chunks: number;
  dedupRatio: number;
  segments: number;
  capacityBytes: number;
  freeBytes: number;
  mounted: boolean;
  live?: Record<string, number>;
  /** Mounted only: bytes and requests per second over the last ~5 s. */
  throughput?: { readBytesPerSec: number; writeBytesPerSec: number; readsPerSec: number; writesPerSec: number };
  /** Mounted only: request latency per operation (log2 buckets: p50/p99 are bucket upper bounds, within 2x). */
  latency?: Record<string, { count: number; p50us: number; p99us: number; meanUs: number }>;
}

export function volumeStats(v: Volume, mounted = true): VolumeStats {
  const s = v.meta.stats();
  const live: Record<string, number> = mounted
    ? {
        ...v.fs.counters,
        bufferedBytes: v.fs.buffered,
        openFiles: v.fs.openFiles,
        cacheReads: v.store.stats.reads,
        cacheHits: v.store.stats.cacheHits,
        cacheHitRate: v.store.stats.reads ? v.store.stats.cacheHits / v.store.stats.reads : 0,
        rowsWritten: v.store.stats.rowsWritten,
      }
    : {};
  return {
    files: s.files,
    directories: s.directories,
    logicalBytes: s.logicalBytes,
    referencedBytes: s.referencedBytes,
    uniqueBytes: s.uniqueBytes,
    storedBytes: s.storedBytes,
    chunks: s.chunks,
    dedupRatio: s.uniqueBytes ? s.referencedBytes / s.uniqueBytes : 1,
    segments: s.segments,
    capacityBytes: v.raid.rows * v.raid.rowDataBytes,
    freeBytes: v.store.freeRows * v.raid.rowDataBytes,
    mounted,
    ...(mounted ? { live } : {}),
  };
}
