import type { WalkResult } from "./io-pgtable.js";
import type { DmaSegment, DmaTranslation } from "./types.js";

/**
 * A DMA of `len` bytes at `iova` translated leaf by leaf: the physically
 * contiguous pieces (neighbouring leaves merged), or the first faulting
 * address. `translate` walks whatever tables the IOMMU uses for one address.
 */
export function dmaSegments(
  iova: bigint,
  len: number,
  translate: (iova: bigint) => WalkResult,
): DmaTranslation {
  const segs: DmaSegment[] = [];
  let cur = iova;
  let left = len;
  while (left > 0) {
    const w = translate(cur);
    if (!w.ok) return { ok: false, addr: cur, reason: w.reason };
    const n = Math.min(left, w.left);
    const last = segs[segs.length - 1];
    if (last !== undefined && last.pa + last.len === w.pa) last.len += n;
    else segs.push({ pa: w.pa, len: n });
    cur += BigInt(n);
    left -= n;
  }
  return { ok: true, segments: segs };
}
