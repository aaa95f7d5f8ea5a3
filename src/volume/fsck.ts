// fsck: the metadata's own consistency (refcounts, dangling references, link counts, lost inodes)
// plus a check that every chunk's placement lies inside an allocated row of the array.
import type { Volume } from './volume.ts';

export interface FsckReport {
  problems: string[];
  repaired: number;
  chunks: number;
  inodes: number;
}

export async function fsck(vol: Volume, repair: boolean): Promise<FsckReport> {
  const r = vol.meta.check(repair);
  const problems = [...r.problems];
  const rowBytes = vol.raid.rowDataBytes;
  const segs = vol.meta.segments();
  const heights = new Map(segs.map((s) => [s.row, s.height]));
  for (const s of segs) {
    if (s.row >= vol.raid.rows) problems.push(`segment ${s.row} lies beyond the end of the devices (${vol.raid.rows} rows)`);
    if (s.bytes > rowBytes) problems.push(`segment ${s.row} claims ${s.bytes} bytes, more than a row holds (${rowBytes})`);
  }
  const chunks = vol.meta.chunkPlacements();
  for (const c of chunks) {
    const h = heights.get(c.segment);
    if (h !== undefined && c.off + c.storedLen > rowBytes) problems.push(`chunk ${c.id} extends past the end of row ${c.segment}`);
  }
  const inodes = vol.meta.inodeCount();
  return { problems, repaired: r.repaired, chunks: chunks.length, inodes };
}
