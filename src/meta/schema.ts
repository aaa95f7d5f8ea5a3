// The metadata schema. One SQLite database per volume, encrypted by SQLite3MultipleCiphers when the
// volume is. Every change is one Command (commands.ts) applied in one transaction.

export const SCHEMA_VERSION = 2; // 2: chunks.key_gen (hoardfs reencrypt)
export const MAGIC = 'hoardfs-metadata';

export const SCHEMA = `
CREATE TABLE config (key TEXT PRIMARY KEY, value) WITHOUT ROWID;

-- Times are nanoseconds since the epoch (int64 lasts until 2262).
CREATE TABLE inodes (
  ino INTEGER PRIMARY KEY,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  nlink INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  rdev INTEGER NOT NULL DEFAULT 0,
  atime INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  ctime INTEGER NOT NULL,
  target BLOB            -- symlink target
);

-- cookie: a stable readdir offset, so that listing a 100k-entry directory is linear.
CREATE TABLE dirents (
  parent INTEGER NOT NULL,
  name BLOB NOT NULL,
  ino INTEGER NOT NULL,
  cookie INTEGER NOT NULL,
  PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE UNIQUE INDEX dirents_by_cookie ON dirents (parent, cookie);
CREATE INDEX dirents_by_ino ON dirents (ino);

-- A file is a map of extents, each a slice of one chunk. Holes are the absence of extents.
CREATE TABLE extents (
  ino INTEGER NOT NULL,
  off INTEGER NOT NULL,
  len INTEGER NOT NULL,
  chunk INTEGER NOT NULL,
  chunk_off INTEGER NOT NULL,
  PRIMARY KEY (ino, off)
) WITHOUT ROWID;
CREATE INDEX extents_by_chunk ON extents (chunk);

-- hash: the keyed chunk id. refs: how many extents point into the chunk (exact, checked by fsck).
-- key_gen: the master-key generation the chunk is sealed (and its id keyed) under; only differs
-- from config 'key_gen' while 'hoardfs reencrypt' is rotating the master key.
CREATE TABLE chunks (
  id INTEGER PRIMARY KEY,
  hash BLOB NOT NULL UNIQUE,
  segment INTEGER NOT NULL,
  off INTEGER NOT NULL,
  stored_len INTEGER NOT NULL,
  plain_len INTEGER NOT NULL,
  refs INTEGER NOT NULL,
  key_gen INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX chunks_by_segment ON chunks (segment);
CREATE INDEX chunks_by_key_gen ON chunks (key_gen);
CREATE INDEX chunks_garbage ON chunks (refs) WHERE refs = 0;

-- A segment is one full-stripe row of the RAID layer, written once. state 1 = live,
-- 2 = freed but quarantined until a newer metadata snapshot exists (the snapshot may still
-- point into it), then the row is deleted and reusable.
CREATE TABLE segments (
  row INTEGER PRIMARY KEY,
  height INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  live INTEGER NOT NULL,
  state INTEGER NOT NULL DEFAULT 1,
  freed_at INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE xattrs (
  ino INTEGER NOT NULL,
  name BLOB NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (ino, name)
) WITHOUT ROWID;

-- Open-but-unlinked inodes live here until their last close (or the next mount after a crash).
CREATE TABLE orphans (ino INTEGER PRIMARY KEY);
`;
