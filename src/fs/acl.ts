// POSIX ACLs as the kernel hands them to a filesystem: the xattrs system.posix_acl_access and
// system.posix_acl_default in the kernel's binary form (little-endian: u32 version 2, then
// entries of u16 tag, u16 perm, u32 id). With FUSE_CAP_POSIX_ACL the kernel enforces ACLs and
// the filesystem keeps them in step with the mode bits and inherits default ACLs, as ext4 does.

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

const VERSION = 2;
export const USER_OBJ = 0x01;
export const USER = 0x02;
export const GROUP_OBJ = 0x04;
export const GROUP = 0x08;
export const MASK = 0x10;
export const OTHER = 0x20;

export interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

export function parseAcl(b: Buffer): AclEntry[] | null {
  if (b.length < 4 || (b.length - 4) % 8 !== 0 || b.readUInt32LE(0) !== VERSION) return null;
  const out: AclEntry[] = [];
  for (let o = 4; o < b.length; o += 8) out.push({ tag: b.readUInt16LE(o), perm: b.readUInt16LE(o + 2) & 7, id: b.readUInt32LE(o + 4) });
  return out;
}

export function encodeAcl(entries: AclEntry[]): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(VERSION, 0);
  entries.forEach((e, i) => {
    b.writeUInt16LE(e.tag, 4 + 8 * i);
    b.writeUInt16LE(e.perm, 6 + 8 * i);
    b.writeUInt32LE(e.id >>> 0, 8 + 8 * i);
  });
  return b;
}

/** Only the three entries that the mode bits can express. */
export function equivalentToMode(acl: AclEntry[]): boolean {
  return acl.every((e) => e.tag === USER_OBJ || e.tag === GROUP_OBJ || e.tag === OTHER);
}

/** The permission bits an access ACL implies (posix_acl_equiv_mode / update_mode). */
export function modeFromAcl(acl: AclEntry[], mode: number): number {
  let user = (mode >> 6) & 7;
  let group = (mode >> 3) & 7;
  let other = mode & 7;
  let mask: number | undefined;
  for (const e of acl) {
    if (e.tag === USER_OBJ) user = e.perm;
    else if (e.tag === GROUP_OBJ) group = e.perm;
    else if (e.tag === OTHER) other = e.perm;
    else if (e.tag === MASK) mask = e.perm;
  }
  return (mode & ~0o777) | (user << 6) | ((mask ?? group) << 3) | other;
}

/** chmod on a file with an ACL rewrites the entries the mode bits stand for (posix_acl_chmod). */
export function chmodAcl(acl: AclEntry[], mode: number): AclEntry[] {
  const hasMask = acl.some((e) => e.tag === MASK);
  return acl.map((e) => {
    if (e.tag === USER_OBJ) return { ...e, perm: (mode >> 6) & 7 };
    if (e.tag === OTHER) return { ...e, perm: mode & 7 };
    if (e.tag === MASK || (e.tag === GROUP_OBJ && !hasMask)) return { ...e, perm: (mode >> 3) & 7 };
    return e;
  });
}

/**
 * A new inode under a directory with a default ACL (posix_acl_create): its access ACL is the
 * default ACL masked by the requested mode, and the mode follows from it; umask does not apply.
 */
export function inheritAcl(defaultAcl: AclEntry[], mode: number): { mode: number; access: AclEntry[] } {
  const hasMask = defaultAcl.some((e) => e.tag === MASK);
  let newMode = mode;
  const access = defaultAcl.map((e) => {
    let perm = e.perm;
    if (e.tag === USER_OBJ) {
      perm &= (mode >> 6) & 7;
      newMode = (newMode & ~0o700) | (perm << 6);
    } else if (e.tag === OTHER) {
      perm &= mode & 7;
      newMode = (newMode & ~0o007) | perm;
    } else if (e.tag === MASK || (e.tag === GROUP_OBJ && !hasMask)) {
      perm &= (mode >> 3) & 7;
      newMode = (newMode & ~0o070) | (perm << 3);
    }
    return { ...e, perm };
  });
  return { mode: newMode, access };
}
