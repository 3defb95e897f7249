import type { PteView } from "./types.js";

export interface DumpEntry {
  level: number;
  index: number;
  tablePhys: bigint;
  raw: bigint;
  text: string;
}

const SIZE = /^\d+[KMGTPE]?$/;
const HEX = /^0x[0-9a-f]+$/i;

/** Tokens that grant DMA read or write, per format (AMD IR/IW, VT-d/x86/RISC-V R/W, TCE READ/WRITE/BIDIR). */
const READ_FLAGS = new Set(["IR", "R", "READ", "BIDIR", "RW"]);
const WRITE_FLAGS = new Set(["IW", "W", "WRITE", "BIDIR", "RW"]);

/**
 * Decode one entry from src/pt's dump text ("LEAF 4K NL=0 pa=0x1000 IR IW",
 * "TABLE NL=1 -> 0x5000", "TCE 64K pa=0x... BIDIR"): kind, address, size,
 * permissions and the remaining flags.
 */
export function decodePte(e: DumpEntry): Omit<PteView, "sig" | "iovaStart" | "iovaLast" | "children"> {
  const words = e.text.split(/\s+/).filter(Boolean);
  const head = words[0] ?? "";
  const kind =
    head === "TABLE" || head === "INDIRECT" ? "table" : head === "LEAF" || head === "TCE" ? "leaf" : "other";
  let pa: bigint | undefined;
  let size: string | undefined;
  const flags: string[] = [];
  let r = false;
  let w = false;
  for (let i = 1; i < words.length; i++) {
    const t = words[i];
    if (t === "->" && HEX.test(words[i + 1] ?? "")) {
      pa = BigInt(words[++i]);
    } else if (t.startsWith("pa=") && HEX.test(t.slice(3))) {
      pa = BigInt(t.slice(3));
    } else if (size === undefined && SIZE.test(t)) {
      size = t;
    } else {
      // a TCE's direction: TO_DEVICE(R), FROM_DEVICE(W), BIDIRECTIONAL(RW)
      const dir = /\((R|W|RW)\)$/.exec(t)?.[1];
      if (READ_FLAGS.has(t) || dir?.includes("R")) r = true;
      if (WRITE_FLAGS.has(t) || dir?.includes("W")) w = true;
      flags.push(t);
    }
  }
  const perms = kind !== "leaf" ? "" : r && w ? "read write" : r ? "read" : w ? "write" : "none";
  return {
    level: e.level,
    index: e.index,
    tablePhys: e.tablePhys,
    raw: e.raw,
    text: e.text,
    kind,
    pa,
    size,
    perms,
    flags,
  };
}

const SIZE_SHIFT: Record<string, number> = { "": 0, K: 10, M: 20, G: 30, T: 40, P: 50, E: 60 };

/** log2 of "4K", "64K", "2M". */
export function sizeLg2(s: string): number {
  const m = /^(\d+)([KMGTPE]?)$/.exec(s);
  if (!m) return 12;
  return Math.log2(Number(m[1])) + SIZE_SHIFT[m[2]];
}

/**
 * log2 of the bytes one entry at level 0 covers: 2 KiB for the selftest's
 * AMDv1 mock, the TCE page size for sPAPR, else 4 KiB. Each level above
 * adds 9 bits (512 eight-byte entries per 4 KiB table).
 */
export function unitLg2(format: string | undefined, entries: DumpEntry[]): number {
  if (format === "amdv1_mock") return 11;
  if (format === "spapr_tce") {
    const leaf = entries.find((e) => e.level === 0 && e.text.startsWith("TCE "));
    return leaf ? sizeLg2(leaf.text.split(/\s+/)[1]) : 12;
  }
  return 12;
}

/**
 * Where a table's entries sit in the IOVA space: the first address, log2 of
 * what one level-0 entry covers, and log2 of the entries per table (each
 * level up multiplies the coverage by that). By default 4 KiB leaves and
 * 512 entries per table from 0; an sPAPR window starts at its bus address,
 * with its TCE size and it_level_size.
 */
export interface TableGeometry {
  base: bigint;
  leafLg2: number;
  levelBits: number;
}

/** The dump (depth first from the root) as a tree, each entry with the IOVA range it covers. */
export function pteTree(
  format: string | undefined,
  entries: DumpEntry[],
  sigPrefix = "",
  geo: TableGeometry = { base: 0n, leafLg2: unitLg2(format, entries), levelBits: 9 },
): PteView[] {
  const roots: PteView[] = [];
  const stack: PteView[] = [];
  for (const e of entries) {
    while (stack.length > 0 && stack[stack.length - 1].level <= e.level) stack.pop();
    const parent = stack.at(-1);
    const shift = BigInt(geo.leafLg2 + geo.levelBits * e.level);
    const start = (parent?.iovaStart ?? geo.base) + (BigInt(e.index) << shift);
    const v: PteView = {
      ...decodePte(e),
      sig: `${sigPrefix}pte ${e.tablePhys.toString(16)}[${e.index}]=${e.raw.toString(16)}`,
      iovaStart: start,
      iovaLast: start + (1n << shift) - 1n,
      children: [],
    };
    if (parent) parent.children.push(v);
    else roots.push(v);
    if (v.kind === "table") stack.push(v);
  }
  return roots;
}

/** The entries a walk of `iova` reads, root first (ends at the leaf, or where the walk found nothing). */
export function ptePath(roots: PteView[], iova: bigint): PteView[] {
  const path: PteView[] = [];
  let level = roots;
  for (;;) {
    const e = level.find((x) => x.iovaStart <= iova && iova <= x.iovaLast);
    if (e === undefined) return path;
    path.push(e);
    if (e.kind !== "table") return path;
    level = e.children;
  }
}

/**
 * The PA an entry gives for `iova`. A leaf's page may be larger than the
 * slot it sits in (AMDv1 and the TCE tables repeat one entry over each slot
 * of an 8K/64K page, each holding the page's base): the offset is then taken
 * within the page, not within the slot.
 */
export function leafPa(e: PteView, iova: bigint): bigint | undefined {
  if (e.kind !== "leaf" || e.pa === undefined) return undefined;
  const slot = e.iovaLast - e.iovaStart + 1n;
  const page = e.size !== undefined ? 1n << BigInt(sizeLg2(e.size)) : slot;
  return page > slot ? e.pa + (iova & (page - 1n)) : e.pa + (iova - e.iovaStart);
}

/** The PA a walk of `iova` ends at, or undefined when no leaf maps it. */
export function translate(roots: PteView[], iova: bigint): bigint | undefined {
  const leaf = ptePath(roots, iova).at(-1);
  return leaf === undefined ? undefined : leafPa(leaf, iova);
}

export function countEntries(roots: PteView[]): number {
  let n = 0;
  const walk = (l: PteView[]) => {
    for (const e of l) {
      n++;
      walk(e.children);
    }
  };
  walk(roots);
  return n;
}

/**
 * Where a walk of `iova` that maps nothing stops: the level and slot of the
 * empty entry it read last (undefined when a leaf maps it, or the table has
 * no entry to measure the slots by).
 */
export function walkMiss(roots: PteView[], iova: bigint): { level: number; index: number } | undefined {
  const last = ptePath(roots, iova).at(-1);
  if (last?.kind === "leaf") return undefined;
  const ref = (last ? last.children : roots)[0];
  if (ref === undefined) return undefined;
  const span = ref.iovaLast - ref.iovaStart + 1n;
  const base = ref.iovaStart - BigInt(ref.index) * span;
  if (iova < base) return undefined;
  return { level: ref.level, index: Number((iova - base) / span) };
}
