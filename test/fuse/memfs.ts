// A small in-memory FsOps used to exercise the FUSE adapter. Not a reference implementation of
// hoardfs semantics: just enough POSIX to drive real tools through the mount.
import { constants as C } from 'node:fs';
import {
  FsError,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  XATTR_CREATE,
  XATTR_REPLACE,
  type Attr,
  type Ctx,
  type DirEntry,
  type Entry,
  type FsOps,
  type Ino,
  type OpenResult,
  type SetAttr,
  type StatFs,
} from '../../src/fs/types.ts';

const CHUNK = 128 * 1024;
const NAME_MAX = 255;

interface Node {
  ino: Ino;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  chunks?: Map<number, Buffer>; // regular files; missing chunks are holes
  children?: Map<string, { name: Buffer; ino: Ino; cookie: number }>; // dirs, key = latin1(name)
  parent?: Ino;
  nextCookie?: number;
  target?: Buffer; // symlinks
  xattrs: Map<string, Buffer>;
  nlookup: number;
  opens: number;
  slow: boolean;
}

export interface MemFsOptions {
  /** First inode number handed out after the root (to test 64-bit inode numbers). */
  inoBase?: number;
  /** read() on files whose name starts with "slow" waits this long. */
  slowMs?: number;
  entryTimeout?: number;
  attrTimeout?: number;
}

// Wall-clock nanoseconds: Date.now() anchors, hrtime supplies the sub-millisecond digits.
const hrBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
const nowNs = (): bigint => hrBase + process.hrtime.bigint();
const err = (code: string): FsError => new FsError(code);
const key = (name: Buffer): string => name.toString('latin1');
const isDir = (n: Node): boolean => (n.mode & C.S_IFMT) === C.S_IFDIR;
const isReg = (n: Node): boolean => (n.mode & C.S_IFMT) === C.S_IFREG;

export class MemFs implements FsOps {
  readonly nodes = new Map<Ino, Node>();
  readonly fhs = new Map<number, Ino>();
  private nextIno: number;
  private nextFh = 1;
  readonly slowMs: number;
  readonly entryTimeout: number;
  readonly attrTimeout: number;
  /** Observability for tests. */
  readonly stats = { writes: 0, maxWrite: 0, writeSizes: new Map<number, number>(), calls: new Map<string, number>(), nameTooLong: 0, securityCapability: 0, readdirMaxEntries: 0, maxRead: 0 };
  destroyed = false;

  constructor(opts: MemFsOptions = {}) {
    this.nextIno = opts.inoBase ?? 2;
    this.slowMs = opts.slowMs ?? 0;
    this.entryTimeout = opts.entryTimeout ?? 1;
    this.attrTimeout = opts.attrTimeout ?? 1;
    const t = nowNs();
    this.nodes.set(1, {
      ino: 1, mode: C.S_IFDIR | 0o755, nlink: 2, uid: 0, gid: 0, rdev: 0, size: 0,
      atimeNs: t, mtimeNs: t, ctimeNs: t, children: new Map(), parent: 1, nextCookie: 3,
      xattrs: new Map(), nlookup: 1, opens: 0, slow: false,
    });
  }

  private count(op: string): void {
    this.stats.calls.set(op, (this.stats.calls.get(op) ?? 0) + 1);
  }

  private node(ino: Ino): Node {
    const n = this.nodes.get(ino);
    if (!n) throw err('ESTALE');
    return n;
  }

  private dir(ino: Ino): Node {
    const n = this.node(ino);
    if (!n.children) throw err('ENOTDIR');
    return n;
  }

  private checkName(name: Buffer): void {
    if (name.length > NAME_MAX) {
      this.stats.nameTooLong++;
      throw err('ENAMETOOLONG');
    }
  }

  attr(n: Node): Attr {
    let blocks = 0;
    if (n.chunks) for (const c of n.chunks.values()) blocks += c.length / 512;
    return {
      ino: n.ino, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: n.rdev,
      size: isDir(n) ? 4096 : n.size, blocks, blksize: 4096,
      atimeNs: n.atimeNs, mtimeNs: n.mtimeNs, ctimeNs: n.ctimeNs,
    };
  }

  private entry(n: Node): Entry {
    n.nlookup++;
    return { attr: this.attr(n), generation: 0, entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
  }

  private maybeFree(n: Node): void {
    if (n.nlink === 0 && n.nlookup <= 0 && n.opens <= 0) this.nodes.delete(n.ino);
  }

  private newNode(parent: Node, name: Buffer, mode: number, ctx: Ctx, extra: Partial<Node> = {}): Node {
    this.checkName(name);
    const k = key(name);
    if (parent.children!.has(k)) throw err('EEXIST');
    const t = nowNs();
    const n: Node = {
      ino: this.nextIno++, mode, nlink: 1, uid: ctx.uid, gid: ctx.gid, rdev: 0, size: 0,
      atimeNs: t, mtimeNs: t, ctimeNs: t, xattrs: new Map(), nlookup: 0, opens: 0,
      slow: k.startsWith('slow'), ...extra,
    };
    this.nodes.set(n.ino, n);
    parent.children!.set(k, { name: Buffer.from(name), ino: n.ino, cookie: parent.nextCookie!++ });
    parent.mtimeNs = parent.ctimeNs = t;
    return n;
  }

  async lookup(parent: Ino, name: Buffer, _ctx: Ctx): Promise<Entry> {
    this.count('lookup');
    this.checkName(name);
    const d = this.dir(parent);
    const k = key(name);
    let ino: Ino | undefined;
    if (k === '.') ino = parent;
    else if (k === '..') ino = d.parent;
    else ino = d.children!.get(k)?.ino;
    if (ino === undefined) throw err('ENOENT');
    return this.entry(this.node(ino));
  }

  forget(ino: Ino, nlookup: number): void {
    this.count('forget');
    const n = this.nodes.get(ino);
    if (!n || ino === 1) return;
    n.nlookup -= nlookup;
    this.maybeFree(n);
  }

  async getattr(ino: Ino, _fh: number | undefined, _ctx: Ctx): Promise<Attr> {
    this.count('getattr');
    return this.attr(this.node(ino));
  }

  async setattr(ino: Ino, set: SetAttr, _fh: number | undefined, _ctx: Ctx): Promise<Attr> {
    this.count('setattr');
    const n = this.node(ino);
    const t = nowNs();
    if (set.mode !== undefined) n.mode = (n.mode & C.S_IFMT) | (set.mode & 0o7777);
    if (set.uid !== undefined) n.uid = set.uid;
    if (set.gid !== undefined) n.gid = set.gid;
    if (set.size !== undefined) {
      if (!isReg(n)) throw err(isDir(n) ? 'EISDIR' : 'EINVAL');
      this.truncate(n, set.size);
      n.mtimeNs = t;
    }
    if (set.atimeNs !== undefined) n.atimeNs = set.atimeNs === 'now' ? t : set.atimeNs;
    if (set.mtimeNs !== undefined) n.mtimeNs = set.mtimeNs === 'now' ? t : set.mtimeNs;
    n.ctimeNs = set.ctimeNs ?? t;
    return this.attr(n);
  }

  private truncate(n: Node, size: number): void {
    const chunks = n.chunks!;
    for (const idx of chunks.keys()) {
      const start = idx * CHUNK;
      if (start >= size) chunks.delete(idx);
      else if (start + CHUNK > size) chunks.get(idx)!.fill(0, size - start);
    }
    n.size = size;
  }

  async readlink(ino: Ino, _ctx: Ctx): Promise<Buffer> {
    const n = this.node(ino);
    if (!n.target) throw err('EINVAL');
    return n.target;
  }

  async mknod(parent: Ino, name: Buffer, mode: number, rdev: number, ctx: Ctx): Promise<Entry> {
    const n = this.newNode(this.dir(parent), name, mode, ctx, { rdev, chunks: isRegMode(mode) ? new Map() : undefined });
    return this.entry(n);
  }

  async mkdir(parent: Ino, name: Buffer, mode: number, ctx: Ctx): Promise<Entry> {
    const p = this.dir(parent);
    const n = this.newNode(p, name, C.S_IFDIR | (mode & 0o7777), ctx, {
      nlink: 2, children: new Map(), parent, nextCookie: 3,
    });
    p.nlink++;
    return this.entry(n);
  }

  private removeEntry(parent: Node, name: Buffer, wantDir: boolean): void {
    const k = key(name);
    const e = parent.children!.get(k);
    if (!e) throw err('ENOENT');
    const n = this.node(e.ino);
    if (wantDir) {
      if (!isDir(n)) throw err('ENOTDIR');
      if (n.children!.size > 0) throw err('ENOTEMPTY');
      n.nlink = 0;
      parent.nlink--;
    } else {
      if (isDir(n)) throw err('EISDIR');
      n.nlink--;
    }
    parent.children!.delete(k);
    const t = nowNs();
    parent.mtimeNs = parent.ctimeNs = n.ctimeNs = t;
    this.maybeFree(n);
  }

  async unlink(parent: Ino, name: Buffer, _ctx: Ctx): Promise<void> {
    this.removeEntry(this.dir(parent), name, false);
  }

  async rmdir(parent: Ino, name: Buffer, _ctx: Ctx): Promise<void> {
    this.removeEntry(this.dir(parent), name, true);
  }

  async symlink(target: Buffer, parent: Ino, name: Buffer, ctx: Ctx): Promise<Entry> {
    const n = this.newNode(this.dir(parent), name, C.S_IFLNK | 0o777, ctx, { target: Buffer.from(target) });
    n.size = target.length;
    return this.entry(n);
  }

  async rename(parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number, _ctx: Ctx): Promise<void> {
    this.checkName(newName);
    const p = this.dir(parent);
    const np = this.dir(newParent);
    const k = key(name);
    const nk = key(newName);
    const src = p.children!.get(k);
    if (!src) throw err('ENOENT');
    const dst = np.children!.get(nk);
    const sn = this.node(src.ino);
    const t = nowNs();
    if (flags & RENAME_EXCHANGE) {
      if (!dst) throw err('ENOENT');
      const dn = this.node(dst.ino);
      p.children!.set(k, { name: src.name, ino: dst.ino, cookie: src.cookie });
      np.children!.set(nk, { name: dst.name, ino: src.ino, cookie: dst.cookie });
      if (isDir(sn)) sn.parent = newParent;
      if (isDir(dn)) dn.parent = parent;
      if (p !== np && isDir(sn) !== isDir(dn)) {
        const d = isDir(sn) ? 1 : -1;
        p.nlink -= d;
        np.nlink += d;
      }
      sn.ctimeNs = dn.ctimeNs = p.mtimeNs = np.mtimeNs = t;
      return;
    }
    if (dst) {
      if (flags & RENAME_NOREPLACE) throw err('EEXIST');
      if (dst.ino === src.ino) return; // hard links to the same inode: POSIX says do nothing
      const dn = this.node(dst.ino);
      if (isDir(sn) && !isDir(dn)) throw err('ENOTDIR');
      if (!isDir(sn) && isDir(dn)) throw err('EISDIR');
      if (isDir(dn)) {
        if (dn.children!.size > 0) throw err('ENOTEMPTY');
        dn.nlink = 0;
        np.nlink--;
      } else {
        dn.nlink--;
      }
      dn.ctimeNs = t;
      np.children!.delete(nk);
      this.maybeFree(dn);
    }
    p.children!.delete(k);
    np.children!.set(nk, { name: Buffer.from(newName), ino: src.ino, cookie: np.nextCookie!++ });
    if (isDir(sn)) {
      sn.parent = newParent;
      if (p !== np) {
        p.nlink--;
        np.nlink++;
      }
    }
    sn.ctimeNs = p.mtimeNs = p.ctimeNs = np.mtimeNs = np.ctimeNs = t;
  }

  async link(ino: Ino, newParent: Ino, newName: Buffer, _ctx: Ctx): Promise<Entry> {
    this.checkName(newName);
    const np = this.dir(newParent);
    const n = this.node(ino);
    if (isDir(n)) throw err('EPERM');
    const k = key(newName);
    if (np.children!.has(k)) throw err('EEXIST');
    np.children!.set(k, { name: Buffer.from(newName), ino, cookie: np.nextCookie!++ });
    n.nlink++;
    n.ctimeNs = np.mtimeNs = np.ctimeNs = nowNs();
    return this.entry(n);
  }

  private openNode(n: Node, flags: number): OpenResult {
    if (isReg(n) && flags & C.O_TRUNC && (flags & 3) !== C.O_RDONLY) {
      this.truncate(n, 0);
      n.mtimeNs = n.ctimeNs = nowNs();
    }
    n.opens++;
    const fh = this.nextFh++;
    this.fhs.set(fh, n.ino);
    return { fh };
  }

  async open(ino: Ino, flags: number, _ctx: Ctx): Promise<OpenResult> {
    this.count('open');
    return this.openNode(this.node(ino), flags);
  }

  async create(parent: Ino, name: Buffer, mode: number, flags: number, ctx: Ctx): Promise<{ entry: Entry; open: OpenResult }> {
    const n = this.newNode(this.dir(parent), name, C.S_IFREG | (mode & 0o7777), ctx, { chunks: new Map() });
    const entry = this.entry(n);
    return { entry, open: this.openNode(n, flags & ~C.O_TRUNC) };
  }

  private fileOf(ino: Ino, fh: number): Node {
    if (this.fhs.get(fh) !== ino) throw err('EBADF');
    const n = this.node(ino);
    if (!n.chunks) throw err('EISDIR');
    return n;
  }

  async read(ino: Ino, fh: number, size: number, offset: number): Promise<Buffer> {
    this.count('read');
    if (size > this.stats.maxRead) this.stats.maxRead = size;
    const n = this.fileOf(ino, fh);
    if (n.slow && this.slowMs > 0) await new Promise((r) => setTimeout(r, this.slowMs));
    const end = Math.min(n.size, offset + size);
    if (end <= offset) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    for (let pos = offset; pos < end; ) {
      const idx = Math.floor(pos / CHUNK);
      const within = pos - idx * CHUNK;
      const len = Math.min(CHUNK - within, end - pos);
      n.chunks!.get(idx)?.copy(out, pos - offset, within, within + len);
      pos += len;
    }
    n.atimeNs = nowNs();
    return out;
  }

  async write(ino: Ino, fh: number, data: Buffer, offset: number, flags: number): Promise<number> {
    const s = this.stats;
    s.writes++;
    if (data.length > s.maxWrite) s.maxWrite = data.length;
    s.writeSizes.set(data.length, (s.writeSizes.get(data.length) ?? 0) + 1);
    const n = this.fileOf(ino, fh);
    if (flags & C.O_APPEND) offset = n.size;
    for (let pos = 0; pos < data.length; ) {
      const at = offset + pos;
      const idx = Math.floor(at / CHUNK);
      const within = at - idx * CHUNK;
      const len = Math.min(CHUNK - within, data.length - pos);
      let c = n.chunks!.get(idx);
      if (!c) n.chunks!.set(idx, (c = Buffer.alloc(CHUNK)));
      data.copy(c, within, pos, pos + len);
      pos += len;
    }
    if (offset + data.length > n.size) n.size = offset + data.length;
    n.mtimeNs = n.ctimeNs = nowNs();
    return data.length;
  }

  async flush(_ino: Ino, _fh: number): Promise<void> {}

  async release(ino: Ino, fh: number): Promise<void> {
    this.fhs.delete(fh);
    const n = this.nodes.get(ino);
    if (!n) return;
    n.opens--;
    this.maybeFree(n);
  }

  async fsync(_ino: Ino, _fh: number, _datasync: boolean): Promise<void> {}

  async fallocate(ino: Ino, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const n = this.fileOf(ino, fh);
    if (mode !== 0) throw err('EOPNOTSUPP');
    if (offset + length > n.size) n.size = offset + length;
  }

  async opendir(ino: Ino, _flags: number, _ctx: Ctx): Promise<OpenResult> {
    this.dir(ino);
    const fh = this.nextFh++;
    this.fhs.set(fh, ino);
    return { fh };
  }

  async readdir(ino: Ino, _fh: number, offset: number, maxEntries: number): Promise<DirEntry[]> {
    this.count('readdir');
    this.stats.readdirMaxEntries = Math.max(this.stats.readdirMaxEntries, maxEntries);
    const d = this.dir(ino);
    const out: DirEntry[] = [];
    if (offset < 1) out.push({ name: Buffer.from('.'), ino, mode: C.S_IFDIR, nextOffset: 1 });
    if (offset < 2) out.push({ name: Buffer.from('..'), ino: d.parent!, mode: C.S_IFDIR, nextOffset: 2 });
    for (const e of d.children!.values()) {
      if (out.length >= maxEntries) break;
      if (e.cookie <= offset) continue;
      const n = this.nodes.get(e.ino);
      out.push({ name: e.name, ino: e.ino, mode: n ? n.mode : 0, nextOffset: e.cookie });
    }
    return out;
  }

  async releasedir(_ino: Ino, fh: number): Promise<void> {
    this.fhs.delete(fh);
  }

  async fsyncdir(_ino: Ino, _fh: number, _datasync: boolean): Promise<void> {}

  async statfs(_ino: Ino): Promise<StatFs> {
    return { bsize: 4096, frsize: 4096, blocks: 1 << 24, bfree: 1 << 23, bavail: 1 << 23, files: 1 << 20, ffree: (1 << 20) - this.nodes.size, namemax: NAME_MAX };
  }

  async setxattr(ino: Ino, name: string, value: Buffer, flags: number, _ctx: Ctx): Promise<void> {
    const n = this.node(ino);
    const has = n.xattrs.has(name);
    if (flags & XATTR_CREATE && has) throw err('EEXIST');
    if (flags & XATTR_REPLACE && !has) throw err('ENODATA');
    n.xattrs.set(name, Buffer.from(value));
    n.ctimeNs = nowNs();
  }

  async getxattr(ino: Ino, name: string, _ctx: Ctx): Promise<Buffer> {
    if (name === 'security.capability') this.stats.securityCapability++;
    const v = this.node(ino).xattrs.get(name);
    if (!v) throw err('ENODATA');
    return v;
  }

  async listxattr(ino: Ino, _ctx: Ctx): Promise<string[]> {
    return [...this.node(ino).xattrs.keys()];
  }

  async removexattr(ino: Ino, name: string, _ctx: Ctx): Promise<void> {
    const n = this.node(ino);
    if (!n.xattrs.delete(name)) throw err('ENODATA');
    n.ctimeNs = nowNs();
  }

  async access(ino: Ino, _mask: number, _ctx: Ctx): Promise<void> {
    this.node(ino);
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
  }
}

function isRegMode(mode: number): boolean {
  return (mode & C.S_IFMT) === C.S_IFREG;
}
