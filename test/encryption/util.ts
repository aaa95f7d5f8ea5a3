// Shared plumbing for the encryption tests: device lists, a reference file tree, hashing, flips.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, randomData, type RunResult } from '../helpers.ts';

export function devices(n: number, size = '96M'): string[] {
  return ['--device-size', size, ...Array.from({ length: n }, (_, i) => ['--device', `{root}/d${i}`]).flat()];
}

export function devicePaths(root: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => join(root, `d${i}`));
}

export function ok(r: RunResult, what = ''): RunResult {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r;
}

/** A small tree: random files, a duplicate, a sparse-ish file, a symlink. Returns path → contents. */
export function writeTree(root: string, seed: number, mb = 6): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  fs.mkdirSync(join(root, 'dir', 'sub'), { recursive: true });
  const big = randomData(mb * 1024 * 1024, seed);
  files.set('dir/big.bin', big);
  files.set('dir/sub/copy.bin', big); // dedups
  files.set('small.txt', Buffer.from(`small file ${seed}\n`));
  files.set('dir/mid.bin', randomData(300_000 + seed, seed + 1));
  for (const [p, b] of files) fs.writeFileSync(join(root, p), b);
  fs.symlinkSync('dir/mid.bin', join(root, 'link'));
  return files;
}

export function checkTree(root: string, files: Map<string, Buffer>): void {
  for (const [p, b] of files) {
    const got = fs.readFileSync(join(root, p));
    if (!got.equals(b)) throw new Error(`${p}: contents differ (${got.length} vs ${b.length} bytes)`);
  }
}

export function sha(path: string): string {
  return createHash('sha256').update(fs.readFileSync(path)).digest('hex');
}

export function hashAll(paths: string[]): string[] {
  return paths.map(sha);
}

/** XORs 0xff into one byte every `step` bytes of [start, end) of a file. */
export function flipBytes(path: string, start: number, end: number, step: number): number {
  const fd = fs.openSync(path, 'r+');
  let n = 0;
  try {
    const b = Buffer.alloc(1);
    for (let off = start; off < end; off += step) {
      fs.readSync(fd, b, 0, 1, off);
      b[0] ^= 0xff;
      fs.writeSync(fd, b, 0, 1, off);
      n++;
    }
  } finally {
    fs.closeSync(fd);
  }
  return n;
}

export async function fsckClean(dir: string, secretArgs: string[]): Promise<void> {
  const f = await hoardfs(['fsck', dir, ...secretArgs]);
  if (f.code !== 0 || !/clean/.test(f.stdout)) throw new Error(`fsck not clean: ${f.stdout}${f.stderr}`);
}
