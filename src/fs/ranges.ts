// Buffered, not yet stored file data: a sorted set of non-overlapping byte ranges.
// Writes are copied in (the caller's buffer may be reused as soon as write returns); a range that
// grows large gathers its bytes in one piece of pooled shared memory, which its batch then hands
// to the ingest workers as it is.

/** Where buffered bytes are gathered: shared memory lent by a pool, and memcpy into it. */
export interface Accumulators {
  take(len: number): Buffer;
  copy(dst: Buffer, at: number, src: Buffer): void;
}

/** Accumulator sizes: bytes after the range's start, and room kept in front of it. */
export interface AccumulatorShape {
  bytes: number;
  /**
   * A batch hands the uncut tail of a file being written back in front of what was written
   * since (at most one chunk): with this much room it goes into the same accumulator, and the
   * range stays one piece for its batch.
   */
  head: number;
  /** A range starts gathering in an accumulator once it holds this much. */
  from: number;
}

export class Range {
  /** The pooled buffer this range gathers in, and the view of it that is the range's last part. */
  private acc: Buffer | null = null;
  private accView: Buffer | null = null;

  constructor(
    public off: number,
    public parts: Buffer[],
    public len: number,
  ) {}

  /**
   * Appends a copy of data, into the range's accumulator when it has one with room or the range
   * is now large enough to start one. False when the range stays small: the caller stores a
   * plain copy.
   */
  appendCopy(data: Buffer, pool: Accumulators, shape: AccumulatorShape): boolean {
    const last = this.parts.length - 1;
    const acc = this.acc;
    const view = this.accView;
    if (acc && view && this.parts[last] === view && view.byteOffset + view.length + data.length <= acc.length) {
      pool.copy(acc, view.byteOffset + view.length, data);
      this.parts[last] = this.accView = acc.subarray(view.byteOffset, view.byteOffset + view.length + data.length);
    } else {
      if (this.len + data.length < shape.from) return false;
      // A new accumulator. The range's first one takes in what the range holds so far, so that
      // the range stays one piece; later ones (a range that outgrew one) start empty, or every
      // append past the end would copy the whole range again.
      const fresh = pool.take(shape.head + Math.max(shape.bytes, data.length));
      let at = shape.head;
      if (!acc && shape.head + this.len + data.length <= fresh.length) {
        for (const p of this.parts) {
          pool.copy(fresh, at, p);
          at += p.length;
        }
        this.parts = [];
      }
      pool.copy(fresh, at, data);
      this.acc = fresh;
      this.accView = fresh.subarray(shape.head, at + data.length);
      this.parts.push(this.accView);
    }
    this.len += data.length;
    return true;
  }

  /** Puts a copy of data (which ends where this range starts) in front, in place when it fits. */
  prependInPlace(data: Buffer, pool: Accumulators): boolean {
    const acc = this.acc;
    const view = this.accView;
    if (!acc || !view || this.parts.length !== 1 || this.parts[0] !== view || view.byteOffset < data.length) return false;
    const start = view.byteOffset - data.length;
    pool.copy(acc, start, data);
    this.parts[0] = this.accView = acc.subarray(start, view.byteOffset + view.length);
    this.off -= data.length;
    this.len += data.length;
    return true;
  }

  get end(): number {
    return this.off + this.len;
  }

  /**
   * The range as one buffer from pool, which the ingest workers read without a copy; the range
   * keeps that buffer as its only part until the batch gives it back.
   */
  flatShared(pool: { assemble(parts: Buffer[], len: number): Buffer }): Buffer {
    if (this.parts.length === 1 && this.parts[0].buffer instanceof SharedArrayBuffer) return this.parts[0];
    this.parts = [pool.assemble(this.parts, this.len)];
    return this.parts[0];
  }

  flat(): Buffer {
    if (this.parts.length !== 1) {
      // Large ranges go to the ingest workers: assemble them in shared memory straight away.
      const out = this.len >= 1 << 20 ? Buffer.from(new SharedArrayBuffer(this.len)) : Buffer.allocUnsafe(this.len);
      let pos = 0;
      for (const p of this.parts) {
        p.copy(out, pos);
        pos += p.length;
      }
      this.parts = [out];
    }
    return this.parts[0];
  }
}

export class Ranges {
  list: Range[] = [];
  bytes = 0;

  get empty(): boolean {
    return this.list.length === 0;
  }

  get end(): number {
    return this.list.length ? this.list[this.list.length - 1].end : 0;
  }

  /** Writes a copy of data: appends gather in accumulators, anything else is a plain copy. */
  writeCopy(off: number, data: Buffer, pool: Accumulators, shape: AccumulatorShape): void {
    if (data.length === 0) return;
    const last = this.list[this.list.length - 1];
    if (last && last.end === off && last.appendCopy(data, pool, shape)) {
      this.bytes += data.length;
      return;
    }
    this.write(off, Buffer.from(data));
  }

  /**
   * Writes data, which the ranges keep: the caller must not change it afterwards. With pool, data
   * that ends where a range gathering in an accumulator starts is copied in front of it instead.
   */
  write(off: number, data: Buffer, pool?: Accumulators): void {
    if (data.length === 0) return;
    const end = off + data.length;
    const list = this.list;
    const last = list[list.length - 1];
    if (last && last.end === off) {
      last.parts.push(data);
      last.len += data.length;
      this.bytes += data.length;
      return;
    }
    if (!last || last.end < off) {
      list.push(new Range(off, [data], data.length));
      this.bytes += data.length;
      return;
    }
    // First range that ends at or after off (touching ranges merge too).
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].end < off) lo = mid + 1;
      else hi = mid;
    }
    let j = lo;
    while (j < list.length && list[j].off <= end) j++;
    if (j === lo) {
      list.splice(lo, 0, new Range(off, [data], data.length));
      this.bytes += data.length;
      return;
    }
    if (pool && j === lo + 1 && list[lo].off === end && list[lo].prependInPlace(data, pool)) {
      this.bytes += data.length;
      return;
    }
    const start = Math.min(off, list[lo].off);
    const stop = Math.max(end, list[j - 1].end);
    if (!this.overlapsAny(lo, j, off, end)) {
      // Only touching (a flush handing back its uncut tail just before newer writes): join the
      // parts without copying them; the newer range may be tens of MiB.
      const parts: Buffer[] = [];
      let placed = false;
      let removed = 0;
      for (let k = lo; k < j; k++) {
        const r = list[k];
        if (!placed && off < r.off) {
          parts.push(data);
          placed = true;
        }
        for (const p of r.parts) parts.push(p);
        removed += r.len;
      }
      if (!placed) parts.push(data);
      list.splice(lo, j - lo, new Range(start, parts, stop - start));
      this.bytes += stop - start - removed;
      return;
    }
    const merged = Buffer.allocUnsafe(stop - start);
    let removed = 0;
    for (let k = lo; k < j; k++) {
      const r = list[k];
      let pos = r.off - start;
      for (const p of r.parts) {
        p.copy(merged, pos);
        pos += p.length;
      }
      removed += r.len;
    }
    data.copy(merged, off - start);
    list.splice(lo, j - lo, new Range(start, [merged], merged.length));
    this.bytes += merged.length - removed;
  }

  /**
   * Buffers only the bytes of [off, off + data.length) that hold nothing yet: older data going
   * back under newer writes (a flush handing back what it did not store).
   */
  writeUnder(off: number, data: Buffer, pool?: Accumulators): void {
    const end = off + data.length;
    const gaps: [number, number][] = [];
    let at = off;
    for (const r of this.list) {
      if (r.end <= at) continue;
      if (r.off >= end) break;
      if (r.off > at) gaps.push([at, r.off]);
      at = Math.max(at, r.end);
      if (at >= end) break;
    }
    if (at < end) gaps.push([at, end]);
    for (const [a, b] of gaps) this.write(a, data.subarray(a - off, b - off), pool);
  }

  private overlapsAny(lo: number, hi: number, off: number, end: number): boolean {
    for (let k = lo; k < hi; k++) if (this.list[k].off < end && this.list[k].end > off) return true;
    return false;
  }

  truncate(size: number): void {
    while (this.list.length && this.list[this.list.length - 1].off >= size) {
      this.bytes -= this.list.pop()!.len;
    }
    const last = this.list[this.list.length - 1];
    if (last && last.end > size) {
      const keep = size - last.off;
      const flat = last.flat().subarray(0, keep);
      this.bytes -= last.len - keep;
      last.parts = [flat];
      last.len = keep;
    }
  }

  /** Copies the buffered bytes that fall inside [off, off + target.length) into target. */
  overlay(target: Buffer, off: number): void {
    const end = off + target.length;
    for (const r of this.list) {
      if (r.end <= off) continue;
      if (r.off >= end) break;
      let pos = r.off;
      for (const p of r.parts) {
        const pEnd = pos + p.length;
        if (pEnd > off && pos < end) {
          const from = Math.max(pos, off);
          const to = Math.min(pEnd, end);
          p.copy(target, from - off, from - pos, to - pos);
        }
        pos = pEnd;
      }
    }
  }
}
