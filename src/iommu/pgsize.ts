import { ctzNum, log2Floor, POW2 } from "../pt/bits.js";

/**
 * The core's page-size choice (iommu_pgsize in drivers/iommu/iommu.c),
 * on addresses held as numbers of `unitLg2`-sized units (the domain's
 * smallest page), so 64-bit IOVAs stay exact doubles.
 *
 * - candidate sizes: supported sizes no larger than the biggest power of two
 *   in `size`, and no larger than the lowest set bit of iova|paddr;
 * - pick the largest;
 * - when the next larger supported size has iova and paddr equally offset
 *   inside it, stop the run at that size's next boundary so the following
 *   chunk can use the larger page.
 *
 * `sizesLg2` are the supported page sizes as log2 of bytes, ascending.
 * Returns the chosen size (log2 bytes) and how many pages of it to map.
 */
export function iommuPgsize(
  sizesLg2: readonly number[],
  unitLg2: number,
  iova: number,
  paddr: number,
  size: number,
): { pgLg2: number; count: number } {
  const count = iommuPgsizeCount(sizesLg2, unitLg2, iova, paddr, size);
  return { pgLg2: pgsizePick, count };
}

/** The size iommuPgsizeCount chose last (log2 bytes). */
export let pgsizePick = 0;

/**
 * iommuPgsize without allocating, for the map loops: returns the count and
 * leaves the chosen size in `pgsizePick`.
 */
export function iommuPgsizeCount(
  sizesLg2: readonly number[],
  unitLg2: number,
  iova: number,
  paddr: number,
  size: number,
): number {
  let maxLg2 = log2Floor(size) + unitLg2;
  const merge = iova + paddr === 0 ? 0 : orNum(iova, paddr);
  if (merge !== 0) maxLg2 = Math.min(maxLg2, ctzNum(merge) + unitLg2);
  let pick = -1;
  let next = -1;
  for (let i = 0; i < sizesLg2.length; i++) {
    const s = sizesLg2[i];
    if (s <= maxLg2) pick = s;
    else if (pick >= 0) {
      next = s;
      break;
    }
  }
  if (pick < 0) throw new Error("iommu_pgsize: no page size fits (caller broke the alignment rule)");
  let runUnits = size;
  if (next >= 0) {
    const nextUnits = POW2[next - unitLg2];
    // masks when everything is a small integer: % on doubles is a call to fmod
    const small = nextUnits <= 0x40000000 && iova <= 0x7fffffff && paddr <= 0x7fffffff;
    const m = nextUnits - 1;
    if (small ? (iova & m) === (paddr & m) : iova % nextUnits === paddr % nextUnits) {
      const offset = nextUnits - (small ? merge & m : merge % nextUnits);
      if (offset + nextUnits <= size) runUnits = offset;
    }
  }
  pgsizePick = pick;
  return Math.floor(runUnits / POW2[pick - unitLg2]);
}

/** Bitwise OR of two non-negative integers below 2^53. */
export function orNum(a: number, b: number): number {
  if (a <= 0x7fffffff && b <= 0x7fffffff) return a | b;
  const lo = ((a >>> 0) | (b >>> 0)) >>> 0;
  const hi = (Math.floor(a / 4294967296) | Math.floor(b / 4294967296)) >>> 0;
  return hi * 4294967296 + lo;
}

/** The page sizes of a pgsize_bitmap, as log2 of bytes, ascending. */
export function bitmapToLg2(bitmap: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((bitmap >> BigInt(i)) & 1n) out.push(i);
  return out;
}

export function lg2ToBitmap(sizes: readonly number[]): bigint {
  let b = 0n;
  for (const s of sizes) b |= 1n << BigInt(s);
  return b;
}
