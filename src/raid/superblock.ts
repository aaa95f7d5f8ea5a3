// Device superblock: 4 KiB, stored twice at the head of every device. Every device carries the
// whole member table (like md), so any surviving device can describe the array, and the copy with
// the highest generation is the truth. The SHA-256 covers the whole 4 KiB minus itself, so a torn
// write of one copy is detected and the other copy (written after a sync) is used.

import { createHash } from 'node:crypto';
import type { LayoutSpec, RaidLevel } from './layout.ts';
import { SB_SIZE } from './layout.ts';

export const MAGIC = Buffer.from('HOARDDEV', 'latin1');
export const FORMAT_VERSION = 1;

export type PersistedState = 'ONLINE' | 'FAULTED' | 'REBUILDING';
const STATE_CODE: Record<PersistedState, number> = { ONLINE: 1, FAULTED: 2, REBUILDING: 3 };
const CODE_STATE: Record<number, PersistedState> = { 1: 'ONLINE', 2: 'FAULTED', 3: 'REBUILDING' };

export interface MemberEntry {
  deviceId: Buffer;
  state: PersistedState;
  cursor: number; // rebuild cursor: last row index rebuilt, -1 before the first
}

export interface Superblock {
  generation: number;
  volumeId: Buffer;
  deviceId: Buffer;
  slot: number; // -1 for a spare
  layout: Required<LayoutSpec>;
  rows: number;
  dataStart: number;
  members: MemberEntry[];
  spares: Buffer[];
}

const HDR = 96;
const MEMBER = 32;
const SUM_OFF = SB_SIZE - 32;

export function encodeSuperblock(sb: Superblock): Buffer {
  const need = HDR + sb.members.length * MEMBER + sb.spares.length * 16;
  if (need > SUM_OFF) throw new Error(`superblock too large (${sb.members.length} members, ${sb.spares.length} spares)`);
  const b = Buffer.alloc(SB_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  b.writeUInt32LE(need, 12);
  b.writeBigUInt64LE(BigInt(sb.generation), 16);
  sb.volumeId.copy(b, 24, 0, 16);
  sb.deviceId.copy(b, 40, 0, 16);
  b.writeInt32LE(sb.slot, 56);
  b.writeUInt8(sb.layout.level, 60);
  b.writeUInt8(sb.layout.mirrors, 61);
  b.writeUInt16LE(sb.layout.devices, 62);
  b.writeUInt16LE(sb.layout.groupSize, 64);
  b.writeUInt16LE(sb.spares.length, 66);
  b.writeUInt32LE(sb.layout.stripSize, 68);
  b.writeBigUInt64LE(BigInt(sb.rows), 72);
  b.writeBigUInt64LE(BigInt(sb.dataStart), 80);
  let off = HDR;
  for (const m of sb.members) {
    m.deviceId.copy(b, off, 0, 16);
    b.writeUInt8(STATE_CODE[m.state], off + 16);
    b.writeBigInt64LE(BigInt(m.cursor), off + 24);
    off += MEMBER;
  }
  for (const s of sb.spares) {
    s.copy(b, off, 0, 16);
    off += 16;
  }
  createHash('sha256').update(b.subarray(0, SUM_OFF)).digest().copy(b, SUM_OFF);
  return b;
}

/** Returns null for anything that is not an intact hoardfs superblock of a known version. */
export function decodeSuperblock(b: Buffer): Superblock | null {
  if (b.length < SB_SIZE) return null;
  if (!b.subarray(0, 8).equals(MAGIC)) return null;
  const sum = createHash('sha256').update(b.subarray(0, SUM_OFF)).digest();
  if (!sum.equals(b.subarray(SUM_OFF, SB_SIZE))) return null;
  if (b.readUInt32LE(8) !== FORMAT_VERSION) return null;
  const n = b.readUInt16LE(62);
  const nsp = b.readUInt16LE(66);
  if (b.readUInt32LE(12) !== HDR + n * MEMBER + nsp * 16) return null;
  const members: MemberEntry[] = [];
  let off = HDR;
  for (let i = 0; i < n; i++) {
    const state = CODE_STATE[b.readUInt8(off + 16)];
    if (!state) return null;
    members.push({ deviceId: Buffer.from(b.subarray(off, off + 16)), state, cursor: Number(b.readBigInt64LE(off + 24)) });
    off += MEMBER;
  }
  // 64-bit fields beyond 2^53 would silently lose precision (a generation that compares wrong).
  const big = [b.readBigUInt64LE(16), b.readBigUInt64LE(72), b.readBigUInt64LE(80)];
  if (big.some((x) => x > BigInt(Number.MAX_SAFE_INTEGER))) return null;
  const spares: Buffer[] = [];
  for (let i = 0; i < nsp; i++) {
    spares.push(Buffer.from(b.subarray(off, off + 16)));
    off += 16;
  }
  return {
    generation: Number(b.readBigUInt64LE(16)),
    volumeId: Buffer.from(b.subarray(24, 40)),
    deviceId: Buffer.from(b.subarray(40, 56)),
    slot: b.readInt32LE(56),
    layout: {
      level: b.readUInt8(60) as RaidLevel,
      mirrors: b.readUInt8(61),
      devices: n,
      groupSize: b.readUInt16LE(64),
      stripSize: b.readUInt32LE(68),
    },
    rows: Number(b.readBigUInt64LE(72)),
    dataStart: Number(b.readBigUInt64LE(80)),
    members,
    spares,
  };
}

/** The better of the two copies at the head of a device (highest valid generation). */
export function pickSuperblock(head: Buffer): Superblock | null {
  const a = decodeSuperblock(head.subarray(0, SB_SIZE));
  const b = head.length >= 2 * SB_SIZE ? decodeSuperblock(head.subarray(SB_SIZE, 2 * SB_SIZE)) : null;
  if (a && b) return b.generation > a.generation ? b : a;
  return a ?? b;
}
