// hoardfs command line. Every command prints one clear line on failure and exits non-zero;
// status-like commands take --json.
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSecret, type KdfParams, type SecretSource } from '../crypto/index.ts';
import type { RaidLevel } from '../raid/index.ts';
import { formatBytes, parse, parseInteger, parseSize, UsageError, type Options } from './args.ts';
import { createVolume, lockHolder, Volume, VolumeError, type Secret } from '../volume/volume.ts';
import { readConfig } from '../volume/config.ts';
import { callControl, readMountRecord } from '../volume/control.ts';
import { mountVolume, mountedAt } from '../volume/daemon.ts';
import { volumeStats, type VolumeStats } from '../volume/stats.ts';
import { commands as moreCommands } from './commands.ts';
import { openOffline, out, secretGetter, secretOptions, viaDaemon } from './common.ts';

const BIN = fileURLToPath(new URL('../../bin/hoardfs.js', import.meta.url));

const LEVELS = [0, 1, 5, 6, 10, 50, 60];

async function mkfs(argv: string[]): Promise<void> {
  const usage =
    'hoardfs mkfs VOLUME [--level 0|1|5|6|10|50|60] [--device FILE]... [--spare FILE]... [--group-size N] [--mirrors 2|3] ' +
    '[--device-size SIZE] [--strip-size SIZE] [--chunk-min SIZE --chunk-avg SIZE --chunk-max SIZE] [--no-encryption] ' +
    '[--passphrase-file FILE | --key-file FILE] [--kdf-memory KiB --kdf-passes N --kdf-parallelism N] [--force]';
  const { values: v, positionals } = parse(
    argv,
    {
      level: { type: 'string' },
      device: { type: 'string', multiple: true },
      spare: { type: 'string', multiple: true },
      'group-size': { type: 'string' },
      mirrors: { type: 'string' },
      'device-size': { type: 'string' },
      'strip-size': { type: 'string' },
      'chunk-min': { type: 'string' },
      'chunk-avg': { type: 'string' },
      'chunk-max': { type: 'string' },
      'no-encryption': { type: 'boolean' },
      'kdf-memory': { type: 'string' },
      'kdf-passes': { type: 'string' },
      'kdf-parallelism': { type: 'string' },
      force: { type: 'boolean' },
      ...secretOptions,
    },
    usage,
    { min: 1, max: 1 },
  );
  const devices = (v.device as string[] | undefined) ?? [];
  const level = v.level !== undefined ? Number(v.level) : devices.length > 1 ? 1 : 0;
  if (!LEVELS.includes(level) || (v.level !== undefined && !/^\d+$/.test(v.level as string))) throw new UsageError(`--level: '${v.level}' is not one of ${LEVELS.join(', ')}`, usage);
  const cipher = v['no-encryption'] ? 'none' : 'aes-256-gcm';
  if (cipher === 'none' && (v['passphrase-file'] || v['key-file'])) throw new UsageError('--no-encryption takes no passphrase or key file', usage);
  let kdf: KdfParams | undefined;
  if (v['kdf-memory'] || v['kdf-passes'] || v['kdf-parallelism']) {
    kdf = {
      type: 'argon2id',
      memoryKiB: parseInteger((v['kdf-memory'] as string) ?? '65536', '--kdf-memory', 8, 4 * 1024 * 1024),
      passes: parseInteger((v['kdf-passes'] as string) ?? '4', '--kdf-passes', 1, 1000),
      parallelism: parseInteger((v['kdf-parallelism'] as string) ?? '1', '--kdf-parallelism', 1, 16),
    };
  }
  const chunker = {
    min: v['chunk-min'] ? parseSize(v['chunk-min'] as string, '--chunk-min') : 16 * 1024,
    avg: v['chunk-avg'] ? parseSize(v['chunk-avg'] as string, '--chunk-avg') : 64 * 1024,
    max: v['chunk-max'] ? parseSize(v['chunk-max'] as string, '--chunk-max') : 256 * 1024,
  };
  const secret =
    cipher === 'none'
      ? undefined
      : await readSecret({ passphraseFile: v['passphrase-file'] as string | undefined, keyFile: v['key-file'] as string | undefined, prompt: 'New passphrase: ', confirm: true });
  const dir = positionals[0];
  await createVolume({
    dir,
    cipher,
    secret,
    kdf,
    chunker,
    devices,
    spares: (v.spare as string[] | undefined) ?? [],
    deviceSize: v['device-size'] ? parseSize(v['device-size'] as string, '--device-size') : undefined,
    layout: {
      level: level as RaidLevel,
      devices: Math.max(1, devices.length),
      groupSize: v['group-size'] ? parseInteger(v['group-size'] as string, '--group-size', 2, 255) : undefined,
      mirrors: v.mirrors ? parseInteger(v.mirrors as string, '--mirrors', 2, 3) : undefined,
      stripSize: v['strip-size'] ? parseSize(v['strip-size'] as string, '--strip-size') : undefined,
    },
    force: !!v.force,
    log: (m) => process.stderr.write(`hoardfs: ${m}\n`),
  });
  const c = readConfig(resolve(dir));
  out(`created volume ${dir}: RAID ${c.layout.level} over ${c.devices.length} device(s), ${cipher === 'none' ? 'not encrypted' : 'encrypted (AES-256-GCM)'}`);
}

async function mount(argv: string[]): Promise<void> {
  const usage = 'hoardfs mount VOLUME MOUNTPOINT [-f|--foreground] [-o OPTIONS] [--metrics HOST:PORT] [--passphrase-file FILE | --key-file FILE]';
  const { values: v, positionals } = parse(
    argv,
    { foreground: { type: 'boolean', short: 'f' }, o: { type: 'string', short: 'o', multiple: true }, metrics: { type: 'string' }, 'daemon-child': { type: 'boolean' }, ...secretOptions },
    usage,
    { min: 2, max: 2 },
  );
  const [dir, mnt] = positionals;
  const fuseOptions = ((v.o as string[] | undefined) ?? []).flatMap((s) => s.split(',')).filter(Boolean);
  if (v.foreground || v['daemon-child']) {
    const child = !!v['daemon-child'];
    let secretFromParent: Secret | undefined;
    if (child) {
      secretFromParent = await new Promise<Secret | undefined>((res) => process.once('message', (m: { secret?: string; kind?: 'passphrase' | 'keyfile' }) => res(m.secret ? { secret: Buffer.from(m.secret, 'base64'), kind: m.kind ?? 'passphrase' } : undefined)));
    }
    let m;
    try {
      m = await mountVolume({
        dir,
        mountpoint: mnt,
        fuseOptions,
        metrics: v.metrics as string | undefined,
        getSecret: secretFromParent ? async () => secretFromParent! : secretGetter(v),
        handlers: (await import('./commands.ts')).daemonHandlers,
      });
    } catch (e) {
      if (child) process.send?.({ error: (e as Error).message });
      throw e;
    }
    const stop = () => void m.unmount().catch((e) => process.stderr.write(`hoardfs: unmount failed: ${(e as Error).message}\n`));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (child) {
      process.send?.({ ready: true });
      process.disconnect?.();
    } else process.stderr.write(`hoardfs: ${dir} mounted at ${mnt} (Ctrl-C to unmount)\n`);
    await m.closed;
    process.exit(0);
  }
  // Background: read the secret here (the terminal is ours), hand it to a detached daemon.
  const cfg = readConfig(resolve(dir));
  let secret: Secret | undefined;
  if (cfg.cipher !== 'none') secret = await secretGetter(v)();
  const log = openSync(join(resolve(dir), 'daemon.log'), 'a', 0o600);
  const args = [BIN, 'mount', dir, mnt, '--daemon-child', ...fuseOptions.flatMap((x) => ['-o', x]), ...(v.metrics ? ['--metrics', v.metrics as string] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log, 'ipc'] });
  const result = await new Promise<{ ready?: boolean; error?: string }>((res) => {
    child.once('message', (m) => res(m as { ready?: boolean; error?: string }));
    child.once('exit', (code) => res({ error: `the mount daemon exited with code ${code} (see ${join(dir, 'daemon.log')})` }));
    child.send({ secret: secret?.secret.toString('base64'), kind: secret?.kind });
  });
  secret?.secret.fill(0);
  if (result.error) throw new VolumeError(result.error);
  child.unref();
  child.disconnect();
  out(`mounted ${dir} at ${mnt}`);
}

async function umount(argv: string[]): Promise<void> {
  const usage = 'hoardfs umount MOUNTPOINT';
  const { positionals } = parse(argv, {}, usage, { min: 1, max: 1 });
  const mnt = resolve(positionals[0]);
  const m = mountedAt(mnt);
  if (!m) throw new VolumeError(`${positionals[0]} is not mounted`);
  if (!m.source.startsWith('hoardfs:')) throw new VolumeError(`${positionals[0]} is not a hoardfs mount (it is ${m.fstype})`);
  const rec = readMountRecord(m.source.slice('hoardfs:'.length));
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (rec && alive(rec.pid)) {
    // The kernel lets go first (a busy mount says so here), then the daemon stores what it
    // buffered and exits; umount returns only when that is done.
    const r = await runCapture('fusermount3', ['-u', mnt]);
    if (r.code !== 0) throw new VolumeError(`cannot unmount ${positionals[0]}: ${r.stderr.trim().replace(/^fusermount3: /, '') || 'fusermount3 failed'}`);
    for (let i = 0; i < 6000 && alive(rec.pid); i++) await new Promise((res) => setTimeout(res, 50));
    if (alive(rec.pid)) throw new VolumeError(`the daemon (process ${rec.pid}) did not finish storing buffered data`);
    return;
  }
  // The daemon is gone (crashed or killed): the kernel mount is all that is left.
  const r = await runCapture('fusermount3', ['-u', mnt]);
  if (r.code !== 0 && (await runCapture('fusermount3', ['-uz', mnt])).code !== 0) throw new VolumeError(`cannot unmount ${mnt}: ${r.stderr.trim()}`);
}

function runCapture(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((res) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => res({ code: code ?? 1, stderr }));
    c.on('error', (e) => res({ code: 127, stderr: e.message }));
  });
}


function printStats(s: VolumeStats): void {
  out(`files:          ${s.files} (${s.directories} directories)`);
  out(`logical bytes:  ${formatBytes(s.logicalBytes)} (${s.logicalBytes})`);
  out(`stored bytes:   ${formatBytes(s.storedBytes)} (${s.storedBytes})`);
  out(`chunks:         ${s.chunks}`);
  out(`dedup ratio:    ${s.dedupRatio.toFixed(2)}`);
  out(`capacity:       ${formatBytes(s.capacityBytes)}, free ${formatBytes(s.freeBytes)}`);
  if (s.live) {
    const l = s.live;
    out(`mounted:        yes; ${l.writes} writes, ${l.reads} reads, cache hit rate ${(100 * l.cacheHitRate).toFixed(1)}%, ${formatBytes(l.bufferedBytes)} buffered`);
    if (s.throughput) {
      const t = s.throughput;
      out(`throughput:     read ${formatBytes(t.readBytesPerSec)}/s (${t.readsPerSec.toFixed(0)} req/s), write ${formatBytes(t.writeBytesPerSec)}/s (${t.writesPerSec.toFixed(0)} req/s), last 5 s`);
    }
    if (s.latency) {
      out('latency:        operation     count      p50      p99   (upper bounds of log2 buckets)');
      const us = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(1)} s` : x >= 1000 ? `${(x / 1000).toFixed(x >= 1e4 ? 0 : 1)} ms` : `${x} us`);
      for (const op of ['read', 'write', 'getattr', 'lookup', 'fsync', 'create', 'open', 'release']) {
        const h = s.latency[op];
        if (h) out(`                ${op.padEnd(10)} ${String(h.count).padStart(8)} ${us(h.p50us).padStart(8)} ${us(h.p99us).padStart(8)}`);
      }
    }
  } else out('mounted:        no');
}

async function stats(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { json: { type: 'boolean' }, ...secretOptions }, 'hoardfs stats VOLUME [--json]', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  let s = (await viaDaemon(dir, 'stats')) as VolumeStats | undefined;
  if (!s) {
    const vol = await openOffline(dir, v, { lock: false, readonly: true });
    try {
      s = volumeStats(vol, false);
    } finally {
      await vol.close();
    }
  }
  if (v.json) out(JSON.stringify(s));
  else printStats(s);
}

async function gc(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { json: { type: 'boolean' }, ...secretOptions }, 'hoardfs gc VOLUME [--json]', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  let r = (await viaDaemon(dir, 'gc')) as { chunks: number; bytes: number; rows: number } | undefined;
  if (!r) {
    const vol = await openOffline(dir, v);
    try {
      r = await vol.gc();
    } finally {
      await vol.close();
    }
  }
  if (v.json) out(JSON.stringify(r));
  else out(`reclaimed ${r.chunks} chunks (${formatBytes(r.bytes)}), ${r.rows} rows freed`);
}

async function fsck(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { repair: { type: 'boolean' }, json: { type: 'boolean' }, ...secretOptions }, 'hoardfs fsck VOLUME [--repair] [--json]', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  if (lockHolder(dir)) throw new VolumeError(`volume ${positionals[0]} is mounted; unmount it before fsck`);
  const vol = await openOffline(dir, v, { readonly: !v.repair });
  let r;
  try {
    r = await (await import('../volume/fsck.ts')).fsck(vol, !!v.repair);
  } finally {
    await vol.close();
  }
  if (v.json) out(JSON.stringify(r));
  else {
    for (const p of r.problems) out(`problem: ${p}`);
    out(r.problems.length ? `${r.problems.length} problems found${v.repair ? `, ${r.repaired} repaired` : '; run with --repair to fix them'}` : 'clean: no problems found');
  }
  if (r.problems.length && !v.repair) process.exitCode = 1;
}

async function restoreMetadataCmd(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { json: { type: 'boolean' }, ...secretOptions }, 'hoardfs restore-metadata VOLUME [--json]', { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  if (lockHolder(dir)) throw new VolumeError(`volume ${positionals[0]} is mounted; unmount it first`);
  const { restoreMetadata } = await import('../volume/snapshot.ts');
  const r = await restoreMetadata(dir, secretGetter(v));
  if (v.json) return out(JSON.stringify(r));
  out(`restored the metadata from snapshot ${r.snapshotGeneration} taken at ${r.snapshotCreatedAt}`);
  if (r.movedAside) out(`the previous database was moved to ${r.movedAside}`);
  if (r.previousDatabase === 'readable' && r.lost) {
    const n = r.lost.added.length + r.lost.removed.length + r.lost.changed.length;
    if (!n) out('nothing changed after the snapshot: nothing was lost');
    else {
      out(`changes made after the snapshot, now lost (${n}):`);
      for (const p of r.lost.added) out(`  created after the snapshot: ${p}`);
      for (const p of r.lost.changed) out(`  changed after the snapshot: ${p}`);
      for (const p of r.lost.removed) out(`  deleted after the snapshot (back now): ${p}`);
    }
  } else {
    out(`the previous database was ${r.previousDatabase}: any change made after ${r.snapshotCreatedAt} is lost and cannot be listed`);
  }
}

const COMMANDS: Record<string, (argv: string[]) => Promise<void>> = { mkfs, mount, umount, unmount: umount, stats, gc, fsck, 'restore-metadata': restoreMetadataCmd, ...moreCommands };

const HELP = `usage: hoardfs COMMAND [ARGS]

  mkfs VOLUME [options]            create a volume (encrypted by default)
  mount VOLUME MOUNTPOINT [-f]     mount it (in the background unless -f)
  umount MOUNTPOINT                store everything and unmount
  stats VOLUME [--json]            files, bytes, chunks, dedup ratio
  status VOLUME [--json]           RAID state of each device
  gc VOLUME                        reclaim unreferenced chunks
  fsck VOLUME [--repair]           check (and fix) the metadata
  scrub VOLUME                     verify every chunk and stripe, repair from redundancy
  replace VOLUME OLD NEW           rebuild a device onto a new file
  keyslot list|add|remove|change VOLUME
  header dump|backup|restore VOLUME [FILE]
  reencrypt VOLUME                 rotate the master key
  restore-metadata VOLUME          rebuild the database from the newest snapshot

Run 'hoardfs COMMAND --help' for a command's options.`;

export async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(HELP);
    if (!cmd) process.exitCode = 2;
    return;
  }
  const f: ((argv: string[]) => Promise<void>) | undefined = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  try {
    if (!f) throw new UsageError(`unknown command '${cmd}'`);
    await f(rest);
  } catch (e) {
    const err = e as Error;
    if (err instanceof UsageError) {
      process.stderr.write(`hoardfs ${f ? cmd + ': ' : ''}${err.message}\n${err.usage ? `usage: ${err.usage}\n` : HELP + '\n'}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`hoardfs ${cmd}: ${err.message}\n`);
      if (process.env.HOARDFS_DEBUG) process.stderr.write(`${err.stack}\n`);
      process.exitCode = 1;
    }
  }
}

const invokedDirectly = process.argv[1] && resolve(process.argv[1]) === BIN;
if (invokedDirectly) {
  await main(process.argv.slice(2));
}
