// A canonical description of a directory tree (contents, sizes, modes, link counts, hard-link
// groups, xattrs, symlink targets, listings) and the difference between two of them.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export type Tree = Map<string, string>;

export function xattrDump(root: string): Record<string, Record<string, string>> {
  const r = spawnSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0 && r.stderr.trim()) throw new Error(`getfattr -R of ${root} failed: ${r.stderr}`);
  const out: Record<string, Record<string, string>> = {};
  let cur: Record<string, string> | null = null;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) out[line.slice(8)] = cur = {};
    else if (line && cur) {
      const i = line.indexOf('=');
      cur[i < 0 ? line : line.slice(0, i)] = i < 0 ? '' : line.slice(i + 1);
    }
  }
  return out;
}

export function snapshotTree(root: string, o: { xattrs?: boolean } = {}): Tree {
  const out: Tree = new Map();
  const inoFirst = new Map<number, string>();
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    const names = fs.readdirSync(abs).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const a = join(abs, n);
      const s = fs.lstatSync(a);
      const mode = (s.mode & 0o7777).toString(8);
      if (s.isDirectory()) {
        out.set(r, `dir mode=${mode} nlink=${s.nlink} entries=${fs.readdirSync(a).sort().join(',')}`);
        walk(r);
      } else if (s.isSymbolicLink()) {
        out.set(r, `symlink -> ${fs.readlinkSync(a)} size=${s.size}`);
      } else if (s.isFile()) {
        const first = inoFirst.get(s.ino);
        if (first === undefined) inoFirst.set(s.ino, r);
        const data = fs.readFileSync(a);
        const sha = createHash('sha256').update(data).digest('hex').slice(0, 16);
        out.set(r, `file mode=${mode} nlink=${s.nlink} size=${s.size} read=${data.length} sha=${sha} linkgroup=${first ?? r}`);
      } else out.set(r, `other mode=${s.mode.toString(8)}`);
    }
  };
  walk('');
  out.set('.', `root entries=${fs.readdirSync(root).sort().join(',')}`);
  if (o.xattrs !== false) {
    for (const [p, x] of Object.entries(xattrDump(root))) out.set(`${p} [xattrs]`, JSON.stringify(x));
  }
  return out;
}

export function diffTrees(want: Tree, got: Tree, limit = 20): string[] {
  const diffs: string[] = [];
  const keys = new Set([...want.keys(), ...got.keys()]);
  for (const k of [...keys].sort()) {
    const a = want.get(k);
    const b = got.get(k);
    if (a !== b) diffs.push(`${k}:\n    tmpfs:   ${a ?? '(absent)'}\n    hoardfs: ${b ?? '(absent)'}`);
    if (diffs.length >= limit) break;
  }
  return diffs;
}

/** Digest of a whole tree, for "reads back byte for byte" comparisons across time. */
export function treeDigest(t: Tree): string {
  const h = createHash('sha256');
  for (const k of [...t.keys()].sort()) h.update(`${k}\0${t.get(k)}\n`);
  return h.digest('hex');
}
