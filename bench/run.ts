// The side-by-side benchmark (issue 6): hoardfs (realistic and plain), the passthrough over the
// same FUSE binding, gocryptfs, zfs-fuse (when installed) and the backing tmpfs, measured in one
// run, alternating systems inside each repetition, median of the repetitions.
//
//   bash scripts/bench.sh [--quick] [--reps N] [--size MiB] [--only a,b] [--skip a,b] [--no-micro] [--rss-gib N]
//
// Everything lives under one fresh tmpfs mounted at $HOARDFS_BENCH_DIR (default /tmp/hoardfs-bench).
// hoardfs volumes are created with HOARDFS_KDF (default 64,1,1 here) so that mkfs and mount stay
// fast: the key derivation only runs at unlock and does not touch the data path.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin/hoardfs.js');
const argv = process.argv.slice(2);
const flag = (n: string) => argv.includes(n);
const opt = (n: string, d: string) => {
  const i = argv.indexOf(n);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : d;
};
const QUICK = flag('--quick');
const REPS = Number(opt('--reps', QUICK ? '1' : '3'));
const SIZE_MIB = Number(opt('--size', '1024'));
const SIZE = SIZE_MIB * 1024 * 1024;
const RAND_SECS = Number(opt('--rand-secs', QUICK ? '5' : '10'));
const SMALL_FILES = Number(opt('--small-files', '10000'));
const RSS_GIB = Number(opt('--rss-gib', '0'));
const WORK = process.env.HOARDFS_BENCH_DIR ?? '/tmp/hoardfs-bench';
const KDF = process.env.HOARDFS_KDF ?? '64,1,1';
const ENV = { ...process.env, HOARDFS_KDF: KDF };
const CLK_TCK = 100;

function log(m: string): void {
  process.stderr.write(`bench: ${m}\n`);
}

function sh(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; allowFail?: boolean; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: o.cwd, env: o.env ?? ENV, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, input: o.input });
  if (r.status !== 0 && !o.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.error?.message}`);
  return r.stdout ?? '';
}

function hoardfs(args: string[]): string {
  return sh(process.execPath, [BIN, ...args]);
}

function isMounted(p: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === resolve(p));
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

function dropCaches(): void {
  sh('sync', []);
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch (e) {
    log(`cannot drop caches: ${(e as Error).message}`);
  }
}

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------- systems

interface System {
  name: string;
  /** Creates the backing store and mounts; returns the directory the workloads run in. */
  setup(base: string): Promise<string>;
  /** Unmounts and mounts again (cold caches). */
  remount(): Promise<void>;
  teardown(): Promise<void>;
  /** The process doing the work, when there is one (for RSS and CPU). */
  pid?(): number | undefined;
  stats?(): { storedBytes: number } | undefined;
}

function hoardfsSystem(name: string, realistic: boolean): System {
  let vol = '';
  let mnt = '';
  let pass = '';
  const mount = async () => {
    hoardfs(['mount', vol, mnt, ...(realistic ? ['--passphrase-file', pass] : [])]);
  };
  return {
    name,
    async setup(base) {
      vol = join(base, 'vol');
      mnt = join(base, 'mnt');
      pass = join(base, 'pass');
      mkdirSync(mnt, { recursive: true });
      writeFileSync(pass, 'bench passphrase\n');
      if (realistic) {
        const devs = Array.from({ length: 6 }, (_, i) => ['--device', join(vol, `d${i}.img`)]).flat();
        hoardfs(['mkfs', vol, '--level', '6', ...devs, '--device-size', '8G', '--passphrase-file', pass]);
      } else hoardfs(['mkfs', vol, '--no-encryption', '--device-size', '16G']);
      await mount();
      return mnt;
    },
    async remount() {
      hoardfs(['umount', mnt]);
      await mount();
    },
    async teardown() {
      if (isMounted(mnt)) hoardfs(['umount', mnt]);
    },
    pid() {
      try {
        return (JSON.parse(readFileSync(join(vol, 'lock'), 'utf8')) as { pid: number }).pid;
      } catch {
        return undefined;
      }
    },
    stats() {
      return JSON.parse(hoardfs(['stats', vol, '--json'])) as { storedBytes: number };
    },
  };
}

async function waitMounted(p: string, child?: ChildProcess): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (isMounted(p)) return;
    if (child && child.exitCode !== null) throw new Error(`mount process exited with ${child.exitCode}`);
    await sleep(25);
  }
  throw new Error(`${p} did not get mounted`);
}

async function fuserUnmount(mnt: string, child?: ChildProcess): Promise<void> {
  if (isMounted(mnt)) sh('fusermount3', ['-u', mnt], { allowFail: true });
  for (let i = 0; i < 400 && isMounted(mnt); i++) await sleep(25);
  if (child && child.exitCode === null) {
    await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
  }
}

function passthroughSystem(): System {
  let mnt = '';
  let backing = '';
  let child: ChildProcess | undefined;
  const mount = async () => {
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/passthrough.ts'), backing, mnt], { stdio: ['ignore', 'ignore', 'inherit'], cwd: ROOT });
    await waitMounted(mnt, child);
  };
  return {
    name: 'passthrough',
    async setup(base) {
      backing = join(base, 'backing');
      mnt = join(base, 'mnt');
      mkdirSync(backing, { recursive: true });
      mkdirSync(mnt, { recursive: true });
      await mount();
      return mnt;
    },
    async remount() {
      await fuserUnmount(mnt, child);
      await mount();
    },
    async teardown() {
      await fuserUnmount(mnt, child);
    },
    pid: () => child?.pid,
  };
}

function gocryptfsSystem(): System {
  let mnt = '';
  let cipher = '';
  let pass = '';
  const mount = async () => {
    sh('gocryptfs', ['-q', '-passfile', pass, cipher, mnt]);
    await waitMounted(mnt);
  };
  return {
    name: 'gocryptfs',
    async setup(base) {
      cipher = join(base, 'cipher');
      mnt = join(base, 'mnt');
      pass = join(base, 'pass');
      mkdirSync(cipher, { recursive: true });
      mkdirSync(mnt, { recursive: true });
      writeFileSync(pass, 'bench passphrase\n');
      // -scryptn 10: fast setup, like HOARDFS_KDF for hoardfs; the data path is the same.
      sh('gocryptfs', ['-q', '-init', '-scryptn', '10', '-passfile', pass, cipher]);
      await mount();
      return mnt;
    },
    async remount() {
      await fuserUnmount(mnt);
      await mount();
    },
    async teardown() {
      await fuserUnmount(mnt);
    },
    pid() {
      const out = sh('pgrep', ['-f', `gocryptfs.*${cipher}`], { allowFail: true }).trim().split('\n')[0];
      return out ? Number(out) : undefined;
    },
  };
}

function zfsSystem(): System {
  let mnt = '';
  let files: string[] = [];
  const pool = 'hoardbench';
  return {
    name: 'zfs-fuse',
    async setup(base) {
      mnt = join(base, 'mnt');
      mkdirSync(mnt, { recursive: true });
      if (!sh('pgrep', ['-x', 'zfs-fuse'], { allowFail: true }).trim()) {
        sh('zfs-fuse', ['--pidfile', join(WORK, 'zfs-fuse.pid')]);
        // The daemon takes a moment to open its socket; a fixed 1 s was not always enough.
        for (let i = 0; i < 60 && spawnSync('zpool', ['list'], { env: ENV }).status !== 0; i++) await sleep(250);
      }
      files = Array.from({ length: 6 }, (_, i) => join(base, `z${i}.img`));
      for (const f of files) sh('truncate', ['-s', '2G', f]);
      // A pool left by an interrupted run would make the create fail.
      sh('zpool', ['destroy', '-f', pool], { allowFail: true });
      sh('zpool', ['create', '-f', '-m', mnt, pool, 'raidz2', ...files]);
      sh('zfs', ['set', 'dedup=on', pool]);
      return mnt;
    },
    async remount() {
      sh('zpool', ['export', pool]);
      sh('zpool', ['import', '-d', files[0]!.slice(0, files[0]!.lastIndexOf('/')), pool]);
    },
    async teardown() {
      sh('zpool', ['destroy', '-f', pool], { allowFail: true });
    },
    pid() {
      const out = sh('pgrep', ['-x', 'zfs-fuse'], { allowFail: true }).trim().split('\n')[0];
      return out ? Number(out) : undefined;
    },
  };
}

function tmpfsSystem(): System {
  let dir = '';
  return {
    name: 'tmpfs',
    async setup(base) {
      dir = join(base, 'data');
      mkdirSync(dir, { recursive: true });
      return dir;
    },
    async remount() {},
    async teardown() {},
  };
}

// ---------------------------------------------------------------- workloads

interface Inputs {
  src: string; // SIZE bytes of unique data
  tar: string;
  tarFiles: number;
  tree: string; // the tar extracted
  gitRepo: string;
  gitFiles: number;
}

function procCpu(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

function procHwm(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

function fio(args: string[]): { iops: number; bytes: number; secs: number } {
  let out = '';
  const secs = timed(() => {
    out = sh('fio', ['--output-format=json', '--ioengine=psync', '--iodepth=1', '--bs=4k', '--invalidate=1', ...args]);
  });
  const j = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: { io_bytes: number; total_ios: number }; write: { io_bytes: number; total_ios: number } }[] };
  const job = j.jobs[0]!;
  const ios = job.read.total_ios + job.write.total_ios;
  // Wall clock including fio's end_fsync: buffered writes must not look free.
  return { iops: ios / secs, bytes: job.read.io_bytes + job.write.io_bytes, secs };
}

type Result = Record<string, number>;

async function runWorkloads(sys: System, dir: string, inp: Inputs): Promise<Result> {
  const r: Result = {};
  const pid = () => sys.pid?.();
  const mb = (bytes: number, s: number) => bytes / 1e6 / s;
  // 1. sequential write, 1 MiB writes, fsync at the end
  let cpu0 = procCpu(pid());
  let t = timed(() => sh('dd', [`if=${inp.src}`, `of=${join(dir, 'seq1')}`, 'bs=1M', 'conv=fsync', 'status=none']));
  r.seqwrite = mb(SIZE, t);
  r.cpuPerGiBWrite = ((procCpu(pid()) - cpu0) / SIZE) * 1024 ** 3;
  // 2. cold sequential read
  await sys.remount();
  dropCaches();
  t = timed(() => sh('dd', [`if=${join(dir, 'seq1')}`, 'of=/dev/null', 'bs=1M', 'status=none']));
  r.coldread = mb(SIZE, t);
  // 3. the same data again under another name
  cpu0 = procCpu(pid());
  t = timed(() => sh('dd', [`if=${inp.src}`, `of=${join(dir, 'seq2')}`, 'bs=1M', 'conv=fsync', 'status=none']));
  r.dedupwrite = mb(SIZE, t);
  r.cpuPerGiBDedup = ((procCpu(pid()) - cpu0) / SIZE) * 1024 ** 3;
  // 4. 4 KiB random reads and writes in the 1 GiB file, bounded time
  dropCaches();
  const common = [`--filename=${join(dir, 'seq1')}`, `--size=${SIZE}`, '--time_based', `--runtime=${RAND_SECS}`, '--randrepeat=0'];
  r.randread = fio(['--name=rr', '--rw=randread', ...common]).iops;
  const before = sys.stats?.();
  const w = fio(['--name=rw', '--rw=randwrite', '--end_fsync=1', ...common]);
  r.randwrite = w.iops;
  const after = sys.stats?.();
  if (before && after) r.writeAmp = (after.storedBytes - before.storedBytes) / w.bytes;
  // 5. small files
  const sf = JSON.parse(sh(process.execPath, [join(ROOT, 'bench/smallfiles.mjs'), join(dir, 'small'), String(SMALL_FILES)])) as Record<string, number>;
  for (const [k, v] of Object.entries(sf)) r[k] = v;
  // 6. untar
  mkdirSync(join(dir, 'untar'));
  t = timed(() => sh('tar', ['-xf', inp.tar, '-C', join(dir, 'untar')]));
  r.untar = inp.tarFiles / t;
  // 7. git clone
  t = timed(() => sh('git', ['clone', '-q', '--no-hardlinks', inp.gitRepo, join(dir, 'clone')]));
  r.gitclone = inp.gitFiles / t;
  // 8. rsync, then again with nothing changed
  t = timed(() => sh('rsync', ['-a', inp.tree + '/', join(dir, 'rsync') + '/']));
  r.rsync = inp.tarFiles / t;
  t = timed(() => sh('rsync', ['-a', inp.tree + '/', join(dir, 'rsync') + '/']));
  r.rsync2 = inp.tarFiles / t;
  r.peakRss = procHwm(pid());
  return r;
}

// ---------------------------------------------------------------- inputs

function makeInputs(): Inputs {
  const inputs = join(WORK, 'inputs');
  mkdirSync(inputs, { recursive: true });
  const src = join(inputs, 'unique.bin');
  log(`generating ${SIZE_MIB} MiB of unique data`);
  sh('bash', ['-c', `head -c ${SIZE} /dev/urandom > ${src}`]);
  const tar = join(inputs, 'tree.tar');
  log('making the ~10,000-file tree (/usr/include + /usr/share/doc)');
  sh('tar', ['-cf', tar, '-C', '/', 'usr/include', 'usr/share/doc']);
  const tarFiles = sh('tar', ['-tf', tar]).trim().split('\n').length;
  const tree = join(inputs, 'tree');
  mkdirSync(tree);
  sh('tar', ['-xf', tar, '-C', tree]);
  log('making a git repository of ~5,000 files');
  const gitRepo = join(inputs, 'repo');
  mkdirSync(gitRepo);
  const list = sh('bash', ['-c', 'cd / && find usr/include -type f | sort | head -5000']).trim().split('\n');
  writeFileSync(join(inputs, 'gitlist'), list.join('\n') + '\n');
  sh('bash', ['-c', `tar -cf - -C / -T ${join(inputs, 'gitlist')} | tar -xf - -C ${gitRepo}`]);
  const genv = { ...ENV, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
  sh('git', ['init', '-q'], { cwd: gitRepo, env: genv });
  sh('git', ['add', '-A'], { cwd: gitRepo, env: genv });
  sh('git', ['commit', '-q', '-m', 'tree'], { cwd: gitRepo, env: genv });
  sh('git', ['gc', '-q'], { cwd: gitRepo, env: genv });
  return { src, tar, tarFiles, tree, gitRepo, gitFiles: list.length };
}

// ---------------------------------------------------------------- RSS while writing N GiB

async function rssRun(gib: number): Promise<{ peakRss: number; mbps: number; cpuPerGiB: number }> {
  // Devices on disk, not tmpfs: 1.5x the data in RAM would not fit next to everything else.
  const base = join(os.tmpdir(), `hoardfs-bench-rss-${process.pid}`);
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true });
  const sys = hoardfsSystem('rss', true);
  try {
    const dir = await sys.setup(base);
    const pid = sys.pid?.();
    const cpu0 = procCpu(pid);
    // fio refills every buffer: unique data, nothing to dedup.
    const t = timed(() =>
      sh('fio', ['--name=big', `--filename=${join(dir, 'big')}`, '--rw=write', '--bs=1M', `--size=${gib}G`, '--ioengine=psync', '--refill_buffers', '--end_fsync=1', '--output-format=json']),
    );
    return { peakRss: procHwm(pid), mbps: (gib * 1024 ** 3) / 1e6 / t, cpuPerGiB: (procCpu(pid) - cpu0) / gib };
  } finally {
    await sys.teardown();
    rmSync(base, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

const ORDER = ['seqwrite', 'coldread', 'dedupwrite', 'randread', 'randwrite', 'create', 'stat', 'read', 'unlink', 'untar', 'gitclone', 'rsync', 'rsync2'];
const UNIT: Record<string, string> = {
  seqwrite: 'MB/s', coldread: 'MB/s', dedupwrite: 'MB/s', randread: 'IOPS', randwrite: 'IOPS',
  create: 'files/s', stat: 'files/s', read: 'files/s', unlink: 'files/s', untar: 'files/s', gitclone: 'files/s', rsync: 'files/s', rsync2: 'files/s',
};

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  for (const tool of ['fio', 'gocryptfs']) if (!sh('bash', ['-c', `command -v ${tool} || true`]).trim()) log(`${tool} is not installed: its rows stay empty`);
  const haveZfs = !!sh('bash', ['-c', 'command -v zpool || true']).trim();
  if (!haveZfs) log('zfs-fuse is not installed (not installable here): skipped');
  // One fresh tmpfs for everything.
  if (isMounted(WORK)) sh('umount', ['-l', WORK], { allowFail: true });
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  sh('mount', ['-t', 'tmpfs', '-o', `size=${Math.max(8, Math.ceil((SIZE * 8) / 1024 ** 3) + 4)}g`, 'tmpfs', WORK]);
  const only = opt('--only', '').split(',').filter(Boolean);
  const skip = opt('--skip', '').split(',').filter(Boolean);
  const all: System[] = [
    hoardfsSystem('hoardfs', true),
    hoardfsSystem('hoardfs-plain', false),
    passthroughSystem(),
    gocryptfsSystem(),
    ...(haveZfs ? [zfsSystem()] : []),
    tmpfsSystem(),
  ];
  const systems = all.filter((s) => (!only.length || only.includes(s.name)) && !skip.includes(s.name));
  const results: Record<string, Result[]> = {};
  let micro = '';
  try {
    const inp = makeInputs();
    for (let rep = 0; rep < REPS; rep++) {
      // Alternate the order so that no system always runs first (warm CPU, fresh tmpfs).
      const order = rep % 2 ? [...systems].reverse() : systems;
      for (const sys of order) {
        const base = join(WORK, `${sys.name}-${rep}`);
        mkdirSync(base, { recursive: true });
        log(`rep ${rep + 1}/${REPS}: ${sys.name}`);
        try {
          const dir = await sys.setup(base);
          const r = await runWorkloads(sys, dir, inp);
          (results[sys.name] ??= []).push(r);
          log(`  ${ORDER.map((k) => `${k} ${fmt(r[k])}`).join(', ')}`);
        } catch (e) {
          log(`  ${sys.name} failed: ${(e as Error).message.split('\n')[0]}`);
        } finally {
          await sys.teardown().catch((e) => log(`  teardown: ${(e as Error).message}`));
          rmSync(base, { recursive: true, force: true });
        }
      }
    }
    if (!flag('--no-micro')) {
      log('micro-benchmarks');
      micro = sh(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/micro/stages.ts'), ...(QUICK ? ['--quick'] : [])], { cwd: ROOT });
    }
  } finally {
    if (haveZfs) sh('bash', ['-c', `kill $(cat ${join(WORK, 'zfs-fuse.pid')} 2>/dev/null) 2>/dev/null || true`], { allowFail: true });
    await sleep(200);
    sh('umount', ['-l', WORK], { allowFail: true });
  }
  let rss: Awaited<ReturnType<typeof rssRun>> | undefined;
  if (RSS_GIB > 0) {
    log(`hoardfs daemon RSS while writing ${RSS_GIB} GiB`);
    rss = await rssRun(RSS_GIB);
  }

  const med: Record<string, Result> = {};
  for (const [name, rs] of Object.entries(results)) {
    med[name] = {};
    const keys = new Set(rs.flatMap((r) => Object.keys(r)));
    for (const k of keys) med[name]![k] = median(rs.map((r) => r[k]!));
  }
  const names = systems.map((s) => s.name).filter((n) => med[n]);
  const lines: string[] = [];
  lines.push(`| workload | unit | ${names.join(' | ')} | hoardfs / passthrough | hoardfs / gocryptfs |`);
  lines.push(`|---|---|${names.map(() => '---:').join('|')}|---:|---:|`);
  const ratio = (a: string, b: string, k: string) => (med[a]?.[k] && med[b]?.[k] ? med[a]![k]! / med[b]![k]! : NaN);
  for (const k of ORDER) {
    lines.push(`| ${k} | ${UNIT[k]} | ${names.map((n) => fmt(med[n]![k])).join(' | ')} | ${fmt(ratio('hoardfs', 'passthrough', k))} | ${fmt(ratio('hoardfs', 'gocryptfs', k))} |`);
  }
  const extra: string[] = [];
  for (const n of ['hoardfs', 'hoardfs-plain']) {
    const m = med[n];
    if (!m) continue;
    extra.push(
      `- ${n}: daemon peak RSS (VmHWM) ${fmt(m.peakRss! / 1024 ** 2)} MiB; CPU ${fmt(m.cpuPerGiBWrite)} s per GiB written (unique), ${fmt(m.cpuPerGiBDedup)} s per GiB (dedup); ` +
        `write amplification of 4 KiB random writes after fsync ${fmt(m.writeAmp)} (stored bytes delta / bytes written, target <= 4)`,
    );
  }
  if (rss) extra.push(`- hoardfs (RAID 6, encrypted) writing ${RSS_GIB} GiB of unique data (fio 1 MiB, devices on disk): peak RSS ${fmt(rss.peakRss / 1024 ** 2)} MiB, ${fmt(rss.mbps)} MB/s, ${fmt(rss.cpuPerGiB)} CPU s/GiB`);
  const report =
    `hoardfs bench: ${new Date().toISOString()}, ${os.cpus().length} cores, node ${process.version}, ${REPS} rep(s) (median), ${SIZE_MIB} MiB, random I/O ${RAND_SECS} s, ` +
    `${SMALL_FILES} small files, untar/rsync ${results.tmpfs ? '' : ''}tree of /usr/include + /usr/share/doc, HOARDFS_KDF=${KDF}, ${((performance.now() - t0) / 1000).toFixed(0)} s\n\n` +
    lines.join('\n') +
    '\n\n' +
    extra.join('\n') +
    (haveZfs ? '' : '\n- zfs-fuse: not installed, skipped') +
    (micro ? `\n\nmicro-benchmarks (one thread):\n\n${micro}` : '') +
    '\n';
  process.stdout.write(report);
  const outDir = join(ROOT, 'bench/results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'last.md'), report);
  writeFileSync(join(outDir, 'last.json'), JSON.stringify({ argv, results, median: med, rss }, null, 1));
}

await main();
