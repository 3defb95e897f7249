/**
 * Number helpers for 64-bit page-table entries held as two 32-bit halves
 * (lo = bits 31:0, hi = bits 63:32) and for page-frame numbers, which stay
 * JS numbers (< 2^52, exact in a double) on every hot path.
 */

/** 2^n for n in 0..64, exact. */
export const POW2: readonly number[] = Array.from({ length: 65 }, (_, n) => 2 ** n);

/** Byte-swap a 32-bit word (big-endian entries such as TCEs). */
export function bswap32(x: number): number {
  return ((x << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/** Count of trailing zero bits of a 32-bit word; 32 for 0. */
export function ctz32(x: number): number {
  if (x === 0) return 32;
  return 31 - Math.clz32(x & -x);
}

/** Trailing zero bits of a non-negative integer number below 2^53; 64 for 0. */
export function ctzNum(x: number): number {
  const lo = x >>> 0;
  if (lo !== 0) return ctz32(lo);
  const hi = Math.floor(x / 4294967296);
  return hi === 0 ? 64 : 32 + ctz32(hi >>> 0);
}

/** floor(log2(x)) for an integer number 1 <= x < 2^53. */
export function log2Floor(x: number): number {
  if (x < 4294967296) return 31 - Math.clz32(x);
  return 63 - Math.clz32(Math.floor(x / 4294967296));
}

/** Low word of an address whose pfn (4 KiB units) is `pfn`: PA bits 31:12 in place. */
export function pfnLo12(pfn: number): number {
  return (pfn << 12) >>> 0;
}

/** High word of that address: PA bits 63:32 (of which 19:0 are PA 51:32). */
export function pfnHi12(pfn: number): number {
  return pfn < 4294967296 ? pfn >>> 20 : (pfn / 1048576) >>> 0;
}

/** The pfn held in PA bits 51:12 of an entry. */
export function pfnFrom12(lo: number, hi: number): number {
  return (hi & 0xfffff) * 1048576 + (lo >>> 12);
}

/** A 64-bit value from its halves. */
export function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Halves of a 64-bit bigint. */
export function fromBig(v: bigint): [number, number] {
  return [Number(v & 0xffffffffn), Number((v >> 32n) & 0xffffffffn)];
}

export function hex64(lo: number, hi: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, "0")}${(lo >>> 0).toString(16).padStart(8, "0")}`;
}
