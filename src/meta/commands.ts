// Every change to the metadata is one of these commands, applied in one SQLite transaction.
// A command carries everything that is not a function of the database state (times, chunk
// placements, the ids of chunks written to the devices), so that applying the same command
// log to the same starting state gives the same database: what crash safety needs now and
// what replication through a consensus log needs later.

export interface NewChunk {
  hash: Buffer;
  segment: number;
  off: number;
  storedLen: number;
  plainLen: number;
}

export interface NewSegment {
  row: number;
  height: number;
  bytes: number;
}

export interface ExtentRef {
  off: number;
  len: number;
  hash: Buffer;
  chunkOff: number;
}

export interface FileUpdate {
  ino: number;
  size: number;
  mtime: bigint;
  extents: ExtentRef[];
}

export interface AttrChange {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: bigint;
  mtime?: bigint;
}

export type Command =
  | { op: 'mknod'; parent: number; name: Buffer; mode: number; uid: number; gid: number; rdev: number; target?: Buffer; now: bigint }
  | { op: 'link'; ino: number; parent: number; name: Buffer; now: bigint }
  /** purge: the caller knows nothing holds the file open, so its last link takes the inode too. */
  | { op: 'unlink'; parent: number; name: Buffer; now: bigint; purge?: boolean }
  | { op: 'rmdir'; parent: number; name: Buffer; now: bigint }
  | { op: 'rename'; parent: number; name: Buffer; newParent: number; newName: Buffer; flags: number; now: bigint }
  | { op: 'setattr'; ino: number; set: AttrChange; now: bigint }
  | { op: 'setxattr'; ino: number; name: Buffer; value: Buffer; flags: number; now: bigint }
  | { op: 'removexattr'; ino: number; name: Buffer; now: bigint }
  | { op: 'write'; now: bigint; segments: NewSegment[]; chunks: NewChunk[]; files: FileUpdate[] }
  | { op: 'purge'; ino: number }
  | { op: 'gc'; now: bigint; snapshotGeneration: number }
  | { op: 'freeSegments'; rows: number[] }
  | { op: 'moveChunks'; segments: NewSegment[]; moves: { hash: Buffer; segment: number; off: number; storedLen: number }[] }
  | { op: 'setConfig'; key: string; value: string | number | null }
  // hoardfs reencrypt: chunks re-sealed under master-key generation keyGen, with their new ids
  // (from = the id under the previous key). Emptied segments go to quarantine (as gc does).
  | { op: 'rekeyChunks'; keyGen: number; snapshotGeneration: number; segments: NewSegment[]; moves: { from: Buffer; hash: Buffer; segment: number; off: number; storedLen: number }[] }
  | { op: 'snapshotTaken'; generation: number; createdAt: string; rows: NewSegment[] };
