// The random-operation generator and its executor. An operation is plain JSON (so it can be
// printed as a reproduction and replayed); its result is a string: "ok", "ok:<payload>" or the
// errno code. Paths are relative to a working root; names come from a small pool so that
// operations collide often (renames over each other, links into renamed directories, ...).
// Symlink targets never contain ".." and are never absolute, so nothing resolves outside its root.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomData } from '../../helpers.ts';
import { Rng } from './rng.ts';

export const XATTR_PY = fileURLToPath(new URL('./xattr.py', import.meta.url));

export type Op =
  | { op: 'create'; path: string; mode: number; excl: boolean }
  | { op: 'write'; path: string; off: number; len: number; seed: number; append?: boolean }
  | { op: 'truncate'; path: string; len: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'unlink'; path: string }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'rmdir'; path: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'setxattr'; path: string; name: string; value: string; flag?: 'create' | 'replace' }
  | { op: 'removexattr'; path: string; name: string }
  | { op: 'fsync'; path: string }
  | { op: 'read'; path: string; off: number; len: number }
  | { op: 'stat'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'readlink'; path: string };

const DIRS = ['d0', 'd1', 'd2'];
const FILES = ['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 's0', 's1'];
const MODES = [0o644, 0o600, 0o755, 0o700, 0o640, 0o444, 0o2755, 0o1777];

export interface GenOptions {
  /** Larger writes and files (load test). */
  bigIo?: boolean;
  /** Relative weight of fsync (crash tests want more). */
  fsyncWeight?: number;
}

function dirPath(r: Rng): string {
  const depth = r.pick([0, 0, 1, 1, 1, 2]);
  const parts: string[] = [];
  for (let i = 0; i < depth; i++) parts.push(r.pick(DIRS));
  return parts.join('/');
}

function anyPath(r: Rng, pool = FILES): string {
  const d = dirPath(r);
  const n = r.chance(0.2) ? r.pick(DIRS) : r.pick(pool);
  return d ? `${d}/${n}` : n;
}

function filePath(r: Rng): string {
  const d = dirPath(r);
  const n = r.pick(FILES);
  return d ? `${d}/${n}` : n;
}

function size(r: Rng, big: boolean): number {
  const x = r.next();
  if (x < 0.4) return r.int(1, 4096);
  if (x < 0.8) return r.int(1, 70_000);
  if (x < 0.97) return r.int(1, big ? 1_200_000 : 300_000);
  return r.int(1, big ? 4_000_000 : 700_000);
}

function offset(r: Rng): number {
  const x = r.next();
  if (x < 0.3) return 0;
  if (x < 0.6) return r.int(0, 70_000);
  if (x < 0.9) return r.int(0, 1_000_000);
  return r.int(0, 3_000_000);
}

export function genOp(r: Rng, o: GenOptions = {}): Op {
  const table: [number, () => Op][] = [
    [8, () => ({ op: 'create', path: filePath(r), mode: r.pick(MODES), excl: r.chance(0.3) })],
    [20, () => ({ op: 'write', path: filePath(r), off: offset(r), len: size(r, !!o.bigIo), seed: r.int(1, 2 ** 31), append: r.chance(0.1) || undefined })],
    [6, () => ({ op: 'truncate', path: filePath(r), len: r.chance(0.3) ? 0 : offset(r) })],
    [7, () => ({ op: 'rename', from: anyPath(r), to: anyPath(r) })],
    [4, () => ({ op: 'link', from: filePath(r), to: filePath(r) })],
    [5, () => ({ op: 'unlink', path: anyPath(r) })],
    [5, () => ({ op: 'mkdir', path: (() => { const d = dirPath(r); const n = r.pick(DIRS); return d ? `${d}/${n}` : n; })(), mode: r.pick([0o755, 0o700, 0o2775]) })],
    [3, () => ({ op: 'rmdir', path: anyPath(r, DIRS) })],
    [3, () => ({ op: 'symlink', target: r.chance(0.5) ? r.pick([...FILES, ...DIRS]) : `${r.pick(DIRS)}/${r.pick(FILES)}`, path: filePath(r) })],
    [3, () => ({ op: 'chmod', path: anyPath(r), mode: r.pick(MODES) })],
    [2, () => ({ op: 'setxattr', path: anyPath(r), name: `user.${r.pick(['a', 'b', 'c'])}`, value: randomData(r.int(0, 64), r.int(1, 1000)).toString('hex'), flag: r.chance(0.2) ? r.pick(['create', 'replace'] as const) : undefined })],
    [1, () => ({ op: 'removexattr', path: anyPath(r), name: `user.${r.pick(['a', 'b', 'c'])}` })],
    [o.fsyncWeight ?? 3, () => ({ op: 'fsync', path: filePath(r) })],
    [10, () => ({ op: 'read', path: anyPath(r), off: offset(r), len: size(r, false) })],
    [4, () => ({ op: 'stat', path: anyPath(r) })],
    [3, () => ({ op: 'readdir', path: dirPath(r) || '.' })],
    [1, () => ({ op: 'readlink', path: filePath(r) })],
  ];
  let total = 0;
  for (const [w] of table) total += w;
  let x = r.next() * total;
  for (const [w, f] of table) {
    x -= w;
    if (x < 0) return f();
  }
  return table[0][1]();
}

export function genOps(seed: number, n: number, o: GenOptions = {}): Op[] {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => genOp(r, o));
}

function code(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? `THROW ${String(e)}`;
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16);
}

export const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** strerror text -> errno name, to read setfattr's messages. */
let strerrors: Map<string, string> | null = null;
function errnoOf(message: string): string {
  if (!strerrors) {
    const r = spawnSync(PYTHON, ['-S', '-E', '-c', 'import errno,os,json;print(json.dumps({os.strerror(n):c for n,c in errno.errorcode.items()}))'], { encoding: 'utf8' });
    strerrors = new Map(Object.entries(JSON.parse(r.stdout) as Record<string, string>));
    strerrors.set('No such attribute', 'ENODATA');
    strerrors.set('Attribute exists', 'EEXIST');
  }
  const text = message.trim().split('\n')[0].replace(/^setfattr: .*?: /, '');
  return strerrors.get(text) ?? `UNKNOWN ${message.trim()}`;
}

function xattr(args: string[]): string {
  if (args[0] === 'set' && args.length === 4) {
    // The common case through setfattr (a C binary: fast); create/replace flags need python.
    const r = spawnSync('setfattr', ['-n', args[2], '-v', `0x${args[3]}`, args[1]], { encoding: 'utf8' });
    return r.status === 0 ? 'ok' : errnoOf(r.stderr);
  }
  if (args[0] === 'remove') {
    const r = spawnSync('setfattr', ['-x', args[2], args[1]], { encoding: 'utf8' });
    return r.status === 0 ? 'ok' : errnoOf(r.stderr);
  }
  const r = spawnSync(PYTHON, ['-S', '-E', XATTR_PY, ...args], { encoding: 'utf8' });
  if (r.status !== 0) return `HELPER FAILED ${r.stderr}`;
  return r.stdout.trim();
}

/** Runs op under root; never throws. */
export function runOp(root: string, op: Op): string {
  const p = (x: string) => join(root, x);
  try {
    switch (op.op) {
      case 'create': {
        const fd = fs.openSync(p(op.path), op.excl ? 'wx' : 'w', op.mode);
        fs.closeSync(fd);
        return 'ok';
      }
      case 'write': {
        const data = randomData(op.len, op.seed);
        const fd = fs.openSync(p(op.path), fs.constants.O_WRONLY | fs.constants.O_CREAT | (op.append ? fs.constants.O_APPEND : 0), 0o644);
        try {
          let done = 0;
          while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, op.append ? null : op.off + done);
        } finally {
          fs.closeSync(fd);
        }
        return 'ok';
      }
      case 'truncate':
        fs.truncateSync(p(op.path), op.len);
        return 'ok';
      case 'rename':
        fs.renameSync(p(op.from), p(op.to));
        return 'ok';
      case 'link':
        fs.linkSync(p(op.from), p(op.to));
        return 'ok';
      case 'unlink':
        fs.unlinkSync(p(op.path));
        return 'ok';
      case 'mkdir':
        fs.mkdirSync(p(op.path), op.mode);
        return 'ok';
      case 'rmdir':
        fs.rmdirSync(p(op.path));
        return 'ok';
      case 'symlink':
        fs.symlinkSync(op.target, p(op.path));
        return 'ok';
      case 'chmod':
        fs.chmodSync(p(op.path), op.mode);
        return 'ok';
      case 'setxattr':
        return xattr(['set', p(op.path), op.name, op.value, ...(op.flag ? [op.flag] : [])]);
      case 'removexattr':
        return xattr(['remove', p(op.path), op.name]);
      case 'fsync': {
        const fd = fs.openSync(p(op.path), 'r');
        try {
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        return 'ok';
      }
      case 'read': {
        const fd = fs.openSync(p(op.path), 'r');
        try {
          const b = Buffer.alloc(op.len);
          let got = 0;
          for (;;) {
            const n = fs.readSync(fd, b, got, op.len - got, op.off + got);
            if (n <= 0) break;
            got += n;
            if (got === op.len) break;
          }
          return `ok:${got}:${sha(b.subarray(0, got))}`;
        } finally {
          fs.closeSync(fd);
        }
      }
      case 'stat': {
        const s = fs.lstatSync(p(op.path));
        const size = s.isDirectory() ? '-' : s.size;
        return `ok:${s.mode.toString(8)}:${s.nlink}:${size}`;
      }
      case 'readdir':
        return `ok:${fs.readdirSync(p(op.path)).sort().join(',')}`;
      case 'readlink':
        return `ok:${fs.readlinkSync(p(op.path))}`;
    }
  } catch (e) {
    return code(e);
  }
}

export function describe(op: Op): string {
  const { op: name, ...rest } = op;
  return `${name} ${JSON.stringify(rest)}`;
}

/** Errors meaning "the filesystem went away" (daemon killed), not a result. */
export function isDisconnect(result: string): boolean {
  return result === 'ENOTCONN' || result === 'ECONNABORTED' || result === 'ENODEV';
}

// ---- durability bookkeeping for crash tests ----

/**
 * Files whose content must survive a crash: path (real, relative to the root) -> content digest
 * at the file's last fsync, dropped as soon as anything later may change the file or its name.
 */
export class Durable {
  readonly files = new Map<string, { sha: string; size: number }>();

  constructor(private readonly root: string) {}

  private real(rel: string, follow: boolean): string | null {
    try {
      const abs = follow ? fs.realpathSync(join(this.root, rel)) : join(fs.realpathSync(join(this.root, dirname(rel))), basename(rel));
      const r = fs.realpathSync(this.root);
      return abs === r ? '.' : abs.startsWith(r + '/') ? abs.slice(r.length + 1) : null;
    } catch {
      return null;
    }
  }

  private dropUnder(rel: string | null): void {
    if (rel === null) return;
    for (const k of [...this.files.keys()]) if (k === rel || k.startsWith(rel + '/')) this.files.delete(k);
  }

  /** Called with the reference tree before op runs there (or would have run, for an op in flight). */
  before(op: Op): void {
    switch (op.op) {
      case 'create':
      case 'write':
      case 'truncate':
        this.dropUnder(this.real(op.path, true));
        this.dropUnder(this.real(op.path, false));
        break;
      case 'unlink':
      case 'rmdir':
      case 'chmod':
        this.dropUnder(this.real(op.path, false));
        break;
      case 'link':
        this.dropUnder(this.real(op.from, false));
        this.dropUnder(this.real(op.to, false));
        break;
      case 'rename': {
        // Conservative: whatever the rename touches is no longer checked.
        this.dropUnder(this.real(op.from, false));
        this.dropUnder(this.real(op.to, false));
        break;
      }
      default:
        break;
    }
  }

  /** Called after an fsync op succeeded on both trees. */
  after(op: Op, result: string): void {
    if (op.op !== 'fsync' || result !== 'ok') return;
    const rel = this.real(op.path, true);
    if (rel === null) return;
    const abs = join(this.root, rel);
    const st = fs.lstatSync(abs);
    if (!st.isFile() || st.nlink !== 1) return;
    const b = fs.readFileSync(abs);
    this.files.set(rel, { sha: sha(b), size: b.length });
  }
}

export function fileDigest(path: string): { sha: string; size: number } {
  const b = fs.readFileSync(path);
  return { sha: sha(b), size: b.length };
}
