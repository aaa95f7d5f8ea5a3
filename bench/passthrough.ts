// Minimal passthrough FsOps over a backing directory: the ceiling for FUSE-adapter overhead.
// Usage: node --import tsx bench/passthrough.ts <backingDir> <mountpoint> [--writeback]
// Unmount with `fusermount3 -u <mountpoint>` (or Ctrl-C); the process exits when the session ends.
import { constants as C, promises as fsp, type BigIntStats, type Stats } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FsError, RENAME_EXCHANGE, RENAME_NOREPLACE, type Attr, type DirEntry, type Entry, type FsOps, type Ino, type SetAttr } from '../src/fs/types.ts';
import { mountFs } from '../src/fuse/index.ts';

const TIMEOUT = 1; // seconds; a passthrough with no other writer could use much more

function toAttr(st: BigIntStats, ino: Ino): Attr {
  return {
    ino, mode: Number(st.mode), nlink: Number(st.nlink), uid: Number(st.uid), gid: Number(st.gid),
    rdev: Number(st.rdev), size: Number(st.size), blocks: Number(st.blocks), blksize: Number(st.blksize),
    atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs,
  };
}

const nsToSec = (ns: bigint | 'now', fallback: bigint): number | Date =>
  ns === 'now' ? new Date() : Number(ns ?? fallback) / 1e9; // Node's utimes takes seconds: ~µs precision

export class Passthrough implements FsOps {
  // Backing st_ino doubles as our inode number; the table remembers one path per inode.
  private paths = new Map<Ino, { path: string; nlookup: number }>([[1, { path: '', nlookup: 1 }]]);
  private files = new Map<number, fsp.FileHandle>();
  private dirs = new Map<number, DirEntry[] | undefined>();
  private nextFh = 1;
  constructor(private root: string) {}

  private p(ino: Ino): string {
    const e = this.paths.get(ino);
    if (!e) throw new FsError('ESTALE');
    return path.join(this.root, e.path);
  }
  private rel(parent: Ino, name: Buffer): string {
    const e = this.paths.get(parent);
    if (!e) throw new FsError('ESTALE');
    return path.join(e.path, name.toString());
  }

  private async entry(rel: string): Promise<Entry> {
    const st = await fsp.lstat(path.join(this.root, rel), { bigint: true });
    const ino = Number(st.ino);
    const e = this.paths.get(ino);
    if (e) {
      e.path = rel;
      e.nlookup++;
    } else this.paths.set(ino, { path: rel, nlookup: 1 });
    return { attr: toAttr(st, ino), generation: 0, entryTimeout: TIMEOUT, attrTimeout: TIMEOUT };
  }

  async lookup(parent: Ino, name: Buffer): Promise<Entry> {
    return this.entry(this.rel(parent, name));
  }
  forget(ino: Ino, nlookup: number): void {
    const e = this.paths.get(ino);
    if (e && ino !== 1 && (e.nlookup -= nlookup) <= 0) this.paths.delete(ino);
  }
  async getattr(ino: Ino, fh: number | undefined): Promise<Attr> {
    const h = fh !== undefined ? this.files.get(fh) : undefined;
    const st = h ? await h.stat({ bigint: true }) : await fsp.lstat(this.p(ino), { bigint: true });
    return toAttr(st, ino);
  }
  async setattr(ino: Ino, set: SetAttr, fh: number | undefined): Promise<Attr> {
    const p = this.p(ino);
    if (set.mode !== undefined) await fsp.chmod(p, set.mode);
    if (set.uid !== undefined || set.gid !== undefined) await fsp.lchown(p, set.uid ?? -1, set.gid ?? -1);
    if (set.size !== undefined) {
      const h = fh !== undefined ? this.files.get(fh) : undefined;
      await (h ? h.truncate(set.size) : fsp.truncate(p, set.size));
    }
    if (set.atimeNs !== undefined || set.mtimeNs !== undefined) {
      const st = await fsp.lstat(p, { bigint: true });
      await fsp.lutimes(p, nsToSec(set.atimeNs ?? st.atimeNs, st.atimeNs), nsToSec(set.mtimeNs ?? st.mtimeNs, st.mtimeNs));
    }
    return this.getattr(ino, undefined);
  }
  async readlink(ino: Ino): Promise<Buffer> {
    return fsp.readlink(this.p(ino), { encoding: 'buffer' });
  }
  async mknod(parent: Ino, name: Buffer, mode: number): Promise<Entry> {
    if ((mode & C.S_IFMT) !== C.S_IFREG) throw new FsError('EPERM');
    const rel = this.rel(parent, name);
    await (await fsp.open(path.join(this.root, rel), C.O_CREAT | C.O_EXCL | C.O_WRONLY, mode & 0o7777)).close();
    return this.entry(rel);
  }
  async mkdir(parent: Ino, name: Buffer, mode: number): Promise<Entry> {
    const rel = this.rel(parent, name);
    await fsp.mkdir(path.join(this.root, rel), { mode });
    return this.entry(rel);
  }
  async unlink(parent: Ino, name: Buffer): Promise<void> {
    await fsp.unlink(path.join(this.root, this.rel(parent, name)));
  }
  async rmdir(parent: Ino, name: Buffer): Promise<void> {
    await fsp.rmdir(path.join(this.root, this.rel(parent, name)));
  }
  async symlink(target: Buffer, parent: Ino, name: Buffer): Promise<Entry> {
    const rel = this.rel(parent, name);
    await fsp.symlink(target.toString(), path.join(this.root, rel));
    return this.entry(rel);
  }
  async rename(parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number): Promise<void> {
    if (flags & RENAME_EXCHANGE) throw new FsError('EINVAL'); // Node has no renameat2
    const from = this.rel(parent, name);
    const to = this.rel(newParent, newName);
    if (flags & RENAME_NOREPLACE) {
      const exists = await fsp.lstat(path.join(this.root, to)).then(() => true, () => false);
      if (exists) throw new FsError('EEXIST');
    }
    await fsp.rename(path.join(this.root, from), path.join(this.root, to));
    for (const e of this.paths.values()) {
      if (e.path === from) e.path = to;
      else if (e.path.startsWith(from + '/')) e.path = to + e.path.slice(from.length);
    }
  }
  async link(ino: Ino, newParent: Ino, newName: Buffer): Promise<Entry> {
    const rel = this.rel(newParent, newName);
    await fsp.link(this.p(ino), path.join(this.root, rel));
    return this.entry(rel);
  }
  private addFile(h: fsp.FileHandle): number {
    const fh = this.nextFh++;
    this.files.set(fh, h);
    return fh;
  }
  async open(ino: Ino, flags: number) {
    return { fh: this.addFile(await fsp.open(this.p(ino), flags & ~(C.O_CREAT | C.O_EXCL | C.O_NOCTTY))) };
  }
  async create(parent: Ino, name: Buffer, mode: number, flags: number) {
    const rel = this.rel(parent, name);
    const h = await fsp.open(path.join(this.root, rel), flags | C.O_CREAT, mode);
    return { entry: await this.entry(rel), open: { fh: this.addFile(h) } };
  }
  private fh(fh: number): fsp.FileHandle {
    const h = this.files.get(fh);
    if (!h) throw new FsError('EBADF');
    return h;
  }
  async read(_ino: Ino, fh: number, size: number, offset: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(size);
    const { bytesRead } = await this.fh(fh).read(buf, 0, size, offset);
    return bytesRead === size ? buf : buf.subarray(0, bytesRead);
  }
  async write(_ino: Ino, fh: number, data: Buffer, offset: number): Promise<number> {
    const { bytesWritten } = await this.fh(fh).write(data, 0, data.length, offset);
    return bytesWritten;
  }
  async flush(): Promise<void> {}
  async release(_ino: Ino, fh: number): Promise<void> {
    const h = this.files.get(fh);
    this.files.delete(fh);
    await h?.close();
  }
  async fsync(_ino: Ino, fh: number, datasync: boolean): Promise<void> {
    await (datasync ? this.fh(fh).datasync() : this.fh(fh).sync());
  }
  async opendir(ino: Ino) {
    this.p(ino);
    const fh = this.nextFh++;
    this.dirs.set(fh, undefined);
    return { fh };
  }
  async readdir(ino: Ino, fh: number, offset: number, maxEntries: number): Promise<DirEntry[]> {
    let all = this.dirs.get(fh);
    if (!all) {
      // Snapshot once per opendir so offsets stay stable while the kernel pages through.
      const dir = this.p(ino);
      const names = await fsp.readdir(dir, { encoding: 'buffer' });
      const sts = await Promise.all(names.map((n) => fsp.lstat(path.join(dir, n.toString())).catch(() => undefined)));
      all = [Buffer.from('.'), Buffer.from('..'), ...names].map((name, i) => {
        const st: Stats | undefined = i < 2 ? undefined : sts[i - 2];
        return { name, ino: st ? st.ino : 1, mode: st ? st.mode : C.S_IFDIR, nextOffset: i + 1 };
      });
      this.dirs.set(fh, all);
    }
    return all.slice(offset, offset + maxEntries);
  }
  async releasedir(_ino: Ino, fh: number): Promise<void> {
    this.dirs.delete(fh);
  }
  async fsyncdir(): Promise<void> {}
  async statfs(ino: Ino) {
    const s = await fsp.statfs(this.p(ino));
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, namemax: 255 };
  }
  // Node has no xattr API.
  async setxattr(): Promise<void> {
    throw new FsError('EOPNOTSUPP');
  }
  async getxattr(): Promise<Buffer> {
    throw new FsError('EOPNOTSUPP');
  }
  async listxattr(): Promise<string[]> {
    return [];
  }
  async removexattr(): Promise<void> {
    throw new FsError('EOPNOTSUPP');
  }
  async access(ino: Ino, mask: number): Promise<void> {
    await fsp.access(this.p(ino), mask);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const [backing, mnt] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  if (!backing || !mnt) {
    console.error('usage: passthrough.ts <backingDir> <mountpoint> [--writeback]');
    process.exit(2);
  }
  const m = await mountFs(new Passthrough(path.resolve(backing)), mnt, {
    options: ['fsname=passthrough', 'subtype=hoardfs-bench', 'default_permissions'],
    writebackCache: process.argv.includes('--writeback'),
    noSecurityCapability: true,
    onUnmount: () => process.exit(0),
  });
  const stop = () => void m.unmount({ lazy: true }).catch((e) => console.error(String(e)));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  console.log(`mounted ${backing} on ${mnt}`);
}
