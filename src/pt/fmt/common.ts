import { fromBig } from "../bits.js";
import type { PtConfig } from "../types.js";

/** The SME C-bit mask as halves (0 when unset). */
export function smeHalves(cfg: PtConfig): [number, number] {
  return fromBig(cfg.smeMask ?? 0n);
}

/** Sizes lg2 from `first` to `last` inclusive, minus those in `skip`. */
export function sizeRange(first: number, last: number, skip: readonly number[] = []): number[] {
  const out: number[] = [];
  for (let s = first; s <= last; s++) if (!skip.includes(s)) out.push(s);
  return out;
}

export function sizeName(lg2: number): string {
  const units = ["", "K", "M", "G", "T", "P", "E"];
  const u = Math.floor(lg2 / 10);
  return `${2 ** (lg2 - u * 10)}${units[u]}`;
}

export function paHex(pfn: number): string {
  return `0x${(pfn * 4096).toString(16)}`;
}
