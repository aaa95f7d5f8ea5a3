// The metadata store: SQLite (WAL) via better-sqlite3-multiple-ciphers. Reads are direct
// prepared-statement queries; writes only ever go through apply(command).
import Database from 'better-sqlite3-multiple-ciphers';
import { existsSync } from 'node:fs';
import { FsError } from '../fs/types.ts';
import type { AttrChange, Command, ExtentRef, FileUpdate, NewChunk } from './commands.ts';
import { MAGIC, SCHEMA, SCHEMA_VERSION } from './schema.ts';

export const ROOT_INO = 1;
/** Group commit: how long, and how many, applied commands may wait for their commit. */
const GROUP_COMMIT_MS = 10;
const GROUP_COMMIT_MAX = 1024;
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

export interface InodeRow {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  rdev: number;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
  target: Buffer | null;
}

export interface ExtentRow {
  off: number;
  len: number;
  chunk: number;
  chunkOff: number;
}

export interface MappedExtent extends ExtentRow {
  at: { hash: Buffer; segment: number; off: number; storedLen: number; plainLen: number; height: number } | undefined;
}

export interface ChunkRow {
  id: number;
  hash: Buffer;
  segment: number;
  off: number;
  storedLen: number;
  plainLen: number;
  refs: number;
  height: number;
}

export interface SegmentRow {
  row: number;
  height: number;
  bytes: number;
  live: number;
  state: number;
}

export class MetadataError extends Error {}

export interface OpenOptions {
  /** Hex key for SQLite3MultipleCiphers; omitted for unencrypted volumes. */
  hexKey?: string;
  create?: boolean;
  readonly?: boolean;
}

type Row = Record<string, unknown>;

function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

export class Metadata {
  readonly db: Database.Database;
  private readonly st: Record<string, Database.Statement>;
  private readonly tx: (cmd: Command) => unknown;
  /** Write-through copies of the config counters; forgotten whenever a command rolls back. */
  private readonly counters = new Map<string, number>();
  private groupTimer: NodeJS.Timeout | undefined;
  private grouped = 0;
  private broken: Error | undefined;

  private constructor(db: Database.Database) {
    this.db = db;
    const p = (sql: string) => db.prepare(sql);
    const big = (sql: string) => db.prepare(sql).safeIntegers(true);
    this.st = {
      getConfig: p('SELECT value FROM config WHERE key = ?'),
      setConfig: p('INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      getInode: big('SELECT ino, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, target FROM inodes WHERE ino = ?').raw(true),
      insInode: p('INSERT INTO inodes (ino, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, target) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)'),
      delInode: p('DELETE FROM inodes WHERE ino = ?'),
      setNlink: p('UPDATE inodes SET nlink = ?, ctime = ? WHERE ino = ?'),
      addNlink: p('UPDATE inodes SET nlink = nlink + ? WHERE ino = ?'),
      touchDir: p('UPDATE inodes SET mtime = ?, ctime = ? WHERE ino = ?'),
      touchCtime: p('UPDATE inodes SET ctime = ? WHERE ino = ?'),
      setAttrs: p('UPDATE inodes SET mode = ?, uid = ?, gid = ?, size = ?, atime = ?, mtime = ?, ctime = ? WHERE ino = ?'),
      setSizeMtime: p('UPDATE inodes SET size = ?, mtime = ?, ctime = max(ctime, ?) WHERE ino = ?'),
      lookup: p('SELECT ino FROM dirents WHERE parent = ? AND name = ?').pluck(true),
      insDirent: p('INSERT INTO dirents (parent, name, ino, cookie) VALUES (?, ?, ?, ?)'),
      delDirent: p('DELETE FROM dirents WHERE parent = ? AND name = ?'),
      setDirentIno: p('UPDATE dirents SET ino = ? WHERE parent = ? AND name = ?'),
      anyChild: p('SELECT 1 FROM dirents WHERE parent = ? LIMIT 1'),
      parentOf: p('SELECT parent FROM dirents WHERE ino = ? LIMIT 1'),
      readdir: p('SELECT d.name, d.ino, d.cookie, i.mode FROM dirents d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ? AND d.cookie > ? ORDER BY d.cookie LIMIT ?'),
      countChildren: p('SELECT count(*) AS n FROM dirents WHERE parent = ?'),
      extAt: p('SELECT off, len, chunk, chunk_off AS chunkOff FROM extents WHERE ino = ? AND off <= ? ORDER BY off DESC LIMIT 1'),
      extAfter: p('SELECT off, len, chunk, chunk_off AS chunkOff FROM extents WHERE ino = ? AND off > ? AND off < ? ORDER BY off'),
      readMap: p(
        `SELECT e.off, e.len, e.chunk, e.chunk_off, c.hash, c.segment, c.off, c.stored_len, c.plain_len, s.height
         FROM extents e LEFT JOIN chunks c ON c.id = e.chunk LEFT JOIN segments s ON s.row = c.segment
         WHERE e.ino = @ino AND e.off >= coalesce((SELECT off FROM extents WHERE ino = @ino AND off <= @start ORDER BY off DESC LIMIT 1), @start) AND e.off < @end
         ORDER BY e.off`,
      ).raw(true),
      extAll: p('SELECT off, len, chunk, chunk_off AS chunkOff FROM extents WHERE ino = ? ORDER BY off'),
      extFrom: p('SELECT off, len, chunk, chunk_off AS chunkOff FROM extents WHERE ino = ? AND off >= ? ORDER BY off'),
      insExt: p('INSERT INTO extents (ino, off, len, chunk, chunk_off) VALUES (?, ?, ?, ?, ?)'),
      delExt: p('DELETE FROM extents WHERE ino = ? AND off = ?'),
      delExtAll: p('DELETE FROM extents WHERE ino = ?'),
      chunkByHash: p('SELECT c.id, c.hash, c.segment, c.off, c.stored_len AS storedLen, c.plain_len AS plainLen, c.refs, s.height FROM chunks c JOIN segments s ON s.row = c.segment WHERE c.hash = ?'),
      chunkIdByHash: p('SELECT id FROM chunks WHERE hash = ?'),
      insChunk: p("INSERT INTO chunks (hash, segment, off, stored_len, plain_len, refs, key_gen) VALUES (?, ?, ?, ?, ?, 0, coalesce((SELECT value FROM config WHERE key = 'key_gen'), 0))"),
      addRef: p('UPDATE chunks SET refs = refs + ? WHERE id = ?'),
      insSegment: p('INSERT INTO segments (row, height, bytes, live) VALUES (?, ?, ?, ?)'),
      xget: p('SELECT value FROM xattrs WHERE ino = ? AND name = ?'),
      xset: p('INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?) ON CONFLICT (ino, name) DO UPDATE SET value = excluded.value'),
      xdel: p('DELETE FROM xattrs WHERE ino = ? AND name = ?'),
      xlist: p('SELECT name FROM xattrs WHERE ino = ? ORDER BY name'),
      xdelAll: p('DELETE FROM xattrs WHERE ino = ?'),
      addOrphan: p('INSERT OR IGNORE INTO orphans (ino) VALUES (?)'),
      delOrphan: p('DELETE FROM orphans WHERE ino = ?'),
      orphans: p('SELECT ino FROM orphans'),
      usedRows: p('SELECT row FROM segments'),
    };
    this.tx = db.transaction((cmd: Command) => this.dispatch(cmd));
  }

  static open(path: string, o: OpenOptions = {}): Metadata {
    const exists = existsSync(path);
    if (!exists && !o.create) throw new MetadataError(`metadata database ${path} is missing`);
    if (exists && o.create) throw new MetadataError(`metadata database ${path} already exists`);
    let db: Database.Database;
    try {
      db = new Database(path, { readonly: o.readonly ?? false, fileMustExist: !o.create });
    } catch (e) {
      throw new MetadataError(`cannot open metadata database ${path}: ${(e as Error).message}`);
    }
    try {
      // The key is a 64-hex-digit string used as SQLite3MultipleCiphers' passphrase (its default
      // ChaCha20-Poly1305 cipher); the same string works for ATTACH ... KEY, which
      // restore-metadata needs to write a snapshot into a new encrypted file.
      if (o.hexKey) db.pragma(`key = '${o.hexKey}'`);
      if (o.create) {
        db.pragma('journal_mode = WAL');
        db.exec(SCHEMA);
      }
      // Reading the schema is what tells a wrong key or a foreign file apart from ours.
      const row = db.prepare(`SELECT value FROM config WHERE key = 'magic'`).get() as Row | undefined;
      if (!o.create && row?.value !== MAGIC) throw new Error('not a hoardfs metadata database');
      if (!o.readonly) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = OFF');
      db.pragma('cache_size = -32768');
      db.pragma('wal_autocheckpoint = 4000');
    } catch (e) {
      db.close();
      const msg = (e as Error).message;
      if (/file is not a database|not a hoardfs|no such table/i.test(msg)) {
        throw new MetadataError(
          `${path} is not a readable hoardfs metadata database (damaged, foreign, or the wrong key); ` +
            `if it is damaged, run 'hoardfs restore-metadata'`,
        );
      }
      throw new MetadataError(`cannot open metadata database ${path}: ${msg}`);
    }
    const m = new Metadata(db);
    if (o.create) m.initialize();
    else {
      const v = Number(m.config('schema_version'));
      if (v !== SCHEMA_VERSION) {
        m.close();
        throw new MetadataError(`metadata schema version ${v} is not supported (this hoardfs reads version ${SCHEMA_VERSION})`);
      }
    }
    return m;
  }

  private initialize(): void {
    const now = BigInt(Date.now()) * 1_000_000n;
    this.db.transaction(() => {
      this.st.setConfig.run('magic', MAGIC);
      this.st.setConfig.run('schema_version', SCHEMA_VERSION);
      this.st.setConfig.run('next_ino', ROOT_INO + 1);
      this.st.setConfig.run('next_cookie', 3); // 1 and 2 are "." and ".."
      this.st.setConfig.run('applied', 0);
      this.st.insInode.run(ROOT_INO, S_IFDIR | 0o755, 0, 0, 2, 0, now, now, now, null);
    })();
  }

  close(): void {
    if (this.db.open) {
      if (!this.broken) this.commit();
      this.db.close();
    }
  }

  /**
   * A database in memory from a serialize() image (a metadata snapshot), for reading and for
   * writeTo; nothing it does touches a file.
   */
  static fromImage(image: Buffer): Metadata {
    const copy = Buffer.from(image);
    // The image carries the WAL flag; an in-memory database must be opened in rollback mode.
    copy[18] = 1;
    copy[19] = 1;
    return new Metadata(new Database(copy));
  }

  /** Every path with its type, size and mtime: what restore-metadata compares. */
  listing(): Map<string, { type: 'dir' | 'file'; size: number; mtime: string }> {
    const rows = this.db
      .prepare(
        `WITH RECURSIVE p(ino, path) AS (SELECT 1, '' UNION ALL SELECT d.ino, p.path || '/' || CAST(d.name AS TEXT) FROM dirents d JOIN p ON d.parent = p.ino)
         SELECT p.path, i.mode, i.size, i.mtime FROM p JOIN inodes i ON i.ino = p.ino WHERE p.ino != 1`,
      )
      .safeIntegers(true)
      .all() as { path: string; mode: bigint; size: bigint; mtime: bigint }[];
    const out = new Map<string, { type: 'dir' | 'file'; size: number; mtime: string }>();
    for (const r of rows) out.set(r.path, { type: (Number(r.mode) & S_IFMT) === S_IFDIR ? 'dir' : 'file', size: Number(r.size), mtime: String(r.mtime) });
    return out;
  }

  /**
   * Copies this database, schema and rows, into a new file at path (encrypted with hexKey when
   * given): ATTACH ... KEY is how SQLite3MultipleCiphers writes an encrypted copy.
   */
  writeTo(path: string, hexKey?: string): void {
    this.commit();
    this.db.exec(`ATTACH DATABASE '${path.replaceAll("'", "''")}' AS restored${hexKey ? ` KEY '${hexKey}'` : ''}`);
    try {
      const objects = this.db.prepare(`SELECT type, name, sql FROM main.sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'index'`).all() as { type: string; name: string; sql: string }[];
      this.db.transaction(() => {
        for (const o of objects) {
          const sql = o.type === 'table' ? o.sql.replace(/^CREATE TABLE\s+("?)(\w+)\1/i, 'CREATE TABLE restored.$2') : o.sql.replace(/^CREATE (UNIQUE )?INDEX\s+("?)(\w+)\2/i, 'CREATE $1INDEX restored.$3');
          this.db.exec(sql);
          if (o.type === 'table') this.db.exec(`INSERT INTO restored.${o.name} SELECT * FROM main.${o.name}`);
        }
      })();
    } finally {
      this.db.exec('DETACH DATABASE restored');
    }
  }

  config(key: string): unknown {
    return (this.st.getConfig.get(key) as Row | undefined)?.value;
  }

  /**
   * Applies one command; throws FsError (nothing changed) when it does not apply. Each command
   * is a savepoint inside a group transaction that commits within GROUP_COMMIT_MS (or at once
   * when durable, or before anything that needs the file as it is): a commit costs 100-300 us of
   * page writes and encryption, which per small-file operation was most of its time. A crash
   * keeps a prefix of the commands, as before; it can now lose the last few milliseconds of
   * operations nobody fsynced (write data waits in the buffers for up to 2 s anyway).
   */
  apply<T = unknown>(cmd: Command, durable = false): T {
    if (this.broken) throw new FsError('EIO', `metadata is read-only after a failed commit: ${this.broken.message}`);
    if (durable) {
      // SQLite fixes the sync level when a transaction begins: the group commits first, then
      // this command commits alone with a WAL fsync that makes everything before it durable.
      this.commit();
      this.db.pragma('synchronous = FULL');
      try {
        return this.run<T>(cmd);
      } finally {
        this.db.pragma('synchronous = NORMAL');
      }
    }
    if (!this.db.inTransaction) {
      this.db.exec('BEGIN IMMEDIATE');
      this.groupTimer = setTimeout(() => this.commitInBackground(), GROUP_COMMIT_MS);
      this.groupTimer.unref();
      this.grouped = 0;
    }
    const r = this.run<T>(cmd);
    if (++this.grouped >= GROUP_COMMIT_MAX) this.commit();
    return r;
  }

  /** One command in its transaction or savepoint; a rollback also forgets the cached counters. */
  private run<T>(cmd: Command): T {
    try {
      return this.tx(cmd) as T;
    } catch (e) {
      this.counters.clear();
      throw e;
    }
  }

  /** Commits the commands applied so far (made durable by the next durable apply or sync()). */
  commit(): void {
    if (this.groupTimer) clearTimeout(this.groupTimer);
    this.groupTimer = undefined;
    if (!this.db.inTransaction) return;
    try {
      this.db.exec('COMMIT');
    } catch (e) {
      if (!/SQLITE_(FULL|IOERR|CORRUPT|READONLY|CANTOPEN|NOTADB)/.test(String((e as { code?: string }).code))) throw e;
      // Like a journal abort in ext4: what was acknowledged cannot be written, so nothing more
      // is accepted; reads go on. The caller sees EIO; the daemon log says why.
      this.broken = e as Error;
      this.counters.clear();
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch {
        // the connection went with the disk
      }
      throw new FsError('EIO', `metadata commit failed: ${(e as Error).message}`);
    }
  }

  private commitInBackground(): void {
    try {
      this.commit();
    } catch (e) {
      console.error(`hoardfs: ${(e as Error).message}; the volume refuses changes until it is remounted`);
    }
  }

  /** A consistent image of the whole database (plaintext: the caller seals it). */
  serialize(): Buffer {
    this.commit();
    return this.db.serialize();
  }

  /** Makes every commit so far durable (fsyncdir, syncfs). */
  sync(): void {
    this.apply({ op: 'setConfig', key: 'synced', value: null }, true);
  }

  // ---- reads ----

  inode(ino: number): InodeRow | undefined {
    // Raw rows: the hottest read of all (every getattr and lookup), 6 us instead of 9.
    const r = this.st.getInode.get(ino) as [bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, Buffer | null] | undefined;
    if (!r) return undefined;
    return {
      ino: Number(r[0]),
      mode: Number(r[1]),
      uid: Number(r[2]),
      gid: Number(r[3]),
      nlink: Number(r[4]),
      size: Number(r[5]),
      rdev: Number(r[6]),
      atime: r[7],
      mtime: r[8],
      ctime: r[9],
      target: r[10] ?? null,
    };
  }

  lookup(parent: number, name: Buffer): number | undefined {
    return this.st.lookup.get(parent, name) as number | undefined;
  }

  parentOf(ino: number): number | undefined {
    if (ino === ROOT_INO) return ROOT_INO;
    const r = this.st.parentOf.get(ino) as Row | undefined;
    return r ? (r.parent as number) : undefined;
  }

  readdir(dir: number, afterCookie: number, limit: number): { name: Buffer; ino: number; cookie: number; mode: number }[] {
    return this.st.readdir.all(dir, afterCookie, limit) as { name: Buffer; ino: number; cookie: number; mode: number }[];
  }

  childCount(dir: number): number {
    return (this.st.countChildren.get(dir) as Row).n as number;
  }

  /** Extents overlapping [start, end), in order. */
  extents(ino: number, start: number, end: number): ExtentRow[] {
    const out: ExtentRow[] = [];
    const first = this.st.extAt.get(ino, start) as ExtentRow | undefined;
    if (first && first.off + first.len > start) out.push(first);
    for (const e of this.st.extAfter.all(ino, start, end) as ExtentRow[]) out.push(e);
    return out;
  }

  /**
   * The extents overlapping [start, end) with where their chunks are: what a read needs, in one
   * query (extents then a chunk lookup per extent took three times as long). A chunk that is
   * missing comes back without a location.
   */
  readMap(ino: number, start: number, end: number): MappedExtent[] {
    const out: MappedExtent[] = [];
    for (const r of this.st.readMap.all({ ino, start, end }) as [number, number, number, number, Buffer | null, number, number, number, number, number][]) {
      if (r[0] + r[1] <= start) continue; // the extent before start ends in a hole
      out.push({
        off: r[0],
        len: r[1],
        chunk: r[2],
        chunkOff: r[3],
        at: r[4] && r[9] !== null ? { hash: r[4], segment: r[5], off: r[6], storedLen: r[7], plainLen: r[8], height: r[9] } : undefined,
      });
    }
    return out;
  }

  allExtents(ino: number): ExtentRow[] {
    return this.st.extAll.all(ino) as ExtentRow[];
  }

  chunkByHash(hash: Buffer): ChunkRow | undefined {
    return this.st.chunkByHash.get(hash) as ChunkRow | undefined;
  }

  getxattr(ino: number, name: Buffer): Buffer | undefined {
    return (this.st.xget.get(ino, name) as Row | undefined)?.value as Buffer | undefined;
  }

  /** Whether any inode has this extended attribute (a scan: for mount time, not per request). */
  anyXattrNamed(name: Buffer): boolean {
    return this.db.prepare('SELECT 1 FROM xattrs WHERE name = ? LIMIT 1').get(name) !== undefined;
  }

  listxattr(ino: number): Buffer[] {
    return (this.st.xlist.all(ino) as Row[]).map((r) => r.name as Buffer);
  }

  orphans(): number[] {
    return (this.st.orphans.all() as Row[]).map((r) => r.ino as number);
  }

  usedRows(): number[] {
    return (this.st.usedRows.all() as Row[]).map((r) => r.row as number);
  }

  segments(): SegmentRow[] {
    return this.db.prepare('SELECT row, height, bytes, live, state FROM segments ORDER BY row').all() as SegmentRow[];
  }

  chunksInSegment(row: number): ChunkRow[] {
    return this.db
      .prepare('SELECT c.id, c.hash, c.segment, c.off, c.stored_len AS storedLen, c.plain_len AS plainLen, c.refs, s.height FROM chunks c JOIN segments s ON s.row = c.segment WHERE c.segment = ? ORDER BY c.off')
      .all(row) as ChunkRow[];
  }

  /** Paths of files whose data lives in any of the given chunks (for damage reports). */
  filesUsingChunks(chunkIds: number[]): string[] {
    const inos = new Set<number>();
    const q = this.db.prepare('SELECT DISTINCT ino FROM extents WHERE chunk = ?');
    for (const id of chunkIds) for (const r of q.all(id) as Row[]) inos.add(r.ino as number);
    return [...inos].map((ino) => this.pathOf(ino)).sort();
  }

  pathOf(ino: number): string {
    const parts: string[] = [];
    let cur = ino;
    for (let depth = 0; cur !== ROOT_INO && depth < 4096; depth++) {
      const r = this.db.prepare('SELECT parent, name FROM dirents WHERE ino = ? LIMIT 1').get(cur) as Row | undefined;
      if (!r) return `<inode ${ino}, unlinked>`;
      parts.unshift((r.name as Buffer).toString());
      cur = r.parent as number;
    }
    return '/' + parts.join('/');
  }

  stats(): { files: number; directories: number; logicalBytes: number; referencedBytes: number; storedBytes: number; uniqueBytes: number; chunks: number; segments: number; segmentBytes: number } {
    const one = (sql: string) => (this.db.prepare(sql).get() as Row).v as number;
    return {
      files: one(`SELECT count(*) AS v FROM inodes WHERE (mode & ${S_IFMT}) = ${S_IFREG}`),
      directories: one(`SELECT count(*) AS v FROM inodes WHERE (mode & ${S_IFMT}) = ${S_IFDIR}`),
      logicalBytes: one(`SELECT coalesce(sum(size), 0) AS v FROM inodes WHERE (mode & ${S_IFMT}) = ${S_IFREG}`),
      referencedBytes: one('SELECT coalesce(sum(len), 0) AS v FROM extents'),
      uniqueBytes: one('SELECT coalesce(sum(plain_len), 0) AS v FROM chunks'),
      storedBytes: one('SELECT coalesce(sum(stored_len), 0) AS v FROM chunks'),
      chunks: one('SELECT count(*) AS v FROM chunks'),
      segments: one('SELECT count(*) AS v FROM segments WHERE state = 1'),
      segmentBytes: one('SELECT coalesce(sum(bytes), 0) AS v FROM segments WHERE state = 1'),
    };
  }

  /** Refcounts, dangling references and orphans; with repair, fixes what can be fixed without data. */
  check(repair: boolean): { problems: string[]; repaired: number } {
    const problems: string[] = [];
    let repaired = 0;
    const wrongRefs = this.db
      .prepare('SELECT c.id, c.refs, (SELECT count(*) FROM extents e WHERE e.chunk = c.id) AS actual FROM chunks c WHERE c.refs != (SELECT count(*) FROM extents e WHERE e.chunk = c.id)')
      .all() as Row[];
    for (const r of wrongRefs) problems.push(`chunk ${r.id}: refcount ${r.refs}, but ${r.actual} extents reference it`);
    const dangling = this.db.prepare('SELECT e.ino, e.off, e.chunk FROM extents e LEFT JOIN chunks c ON c.id = e.chunk WHERE c.id IS NULL').all() as Row[];
    for (const r of dangling) problems.push(`inode ${r.ino} offset ${r.off}: references missing chunk ${r.chunk}`);
    const noSegment = this.db.prepare('SELECT c.id, c.segment FROM chunks c LEFT JOIN segments s ON s.row = c.segment WHERE s.row IS NULL').all() as Row[];
    for (const r of noSegment) problems.push(`chunk ${r.id}: in segment ${r.segment}, which is not allocated`);
    const badDirents = this.db.prepare('SELECT d.parent, d.name, d.ino FROM dirents d LEFT JOIN inodes i ON i.ino = d.ino WHERE i.ino IS NULL').all() as Row[];
    for (const r of badDirents) problems.push(`entry ${(r.name as Buffer).toString()} in directory ${r.parent}: points to missing inode ${r.ino}`);
    const badLinks = this.db
      .prepare(`SELECT i.ino, i.nlink, (SELECT count(*) FROM dirents d WHERE d.ino = i.ino) AS n FROM inodes i WHERE (i.mode & ${S_IFMT}) != ${S_IFDIR} AND i.nlink != (SELECT count(*) FROM dirents d WHERE d.ino = i.ino) AND i.ino NOT IN (SELECT ino FROM orphans)`)
      .all() as Row[];
    for (const r of badLinks) problems.push(`inode ${r.ino}: link count ${r.nlink}, but ${r.n} entries name it`);
    const lost = this.db
      .prepare(`SELECT i.ino FROM inodes i WHERE i.ino != ${ROOT_INO} AND NOT EXISTS (SELECT 1 FROM dirents d WHERE d.ino = i.ino) AND i.ino NOT IN (SELECT ino FROM orphans)`)
      .all() as Row[];
    for (const r of lost) problems.push(`inode ${r.ino}: not in any directory`);
    if (repair && problems.length) {
      this.db.transaction(() => {
        for (const r of dangling) {
          this.db.prepare('DELETE FROM extents WHERE ino = ? AND off = ?').run(r.ino, r.off);
          repaired++;
        }
        for (const r of badDirents) {
          this.st.delDirent.run(r.parent, r.name);
          repaired++;
        }
        for (const r of lost) {
          this.st.addOrphan.run(r.ino);
          this.db.prepare('UPDATE inodes SET nlink = 0 WHERE ino = ?').run(r.ino);
          repaired++;
        }
        for (const r of badLinks) {
          this.db.prepare('UPDATE inodes SET nlink = ? WHERE ino = ?').run(r.n, r.ino);
          repaired++;
        }
        this.db.exec('UPDATE chunks SET refs = (SELECT count(*) FROM extents e WHERE e.chunk = chunks.id)');
        repaired += wrongRefs.length;
      })();
      this.sync();
    }
    return { problems, repaired };
  }

  // ---- command application ----

  /** Counters (next_ino, next_cookie, applied) are written through and read from here. */
  private counter(key: string): number {
    const v = this.counters.get(key) ?? Number(this.config(key));
    this.st.setConfig.run(key, v + 1);
    this.counters.set(key, v + 1);
    return v;
  }

  private need(ino: number): InodeRow {
    const i = this.inode(ino);
    if (!i) throw new FsError('ENOENT');
    return i;
  }

  private needDir(ino: number): InodeRow {
    const i = this.need(ino);
    if (!isDir(i.mode)) throw new FsError('ENOTDIR');
    return i;
  }

  private dispatch(cmd: Command): unknown {
    this.counter('applied');
    switch (cmd.op) {
      case 'mknod':
        return this.mknod(cmd);
      case 'link': {
        const parent = this.needDir(cmd.parent);
        void parent;
        const i = this.need(cmd.ino);
        if (isDir(i.mode)) throw new FsError('EPERM');
        if (i.nlink === 0) throw new FsError('ENOENT');
        if (this.lookup(cmd.parent, cmd.name) !== undefined) throw new FsError('EEXIST');
        this.st.insDirent.run(cmd.parent, cmd.name, cmd.ino, this.counter('next_cookie'));
        this.st.setNlink.run(i.nlink + 1, cmd.now, cmd.ino);
        this.st.touchDir.run(cmd.now, cmd.now, cmd.parent);
        return undefined;
      }
      case 'unlink': {
        this.needDir(cmd.parent);
        const ino = this.lookup(cmd.parent, cmd.name);
        if (ino === undefined) throw new FsError('ENOENT');
        const i = this.need(ino);
        if (isDir(i.mode)) throw new FsError('EISDIR');
        this.st.delDirent.run(cmd.parent, cmd.name);
        this.st.touchDir.run(cmd.now, cmd.now, cmd.parent);
        const orphan = this.dropLink(i, cmd.now);
        if (orphan !== undefined && cmd.purge) this.purge(orphan);
        return orphan;
      }
      case 'rmdir': {
        this.needDir(cmd.parent);
        const ino = this.lookup(cmd.parent, cmd.name);
        if (ino === undefined) throw new FsError('ENOENT');
        const i = this.need(ino);
        if (!isDir(i.mode)) throw new FsError('ENOTDIR');
        if (this.st.anyChild.get(ino)) throw new FsError('ENOTEMPTY');
        this.st.delDirent.run(cmd.parent, cmd.name);
        this.st.addNlink.run(-1, cmd.parent);
        this.st.touchDir.run(cmd.now, cmd.now, cmd.parent);
        this.st.setNlink.run(0, cmd.now, ino);
        this.st.addOrphan.run(ino);
        return ino;
      }
      case 'rename':
        return this.rename(cmd);
      case 'setattr':
        return this.setattr(cmd.ino, cmd.set, cmd.now);
      case 'setxattr': {
        this.need(cmd.ino);
        const exists = this.st.xget.get(cmd.ino, cmd.name) !== undefined;
        if (cmd.flags & XATTR_CREATE && exists) throw new FsError('EEXIST');
        if (cmd.flags & XATTR_REPLACE && !exists) throw new FsError('ENODATA');
        this.st.xset.run(cmd.ino, cmd.name, cmd.value);
        this.st.touchCtime.run(cmd.now, cmd.ino);
        return undefined;
      }
      case 'removexattr': {
        this.need(cmd.ino);
        if (this.st.xdel.run(cmd.ino, cmd.name).changes === 0) throw new FsError('ENODATA');
        this.st.touchCtime.run(cmd.now, cmd.ino);
        return undefined;
      }
      case 'write':
        return this.write(cmd.segments, cmd.chunks, cmd.files, cmd.now);
      case 'purge':
        return this.purge(cmd.ino);
      case 'gc':
        return this.gc(cmd.snapshotGeneration);
      case 'freeSegments': {
        const del = this.db.prepare('DELETE FROM segments WHERE row = ? AND state = 2');
        let n = 0;
        for (const r of cmd.rows) n += del.run(r).changes;
        return n;
      }
      case 'moveChunks': {
        for (const s of cmd.segments) this.st.insSegment.run(s.row, s.height, s.bytes, 0);
        const get = this.db.prepare('SELECT id, segment, stored_len FROM chunks WHERE hash = ?');
        const upd = this.db.prepare('UPDATE chunks SET segment = ?, off = ?, stored_len = ? WHERE id = ?');
        const live = this.db.prepare('UPDATE segments SET live = live + ? WHERE row = ?');
        for (const m of cmd.moves) {
          const c = get.get(m.hash) as Row | undefined;
          if (!c) continue;
          live.run(-(c.stored_len as number), c.segment);
          upd.run(m.segment, m.off, m.storedLen, c.id);
          live.run(m.storedLen, m.segment);
        }
        return undefined;
      }
      case 'rekeyChunks':
        return this.rekeyChunks(cmd);
      case 'setConfig':
        this.st.setConfig.run(cmd.key, cmd.value);
        this.counters.delete(cmd.key);
        return undefined;
      case 'snapshotTaken':
        return this.snapshotTaken(cmd.generation, cmd.createdAt, cmd.rows);
    }
  }

  private mknod(cmd: Extract<Command, { op: 'mknod' }>): number {
    const parent = this.needDir(cmd.parent);
    if (parent.nlink === 0) throw new FsError('ENOENT');
    if (this.lookup(cmd.parent, cmd.name) !== undefined) throw new FsError('EEXIST');
    const ino = this.counter('next_ino');
    const dir = isDir(cmd.mode);
    this.st.insInode.run(ino, cmd.mode, cmd.uid, cmd.gid, dir ? 2 : 1, cmd.rdev, cmd.now, cmd.now, cmd.now, cmd.target ?? null);
    if (cmd.target) this.db.prepare('UPDATE inodes SET size = ? WHERE ino = ?').run(cmd.target.length, ino);
    this.st.insDirent.run(cmd.parent, cmd.name, ino, this.counter('next_cookie'));
    if (dir) this.st.addNlink.run(1, cmd.parent);
    this.st.touchDir.run(cmd.now, cmd.now, cmd.parent);
    return ino;
  }

  /** Returns the inode number when its last link went away (it is now an orphan). */
  private dropLink(i: InodeRow, now: bigint): number | undefined {
    const n = i.nlink - 1;
    this.st.setNlink.run(Math.max(0, n), now, i.ino);
    if (n <= 0) {
      this.st.addOrphan.run(i.ino);
      return i.ino;
    }
    return undefined;
  }

  private isAncestor(ancestor: number, ino: number): boolean {
    for (let cur = ino, depth = 0; depth < 65536; depth++) {
      if (cur === ancestor) return true;
      if (cur === ROOT_INO) return false;
      const p = this.parentOf(cur);
      if (p === undefined) return false;
      cur = p;
    }
    return false;
  }

  private rename(cmd: Extract<Command, { op: 'rename' }>): number | undefined {
    const { parent, name, newParent, newName, flags, now } = cmd;
    this.needDir(parent);
    this.needDir(newParent);
    const srcIno = this.lookup(parent, name);
    if (srcIno === undefined) throw new FsError('ENOENT');
    const src = this.need(srcIno);
    const dstIno = this.lookup(newParent, newName);
    if (flags & RENAME_EXCHANGE) {
      if (dstIno === undefined) throw new FsError('ENOENT');
      const dst = this.need(dstIno);
      if (isDir(src.mode) && this.isAncestor(srcIno, newParent)) throw new FsError('EINVAL');
      if (isDir(dst.mode) && this.isAncestor(dstIno, parent)) throw new FsError('EINVAL');
      this.st.setDirentIno.run(dstIno, parent, name);
      this.st.setDirentIno.run(srcIno, newParent, newName);
      if (parent !== newParent) {
        const d = (isDir(src.mode) ? 1 : 0) - (isDir(dst.mode) ? 1 : 0);
        if (d) {
          this.st.addNlink.run(-d, parent);
          this.st.addNlink.run(d, newParent);
        }
      }
      this.st.touchCtime.run(now, srcIno);
      this.st.touchCtime.run(now, dstIno);
      this.st.touchDir.run(now, now, parent);
      this.st.touchDir.run(now, now, newParent);
      return undefined;
    }
    if (dstIno !== undefined && flags & RENAME_NOREPLACE) throw new FsError('EEXIST');
    if (isDir(src.mode) && srcIno !== newParent && this.isAncestor(srcIno, newParent)) throw new FsError('EINVAL');
    if (isDir(src.mode) && srcIno === newParent) throw new FsError('EINVAL');
    let orphan: number | undefined;
    if (dstIno !== undefined) {
      if (dstIno === srcIno) return undefined; // two names of one inode: POSIX says do nothing
      const dst = this.need(dstIno);
      if (isDir(src.mode) && !isDir(dst.mode)) throw new FsError('ENOTDIR');
      if (!isDir(src.mode) && isDir(dst.mode)) throw new FsError('EISDIR');
      if (isDir(dst.mode)) {
        if (this.st.anyChild.get(dstIno)) throw new FsError('ENOTEMPTY');
        this.st.addNlink.run(-1, newParent);
        this.st.setNlink.run(0, now, dstIno);
        this.st.addOrphan.run(dstIno);
        orphan = dstIno;
      } else {
        orphan = this.dropLink(dst, now);
      }
      this.st.delDirent.run(newParent, newName);
    }
    this.st.delDirent.run(parent, name);
    this.st.insDirent.run(newParent, newName, srcIno, this.counter('next_cookie'));
    if (isDir(src.mode) && parent !== newParent) {
      this.st.addNlink.run(-1, parent);
      this.st.addNlink.run(1, newParent);
    }
    this.st.touchCtime.run(now, srcIno);
    this.st.touchDir.run(now, now, parent);
    if (newParent !== parent) this.st.touchDir.run(now, now, newParent);
    return orphan;
  }

  private setattr(ino: number, set: AttrChange, now: bigint): void {
    const i = this.need(ino);
    const mode = set.mode !== undefined ? (i.mode & S_IFMT) | (set.mode & 0o7777) : i.mode;
    let size = i.size;
    let mtime = set.mtime ?? i.mtime;
    if (set.size !== undefined && set.size !== i.size) {
      if (isDir(i.mode)) throw new FsError('EISDIR');
      if (set.size < i.size) this.dropExtentsFrom(ino, set.size);
      size = set.size;
      if (set.mtime === undefined) mtime = now;
    }
    this.st.setAttrs.run(mode, set.uid ?? i.uid, set.gid ?? i.gid, size, set.atime ?? i.atime, mtime, now, ino);
  }

  private chunkIdOf(hash: Buffer): number {
    const r = this.st.chunkIdByHash.get(hash) as Row | undefined;
    if (!r) throw new MetadataError(`chunk ${hash.toString('hex').slice(0, 16)} is not in the store`);
    return r.id as number;
  }

  /** Removes [start, end) from the extent map, keeping refcounts exact. */
  private punch(ino: number, start: number, end: number): void {
    for (const e of this.extents(ino, start, end)) {
      const eEnd = e.off + e.len;
      this.st.delExt.run(ino, e.off);
      let refs = -1;
      if (e.off < start) {
        this.st.insExt.run(ino, e.off, start - e.off, e.chunk, e.chunkOff);
        refs++;
      }
      if (eEnd > end) {
        this.st.insExt.run(ino, end, eEnd - end, e.chunk, e.chunkOff + (end - e.off));
        refs++;
      }
      if (refs) this.st.addRef.run(refs, e.chunk);
    }
  }

  private dropExtentsFrom(ino: number, size: number): void {
    const first = this.st.extAt.get(ino, size) as ExtentRow | undefined;
    if (first && first.off < size && first.off + first.len > size) {
      this.st.delExt.run(ino, first.off);
      this.st.insExt.run(ino, first.off, size - first.off, first.chunk, first.chunkOff);
    }
    for (const e of this.st.extFrom.all(ino, size) as ExtentRow[]) {
      this.st.delExt.run(ino, e.off);
      this.st.addRef.run(-1, e.chunk);
    }
  }

  private write(segments: { row: number; height: number; bytes: number }[], chunks: NewChunk[], files: FileUpdate[], _now: bigint): void {
    for (const s of segments) this.st.insSegment.run(s.row, s.height, s.bytes, 0);
    // Ids of the chunks this command stores, and live bytes per segment: one statement each
    // instead of a lookup per extent and an update per chunk.
    const ids = new Map<string, number>();
    const live = new Map<number, number>();
    for (const c of chunks) {
      // Another file in the same batch, or an earlier batch, may have stored it already.
      if (this.st.chunkIdByHash.get(c.hash)) continue;
      ids.set(c.hash.toString('latin1'), Number(this.st.insChunk.run(c.hash, c.segment, c.off, c.storedLen, c.plainLen).lastInsertRowid));
      live.set(c.segment, (live.get(c.segment) ?? 0) + c.storedLen);
    }
    if (live.size) {
      const addLive = this.db.prepare('UPDATE segments SET live = live + ? WHERE row = ?');
      for (const [row, n] of live) addLive.run(n, row);
    }
    for (const f of files) {
      const i = this.inode(f.ino);
      if (!i) continue; // purged while its data was in flight
      this.applyExtents(f.ino, f.extents, ids);
      // The change happened at the write, not when its batch commits: a later ctime would tell
      // tar and rsync that a file changed under them.
      this.st.setSizeMtime.run(f.size, f.mtime, f.mtime, f.ino);
    }
  }

  private applyExtents(ino: number, extents: ExtentRef[], ids?: Map<string, number>): void {
    // Past the end of the last stored extent there is nothing to punch: appends (the common
    // case) skip the overlap search. A batch's extents of one file are sorted and disjoint.
    const last = this.st.extAt.get(ino, Number.MAX_SAFE_INTEGER) as ExtentRow | undefined;
    let stored = last ? last.off + last.len : 0;
    let prev = -1;
    for (const e of extents) {
      if (e.off < stored || e.off < prev) {
        this.punch(ino, e.off, e.off + e.len);
        stored = Math.max(stored, e.off + e.len);
      }
      prev = e.off + e.len;
      const id = ids?.get(e.hash.toString('latin1')) ?? this.chunkIdOf(e.hash);
      this.st.insExt.run(ino, e.off, e.len, id, e.chunkOff);
      this.st.addRef.run(1, id);
    }
  }

  private purge(ino: number): void {
    const i = this.inode(ino);
    if (!i) return;
    if (i.nlink > 0) {
      this.st.delOrphan.run(ino);
      return;
    }
    for (const e of this.st.extAll.all(ino) as ExtentRow[]) this.st.addRef.run(-1, e.chunk);
    this.st.delExtAll.run(ino);
    this.st.xdelAll.run(ino);
    this.st.delInode.run(ino);
    this.st.delOrphan.run(ino);
  }

  /**
   * Drops chunks nothing references; a segment left with no live chunk is freed into quarantine
   * (state 2) stamped with the snapshot generation, so rows the newest snapshot may still point
   * into are not overwritten before a newer snapshot exists.
   */
  private gc(snapshotGeneration: number): { chunks: number; bytes: number; segments: number[] } {
    const dead = this.db.prepare('SELECT id, segment, stored_len FROM chunks WHERE refs = 0').all() as Row[];
    const live = this.db.prepare('UPDATE segments SET live = live - ? WHERE row = ?');
    const del = this.db.prepare('DELETE FROM chunks WHERE id = ?');
    let bytes = 0;
    for (const c of dead) {
      del.run(c.id);
      live.run(c.stored_len, c.segment);
      bytes += c.stored_len as number;
    }
    const emptied = this.db
      .prepare('SELECT row FROM segments WHERE state = 1 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.segment = segments.row)')
      .all() as Row[];
    const free = this.db.prepare('UPDATE segments SET state = 2, live = 0, freed_at = ? WHERE row = ?');
    for (const s of emptied) free.run(snapshotGeneration, s.row);
    return { chunks: dead.length, bytes, segments: emptied.map((s) => s.row as number) };
  }

  /**
   * Records the newest snapshot's rows (state 3) and hands back the rows that are now free: the
   * previous snapshot's, and quarantined ones freed before this snapshot was taken.
   */
  private snapshotTaken(generation: number, createdAt: string, rows: { row: number; height: number; bytes: number }[]): number[] {
    const old = (this.db.prepare('SELECT row FROM segments WHERE state IN (2, 3) AND (state = 3 OR freed_at < ?)').all(generation) as Row[]).map((r) => r.row as number);
    this.db.prepare('DELETE FROM segments WHERE state = 3 OR (state = 2 AND freed_at < ?)').run(generation);
    const ins = this.db.prepare('INSERT INTO segments (row, height, bytes, live, state) VALUES (?, ?, ?, 0, 3)');
    for (const r of rows) ins.run(r.row, r.height, r.bytes);
    this.st.setConfig.run('snapshot_generation', generation);
    this.st.setConfig.run('snapshot_created', createdAt);
    this.st.setConfig.run('snapshot_applied', Number(this.config('applied')));
    const kept = new Set(rows.map((r) => r.row));
    return old.filter((r) => !kept.has(r));
  }

  /**
   * Re-sealed chunks take their new id and placement; a chunk whose new id is already stored
   * (written under the new key during the rotation) is merged into that one. Returns the rows
   * of old segments left empty, now quarantined.
   */
  private rekeyChunks(cmd: Extract<Command, { op: 'rekeyChunks' }>): number[] {
    for (const s of cmd.segments) this.st.insSegment.run(s.row, s.height, s.bytes, 0);
    const get = this.db.prepare('SELECT id, segment, stored_len, refs FROM chunks WHERE hash = ?');
    const live = this.db.prepare('UPDATE segments SET live = live + ? WHERE row = ?');
    const upd = this.db.prepare('UPDATE chunks SET hash = ?, segment = ?, off = ?, stored_len = ?, key_gen = ? WHERE id = ?');
    const touched = new Set<number>();
    for (const m of cmd.moves) {
      const c = get.get(m.from) as Row | undefined;
      if (!c) continue; // collected while it was being re-sealed
      touched.add(c.segment as number);
      live.run(-(c.stored_len as number), c.segment);
      const other = get.get(m.hash) as Row | undefined;
      if (other && other.id !== c.id) {
        this.db.prepare('UPDATE extents SET chunk = ? WHERE chunk = ?').run(other.id, c.id);
        this.st.addRef.run(c.refs, other.id);
        this.db.prepare('DELETE FROM chunks WHERE id = ?').run(c.id);
      } else {
        upd.run(m.hash, m.segment, m.off, m.storedLen, cmd.keyGen, c.id);
        live.run(m.storedLen, m.segment);
      }
    }
    const empty = this.db.prepare('SELECT 1 FROM chunks WHERE segment = ? LIMIT 1');
    const free = this.db.prepare('UPDATE segments SET state = 2, live = 0, freed_at = ? WHERE row = ? AND state = 1');
    const freed: number[] = [];
    for (const row of touched) if (!empty.get(row) && free.run(cmd.snapshotGeneration, row).changes) freed.push(row);
    return freed;
  }

  /** Re-keys the database in place (SQLite3MultipleCiphers' rekey needs a rollback journal). */
  rekey(hexKey: string): void {
    this.sync();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.pragma('journal_mode = DELETE');
    this.db.pragma(`rekey = '${hexKey}'`);
    this.db.pragma('journal_mode = WAL');
  }

  /** Chunks still sealed under a key generation older than keyGen (reencrypt). */
  chunksBeforeKeyGen(keyGen: number): { n: number; b: number } {
    return this.db.prepare('SELECT count(*) AS n, coalesce(sum(plain_len), 0) AS b FROM chunks WHERE key_gen < ?').get(keyGen) as { n: number; b: number };
  }

  chunksUnderOldKeys(keyGen: number, limit: number): { hash: Buffer; segment: number; off: number; storedLen: number; plainLen: number; height: number }[] {
    return this.db
      .prepare('SELECT c.hash, c.segment, c.off, c.stored_len AS storedLen, c.plain_len AS plainLen, s.height FROM chunks c JOIN segments s ON s.row = c.segment WHERE c.key_gen < ? ORDER BY c.segment, c.off LIMIT ?')
      .all(keyGen, limit) as { hash: Buffer; segment: number; off: number; storedLen: number; plainLen: number; height: number }[];
  }

  chunkPlacements(): { id: number; segment: number; off: number; storedLen: number }[] {
    return this.db.prepare('SELECT id, segment, off, stored_len AS storedLen FROM chunks').all() as { id: number; segment: number; off: number; storedLen: number }[];
  }

  inodeCount(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM inodes').get() as Row).n as number;
  }

  garbageChunks(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM chunks WHERE refs = 0').get() as Row).n as number;
  }

  /** True when a command was applied since the newest snapshot. */
  changedSinceSnapshot(): boolean {
    return Number(this.config('applied')) !== Number(this.config('snapshot_applied') ?? -1);
  }

  /** Quarantined rows that a snapshot newer than their freeing no longer needs. */
  releasableRows(snapshotGeneration: number): number[] {
    return (this.db.prepare('SELECT row FROM segments WHERE state = 2 AND freed_at < ?').all(snapshotGeneration) as Row[]).map((r) => r.row as number);
  }

  /** Segments whose live fraction is low, for compaction. */
  sparseSegments(maxLiveFraction: number, limit: number): SegmentRow[] {
    return this.db
      .prepare('SELECT row, height, bytes, live, state FROM segments WHERE state = 1 AND bytes > 0 AND live < bytes * ? ORDER BY live LIMIT ?')
      .all(maxLiveFraction, limit) as SegmentRow[];
  }
}

export function isDirMode(mode: number): boolean {
  return isDir(mode);
}
