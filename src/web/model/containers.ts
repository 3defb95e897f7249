import type { SpaprTceDebugInfo, Type1DebugInfo, VfioContainerDebugInfo } from "../../index.js";
import { bytesLabel, hex } from "./addr.js";
import { countEntries, pteTree } from "./pte.js";
import type { HwptView, IoasView, RangeView, WindowView } from "./types.js";

const U64_MAX = (1n << 64n) - 1n;

const perms = (prot: number) => `${prot & 1 ? "r" : "-"}${prot & 2 ? "w" : "-"}`;

/** "window 0 (32-bit default)" / "window 1 (64-bit, created)". */
export function windowName(slot: number): string {
  return `window ${slot} (${slot === 0 ? "32-bit default" : "64-bit, SPAPR_TCE_CREATE"})`;
}

/**
 * A legacy VFIO container as the view draws it: its IOVA space (type1: the
 * DMA mappings; sPAPR: the DMA windows and the TCEs in them) and its IOMMU
 * page tables (type1: each domain's; sPAPR: each window's TCE table), from
 * m.debug.vfioContainers().
 */
export function containerViews(
  c: VfioContainerDebugInfo,
  pid: number,
  who: string,
): { space?: IoasView; tables: HwptView[] } {
  const key = `${who} VFIO container fd ${c.fd}`;
  const groups = c.groups.length
    ? `iommu_group ${c.groups.join(", ")}`
    : "no group set (VFIO_GROUP_SET_CONTAINER)";
  const anchor = `c${pid}-${c.fd}`;
  if (c.type1) return type1Views(c.type1, pid, c.fd, key, anchor, groups);
  if (c.spapr) return spaprViews(c.spapr, pid, c.fd, key, anchor, groups);
  return {
    space: {
      key,
      kind: "type1",
      anchor,
      pid,
      fd: c.fd,
      id: 0,
      about:
        c.driver === null
          ? `no IOMMU driver set yet (VFIO_SET_IOMMU); ${groups}`
          : `${c.driver}: no IOVA space (${c.driver === "vfio-noiommu" ? "devices DMA to physical addresses" : "nothing to show"}); ${groups}`,
      areas: [],
      reserved: [],
      allowed: [],
      allowedName: "usable IOVA range",
    },
    tables: [],
  };
}

function type1Views(
  t: Type1DebugInfo,
  pid: number,
  fd: number,
  key: string,
  anchor: string,
  groups: string,
): { space: IoasView; tables: HwptView[] } {
  const space: IoasView = {
    key,
    kind: "type1",
    anchor,
    pid,
    fd,
    id: 0,
    about: `${t.v2 ? "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU"}: ${t.dmas.length} DMA mapping(s) (VFIO_IOMMU_MAP_DMA), ${groups}; page sizes ${pgsizeList(t.pgsizes)}`,
    areas: t.dmas.map((d) => {
      const last = d.iova + d.size - 1n;
      return {
        sig: `area c${pid}:${fd} ${hex(d.iova)}-${hex(last)} ${d.prot} ${d.vaddrInvalid}`,
        iova: d.iova,
        last,
        perms: perms(d.prot),
        source: `user VA ${hex(d.vaddr)}${d.vaddrInvalid ? " (invalidated: UNMAP_DMA VADDR)" : ""}`,
        pinnedPages: d.pinnedRuns.reduce((s, x) => s + x.n, 0),
        runs: d.pinnedRuns,
      };
    }),
    reserved: t.reserved.map((r) => ({ start: r.start, last: r.last, label: r.owner })),
    allowed: t.iovaRanges.map((r) => ({ start: r.start, last: r.last, label: "usable" })),
    allowedName: "usable IOVA range (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)",
  };
  const tables = t.domains.map((d): HwptView => {
    const v: HwptView = {
      key: `${key} domain ${d.id}`,
      kind: "type1",
      anchor: `${anchor}-d${d.id}`,
      pid,
      fd,
      id: d.id,
      about: `the type1 container's paging domain (struct vfio_domain), iommu_group ${d.groups.join(", ")} attached`,
      bigEndian: false,
      format: d.table.format,
      rootPhys: d.table.rootPhys,
      topLevel: d.table.topLevel,
      roots: [],
      entryCount: 0,
    };
    v.roots = pteTree(d.table.format, d.table.dump?.() ?? [], `c${pid}:${fd}:${d.id} `);
    v.entryCount = countEntries(v.roots);
    return v;
  });
  return { space, tables };
}

/** The IOVA space between and around the windows: nothing translates there. */
function gaps(windows: { start: bigint; last: bigint }[], label: string): RangeView[] {
  const out: RangeView[] = [];
  let cur = 0n;
  for (const w of [...windows].sort((a, b) => (a.start < b.start ? -1 : 1))) {
    if (w.start > cur) out.push({ start: cur, last: w.start - 1n, label });
    cur = w.last + 1n;
  }
  if (cur <= U64_MAX) out.push({ start: cur, last: U64_MAX, label });
  return out;
}

function spaprViews(
  t: SpaprTceDebugInfo,
  pid: number,
  fd: number,
  key: string,
  anchor: string,
  groups: string,
): { space: IoasView; tables: HwptView[] } {
  const kind = t.v2 ? "VFIO_SPAPR_TCE_v2_IOMMU" : "VFIO_SPAPR_TCE_IOMMU";
  const state = t.v2
    ? t.enabled
      ? "memory registered"
      : "no memory registered yet (MAP_DMA is EPERM)"
    : t.enabled
      ? "enabled"
      : "not enabled (VFIO_IOMMU_ENABLE)";
  const space: IoasView = {
    key,
    kind: "spapr",
    anchor,
    pid,
    fd,
    id: 0,
    about: `${kind}: ${t.windows.length} DMA window(s), ${state}; ${groups}. A device's DMA is translated only inside a window, one TCE per IOMMU page.`,
    areas: t.mappings.map((m) => ({
      sig: `area c${pid}:${fd} ${hex(m.iova)}-${hex(m.last)} ${m.prot} ${m.ua ?? m.pfn}`,
      iova: m.iova,
      last: m.last,
      perms: perms(m.prot),
      source:
        m.ua !== undefined
          ? `user VA ${hex(m.ua)} (${windowName(m.slot)})`
          : `host PA ${hex(BigInt(m.pfn) << 12n)} (${windowName(m.slot)})`,
      // v2 TCEs point into pre-registered memory (pinned by REGISTER_MEMORY); v1 pins one page per TCE
      pinnedPages: t.v2 ? undefined : Number((m.last - m.iova + 1n) >> 12n),
      runs: t.v2 ? [] : [{ pfn: m.pfn, n: Number((m.last - m.iova + 1n) >> 12n) }],
    })),
    reserved: gaps(t.windows, "outside every DMA window: the PE translates nothing here"),
    allowed: t.windows.map((w) => ({
      start: w.start,
      last: w.last,
      label: `${windowName(w.slot)}: ${bytesLabel(1n << BigInt(w.pageShift))} TCEs, ${w.levels} level(s)`,
    })),
    allowedName: "DMA window",
    prereg: t.prereg.map((p) => ({
      sig: `prereg c${pid}:${fd} ${hex(p.ua)} ${p.size} ${p.tces}`,
      ua: p.ua,
      size: p.size,
      tces: p.tces,
      runs: p.pinnedRuns,
    })),
  };
  const tables: HwptView[] = [];
  if (t.windows.length > 0)
    tables.push(
      tceView(
        t.windows,
        `${key} TCE tables`,
        `${anchor}-tce`,
        pid,
        fd,
        0,
        `the sPAPR container's DMA windows, programmed into the PE's TVEs of ${groups}`,
        `c${pid}:${fd} `,
      ),
    );
  return { space, tables };
}

/** A set of sPAPR DMA windows as one page-table view: each window's TCE table, entries at their bus addresses. */
export function tceView(
  windows: SpaprTceDebugInfo["windows"],
  key: string,
  anchor: string,
  pid: number,
  fd: number,
  id: number,
  about: string,
  sigPrefix: string,
): HwptView {
  const wv: WindowView[] = windows.map((w) => ({
    slot: w.slot,
    start: w.start,
    last: w.last,
    pageShift: w.pageShift,
    levels: w.levels,
    itOffset: w.itOffset,
    itSize: w.itSize,
    levelSize: w.levelSize,
    rootPhys: w.rootPhys,
    roots: pteTree("spapr_tce", w.dump(), `${sigPrefix}w${w.slot} `, {
      base: w.start,
      leafLg2: w.pageShift,
      levelBits: Math.log2(w.levelSize),
    }),
  }));
  const roots = wv.flatMap((w) => w.roots);
  return {
    key,
    kind: "spapr",
    anchor,
    pid,
    fd,
    id,
    about,
    bigEndian: true,
    format: "spapr_tce",
    rootPhys: windows[0]?.rootPhys,
    topLevel: windows[0]?.levels !== undefined ? windows[0].levels - 1 : undefined,
    roots,
    windows: wv,
    entryCount: countEntries(roots),
  };
}

/** "4K, 2M, 1G" from a page-size bitmap. */
function pgsizeList(bm: bigint): string {
  const bits: bigint[] = [];
  for (let b = 12n; b < 64n; b++) if (bm & (1n << b)) bits.push(b);
  if (bits.length === 0) return "none (no domain yet)";
  const first = bits[0];
  const last = bits[bits.length - 1];
  // AMD offers nearly every power of two: say which are missing instead of listing 39 sizes
  const missing: bigint[] = [];
  for (let b = first; b <= last; b++) if (!bits.includes(b)) missing.push(b);
  if (bits.length > 6 && missing.length <= 3) {
    const but = missing.length ? ` but ${missing.map((b) => bytesLabel(1n << b)).join(", ")}` : "";
    return `every power of two from ${bytesLabel(1n << first)} to ${bytesLabel(1n << last)}${but}`;
  }
  return bits.map((b) => bytesLabel(1n << b)).join(", ");
}
