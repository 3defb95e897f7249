import { EINVAL, ENOSPC, EOVERFLOW, fail } from "../uapi/errno.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import { holes, type IntervalTree } from "./interval-tree.js";

export const U64_MAX = (1n << 64n) - 1n;
/** HPAGE_SIZE on x86-64 with THP: the newest iopt_alloc_iova caps the alignment here. */
const HPAGE = 2n << 20n;

export function roundupPowOfTwo(x: bigint): bigint {
  let p = 1n;
  while (p < x) p <<= 1n;
  return p;
}

export function lowestSetBit(x: bigint): bigint {
  return x & -x;
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/** ALIGN_UP to `align` then OR the page offset (__alloc_iova_check_range); null when it overflows or cannot fit. */
function checkRange(
  start: bigint,
  last: bigint,
  length: bigint,
  align: bigint,
  pageOffset: bigint,
): bigint | null {
  const up = start + align - 1n;
  if (up > U64_MAX) return null;
  const s = (up & ~(align - 1n)) | pageOffset;
  if (s >= last || last - s < length - 1n) return null;
  return s;
}

export interface IovaAllocInput {
  length: bigint;
  /** user_va, the file offset (MAP_FILE) or the source start (COPY). */
  addr: bigint;
  iovaAlignment: bigint;
  allowed: IntervalTree<unknown>;
  reserved: IntervalTree<unknown>;
  areas: IntervalTree<unknown>;
}

/**
 * iopt_alloc_iova(): first fit from the lowest address. The alignment is
 * the largest power of two that divides both the length (rounded up) and
 * the address, capped at HPAGE_SIZE, so huge mappings stay huge-page
 * aligned; IOVA 0 and the top page are never handed out.
 */
export function allocIova(a: IovaAllocInput): bigint {
  const { length, addr } = a;
  if (length === 0n || length >= U64_MAX / 2n) {
    fail(EOVERFLOW, `automatic IOVA: length ${hex(length)} is 0 or at least ULONG_MAX/2`);
  }
  let align = roundupPowOfTwo(length);
  if (addr !== 0n) {
    const low = lowestSetBit(addr);
    if (low < align) align = low;
  }
  if (align > HPAGE) align = HPAGE;
  if (align < a.iovaAlignment) {
    fail(
      EINVAL,
      `automatic IOVA: address ${hex(addr)} and length ${hex(length)} allow alignment ${hex(align)}, below the IOAS alignment ${hex(a.iovaAlignment)}`,
    );
  }
  const pageOffset = addr % PAGE;
  const windows: [bigint, bigint][] = [];
  const lo = PAGE;
  const hi = U64_MAX - PAGE;
  if (a.allowed.size === 0) windows.push([lo, hi]);
  else {
    for (const n of a.allowed.all()) {
      // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max takes numbers)
      const s = n.start > lo ? n.start : lo;
      const l = n.last < hi ? n.last : hi;
      if (s <= l) windows.push([s, l]);
    }
  }
  for (const [ws, wl] of windows) {
    const s0 = checkRange(ws, wl, length, align, pageOffset);
    if (s0 === null) continue;
    for (const [hs, hl] of holes([a.reserved, a.areas], s0, wl)) {
      const s = checkRange(hs, hl, length, align, pageOffset);
      if (s !== null) return s;
    }
  }
  return fail(
    ENOSPC,
    `automatic IOVA: no free ${hex(length)}-byte range aligned to ${hex(align)} outside reserved ranges and areas${a.allowed.size > 0 ? " inside the allowed ranges" : ""}`,
  );
}
