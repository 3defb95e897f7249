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

/** "4K", "2M", "16E" for exact binary multiples; "~512T" (one significant unit) otherwise. */
export function bytesLabel(n: bigint): string {
  const units = ["", "K", "M", "G", "T", "P", "E"];
  let u = 0;
  let exact = n;
  while (u < units.length - 1 && exact >= 1024n && exact % 1024n === 0n) {
    exact /= 1024n;
    u++;
  }
  if (exact < 1024n || u === units.length - 1) return `${exact}${units[u]}`;
  // not a round multiple: the nearest value in the largest unit that keeps it at least 1
  let big = 0;
  while (big < units.length - 1 && n >= 1024n ** BigInt(big + 1)) big++;
  const v = Number(n) / 1024 ** big;
  return `~${v >= 100 ? Math.round(v) : v.toFixed(1)}${units[big]}`;
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
