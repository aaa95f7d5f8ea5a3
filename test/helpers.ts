// Shared test plumbing: temporary directories, the CLI as a user runs it, and real mounts that
// are always unmounted, even when a test fails.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const BIN = join(ROOT, 'bin/hoardfs.js');

export function tempDir(prefix = 'hoardfs-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(process.env.HOARDFS_TEST_TMP ?? tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the hoardfs CLI asynchronously (a synchronous spawn would block this process's own FUSE callbacks). */
export function hoardfs(args: string[], o: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  return run(process.execPath, [BIN, ...args], o);
}

export function run(cmd: string, args: string[], o: { input?: string; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((res, rej) => {
    // Without input the child gets /dev/null: a pipe it may close before we write to it gives
    // EPIPE (a fast `make` did exactly that on a loaded CI machine).
    const c = spawn(cmd, args, { env: { ...process.env, ...o.env }, cwd: o.cwd, stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d) => (stdout += d));
    c.stderr!.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      rej(new Error(`${cmd} ${args.join(' ')} timed out\n${stderr}`));
    }, o.timeoutMs ?? 300_000);
    c.on('error', rej);
    c.on('close', (code) => {
      clearTimeout(t);
      res({ code: code ?? 128, stdout, stderr });
    });
    if (c.stdin) {
      // A child that exits without reading all of its input is judged by its exit code, not by our write.
      c.stdin.on('error', () => {});
      c.stdin.end(o.input);
    }
  });
}

export async function sh(script: string, o: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return run('bash', ['-c', script], o);
}

export function mounted(mnt: string): boolean {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  return text.split('\n').some((l) => l.split(' ')[4] === resolve(mnt));
}

/** Forces a mount away; for cleanup only. */
export function forceUnmount(mnt: string): void {
  if (existsSync(mnt) && mounted(mnt)) spawnSync('fusermount3', ['-uz', mnt]);
}

export interface TestVolume {
  dir: string;
  mnt: string;
  root: string;
  passFile: string;
  secretArgs: string[];
  mount(extra?: string[]): Promise<void>;
  umount(): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * A fresh volume in a temp dir, created with the CLI. mkfsArgs are extra mkfs flags; device
 * paths may use {root} for the temp dir.
 */
export async function makeVolume(mkfsArgs: string[] = [], o: { encrypted?: boolean } = {}): Promise<TestVolume> {
  const t = tempDir();
  // Non-root users in the tests must be able to reach the mountpoint.
  fs.chmodSync(t.path, 0o755);
  const dir = join(t.path, 'vol');
  const mnt = join(t.path, 'mnt');
  const passFile = join(t.path, 'pass');
  writeFileSync(passFile, 'correct horse battery staple\n');
  const encrypted = o.encrypted ?? true;
  const secretArgs = encrypted ? ['--passphrase-file', passFile] : [];
  const args = ['mkfs', dir, ...(encrypted ? secretArgs : ['--no-encryption']), '--device-size', '2G', ...mkfsArgs.map((a) => a.replaceAll('{root}', t.path))];
  const r = await hoardfs(args);
  if (r.code !== 0) throw new Error(`mkfs failed: ${r.stderr}`);
  spawnSync('mkdir', ['-p', mnt]);
  const v: TestVolume = {
    dir,
    mnt,
    root: t.path,
    passFile,
    secretArgs,
    async mount(extra = []) {
      const m = await hoardfs(['mount', dir, mnt, ...secretArgs, ...extra]);
      if (m.code !== 0) throw new Error(`mount failed: ${m.stderr}`);
    },
    async umount() {
      const u = await hoardfs(['umount', mnt]);
      if (u.code !== 0) throw new Error(`umount failed: ${u.stderr}`);
    },
    async cleanup() {
      if (mounted(mnt)) await hoardfs(['umount', mnt]).catch(() => {});
      forceUnmount(mnt);
      t.cleanup();
    },
  };
  return v;
}

export function randomData(n: number, seed = 1): Buffer {
  // xorshift: reproducible, incompressible enough, and fast.
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  for (let i = n - (n % 4); i < n; i++) b[i] = i & 0xff;
  return b;
}
