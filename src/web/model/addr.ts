/**
 * The address line's viewport: a window [start, start + span) of the 64-bit
 * IOVA space, zoomable from all 2^64 bytes down to one 4 KiB page.
 */
export const SPACE = 1n << 64n;
export const MIN_SPAN = 4096n;

export interface Viewport {
  start: bigint;
  span: bigint;
}

export const FULL: Viewport = { start: 0n, span: SPACE };

function clamp(v: Viewport): Viewport {
  const span = v.span < MIN_SPAN ? MIN_SPAN : v.span > SPACE ? SPACE : v.span;
  let start = v.start < 0n ? 0n : v.start;
  if (start + span > SPACE) start = SPACE - span;
  return { start, span };
}

/** Zoom by 2^k (k > 0 in) keeping the address at fraction `at` (0..1) of the line where it is. */
export function zoom(v: Viewport, k: number, at = 0.5): Viewport {
  const pivot = v.start + scale(v.span, at);
  const span = k >= 0 ? v.span >> BigInt(k) : v.span << BigInt(-k);
  const s = span < MIN_SPAN ? MIN_SPAN : span > SPACE ? SPACE : span;
  return clamp({ start: pivot - scale(s, at), span: s });
}

/** Move by a fraction of the visible span (negative: towards 0). */
export function pan(v: Viewport, fraction: number): Viewport {
  const d = scale(v.span, Math.abs(fraction));
  return clamp({ start: fraction < 0 ? v.start - d : v.start + d, span: v.span });
}

/** The smallest power-of-two-sized window (at least a page, with a margin) around [start, last]. */
export function fitRange(start: bigint, last: bigint): Viewport {
  const len = last - start + 1n;
  let span = MIN_SPAN;
  while (span < len * 2n && span < SPACE) span <<= 1n;
  const mid = start + len / 2n;
  return clamp({ start: mid - span / 2n, span });
}

/** Where an address falls on the line, 0..1 (clipped). */
export function fraction(v: Viewport, addr: bigint): number {
  if (addr <= v.start) return 0;
  if (addr >= v.start + v.span) return 1;
  // 2^-53 resolution is plenty for pixels; keep the subtraction in bigint
  return Number(((addr - v.start) << 20n) / v.span) / 2 ** 20;
}

/** x * f for f in 0..1, exact enough for a viewport. */
function scale(x: bigint, f: number): bigint {
  return (x * BigInt(Math.round(f * 2 ** 20))) >> 20n;
}

/** "4K", "2M", "16E": a byte count in binary units, when it is a power of two multiple. */
export function bytesLabel(n: bigint): string {
  const units = ["", "K", "M", "G", "T", "P", "E"];
  let u = 0;
  while (u < units.length - 1 && n >= 1024n && n % 1024n === 0n) {
    n /= 1024n;
    u++;
  }
  return `${n}${units[u]}`;
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
