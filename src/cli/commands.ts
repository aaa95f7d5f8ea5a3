// Commands beyond mkfs/mount/umount/stats/gc/fsck: RAID (status, scrub, replace), keys
// (keyslot, header, reencrypt) and metadata snapshots (restore-metadata).
import type { Handler } from '../volume/control.ts';
import type { Volume } from '../volume/volume.ts';

export const commands: Record<string, (argv: string[]) => Promise<void>> = {};

export function daemonHandlers(_vol: Volume): Record<string, Handler> {
  return {};
}
