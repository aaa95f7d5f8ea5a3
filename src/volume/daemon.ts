// The mount daemon: opens the volume, mounts it through FUSE, serves the control socket, and on
// unmount or SIGINT/SIGTERM stores everything buffered before it exits.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Server } from 'node:net';
import { mountFs, type FuseMount } from '../fuse/index.ts';
import { Volume, VolumeError, updateLock, type Secret } from './volume.ts';
import { readConfig } from './config.ts';
import { removeMountRecord, serveControl, writeMountRecord, type Handler } from './control.ts';
import { volumeStats } from './stats.ts';
import { resumeRebuild, saveMembership } from './admin.ts';
import { Metrics, instrument, serveMetrics } from './metrics.ts';

export interface MountOptions {
  dir: string;
  mountpoint: string;
  getSecret?: () => Promise<Secret>;
  fuseOptions?: string[];
  log?: (msg: string) => void;
  /** Extra control commands (status, scrub, ...) registered by other modules. */
  handlers?: (vol: Volume) => Record<string, Handler>;
  /** HOST:PORT to serve Prometheus metrics on (GET /metrics). */
  metrics?: string;
}

// Kernel cache lifetimes (seconds) for entries and attributes. Every change to the volume goes
// through this daemon, which answers with fresh attributes and the kernel invalidates what it
// changed itself, so a longer lifetime only saves lookup/getattr round trips.
const ENTRY_TIMEOUT = 10;
const ATTR_TIMEOUT = 10;

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

export function mountedAt(path: string): { source: string; fstype: string } | undefined {
  const target = resolve(path);
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  let found: { source: string; fstype: string } | undefined;
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    if (parts.length < 10) continue;
    const sep = parts.indexOf('-');
    if (unescapeMountinfo(parts[4]) === target) found = { fstype: parts[sep + 1], source: unescapeMountinfo(parts[sep + 2]) };
  }
  return found;
}

export function checkMountpoint(mountpoint: string, allowNonEmpty = false): string {
  const mnt = resolve(mountpoint);
  if (!existsSync(mnt)) throw new VolumeError(`mountpoint ${mountpoint} does not exist`);
  if (mountedAt(mnt)) throw new VolumeError(`mountpoint ${mountpoint} is already mounted`);
  if (!statSync(mnt).isDirectory()) throw new VolumeError(`mountpoint ${mountpoint} is not a directory`);
  if (!allowNonEmpty && readdirSync(mnt).length) throw new VolumeError(`mountpoint ${mountpoint} is not empty`);
  return mnt;
}

export interface RunningMount {
  volume: Volume;
  fuse: FuseMount;
  control: Server;
  /** Resolves when the filesystem is unmounted and the volume closed. */
  closed: Promise<void>;
  unmount(): Promise<void>;
}

export async function mountVolume(o: MountOptions): Promise<RunningMount> {
  const log = o.log ?? ((m: string) => process.stderr.write(`hoardfs: ${m}\n`));
  const dir = resolve(o.dir);
  readConfig(dir); // a clear error before anything else
  const opts = [...(o.fuseOptions ?? [])];
  const nonEmpty = opts.includes('nonempty');
  const mnt = checkMountpoint(o.mountpoint, nonEmpty);
  const volume = await Volume.open({ dir, getSecret: o.getSecret, lock: true, log, fs: { entryTimeout: ENTRY_TIMEOUT, attrTimeout: ATTR_TIMEOUT } });
  if (volume.raid.degraded) log(`volume is DEGRADED: ${volume.raid.status().filter((d) => d.state !== 'ONLINE' && d.state !== 'SPARE').map((d) => `${d.path} ${d.state}`).join(', ')}`);
  const volumeId = volume.config.volumeId;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let closing: Promise<void> | null = null;
  let fuse: FuseMount | undefined;
  let upkeepTimer: NodeJS.Timeout | undefined;
  const upkeepEveryMs = Number(process.env.HOARDFS_UPKEEP_MS ?? 30_000);
  const snapshotEveryMs = Number(process.env.HOARDFS_SNAPSHOT_MS ?? 300_000);
  let control: Server | undefined;
  const shutdown = (): Promise<void> => {
    closing ??= (async () => {
      control?.close();
      metricsServer?.close();
      metrics.stop();
      clearInterval(upkeepTimer);
      try {
        await volume.close();
      } catch (e) {
        log(`closing the volume failed: ${(e as Error).message}`);
      }
      removeMountRecord(volumeId);
      resolveClosed();
    })();
    return closing;
  };
  const metrics = new Metrics(() => ({
    bytesRead: volume.fs.counters.bytesRead,
    bytesWritten: volume.fs.counters.bytesWritten,
    reads: volume.fs.counters.reads,
    writes: volume.fs.counters.writes,
    cacheReads: volume.store.stats.reads,
    cacheHits: volume.store.stats.cacheHits,
  }));
  let metricsServer: import('node:http').Server | undefined;
  try {
    fuse = await mountFs(instrument(volume.fs, metrics), mnt, {
      attrTimeout: ATTR_TIMEOUT,
      // Every change to the tree comes through this mount, so the kernel may remember misses.
      negativeTimeout: ENTRY_TIMEOUT,
      readAheadKb: 1024,
      posixAcl: true,
      // Filesystem.write copies what it keeps before it returns or waits.
      borrowWrites: true,
      // One request in three during small-file work was this lookup; C answers it until a file
      // capability exists on the volume (setcap passing through switches it back to the daemon).
      noSecurityCapability: !volume.meta.anyXattrNamed(Buffer.from('security.capability')),
      options: ['fsname=hoardfs:' + volumeId, 'subtype=hoardfs', 'default_permissions', 'allow_other', ...opts.filter((x) => x !== 'nonempty')],
      onUnmount: () => void shutdown(),
    });
  } catch (e) {
    metrics.stop();
    await volume.close().catch(() => {});
    throw new VolumeError(`mounting ${mountpoint(o)} failed: ${(e as Error).message}`);
  }
  if (o.metrics) {
    try {
      metricsServer = await serveMetrics(o.metrics, () => metrics.prometheus({ bufferedBytes: volume.fs.buffered, openFiles: volume.fs.openFiles, freeBytes: volume.store.freeRows * volume.raid.rowDataBytes }));
    } catch (e) {
      log(`metrics endpoint ${o.metrics} not served: ${(e as Error).message}`);
    }
  }
  updateLock(dir, { pid: process.pid, mountpoint: mnt });
  writeMountRecord({ pid: process.pid, dir, mountpoint: mnt, volumeId });
  const handlers: Record<string, Handler> = {
    stats: async () => ({ ...volumeStats(volume), throughput: metrics.throughput(), latency: metrics.latency() }),
    gc: async () => volume.gc(),
    sync: async () => volume.fs.sync(),
    ...(o.handlers?.(volume) ?? {}),
  };
  control = serveControl(volumeId, handlers);
  // Background upkeep: reclaim garbage and snapshot the metadata while something changed.
  const upkeep = setInterval(() => {
    void (async () => {
      try {
        if (volume.meta.garbageChunks() > 0) await volume.gc();
        if (Date.now() - lastSnapshot >= snapshotEveryMs) {
          lastSnapshot = Date.now();
          await volume.snapshot();
        }
      } catch (e) {
        log(`background upkeep failed: ${(e as Error).message}`);
      }
    })();
  }, upkeepEveryMs);
  upkeep.unref();
  upkeepTimer = upkeep;
  let lastSnapshot = Date.now();
  if (volume.raid.rebuildPending) {
    log('resuming the interrupted rebuild in the background');
    void resumeRebuild(volume).then(
      () => log('rebuild complete'),
      (e) => log(`rebuild failed: ${(e as Error).message}`),
    );
  }
  volume.raid.onFault = () => {
    saveMembership(volume);
    if (volume.raid.rebuildPending) void resumeRebuild(volume).catch((e) => log(`rebuild onto the spare failed: ${(e as Error).message}`));
  };
  const f = fuse;
  return {
    volume,
    fuse: f,
    control,
    closed,
    unmount: async () => {
      // Buffered data is stored before the kernel lets go, so nothing is lost if the unmount is lazy.
      await volume.fs.sync().catch((e) => log(`flush before unmount failed: ${(e as Error).message}`));
      try {
        await f.unmount();
      } catch (e) {
        // Busy (open files, a shell inside): detach now; the kernel finishes when they close.
        log(`unmount: ${(e as Error).message}; detaching lazily`);
        await f.unmount({ lazy: true });
      }
      await shutdown();
    },
  };
}

function mountpoint(o: MountOptions): string {
  return o.mountpoint;
}
