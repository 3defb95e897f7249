// State transitions of the reference model that several commands share:
// file references and what the last one releases, context and container
// lifetimes, which pages are pinned, and what a device can reach by DMA.
import {
  type MArea,
  type MCtx,
  type MFile,
  type MIoas,
  type MObj,
  type Model,
  type MPages,
  type MProc,
  overlaps,
  PAGE,
  PROT_R,
  PROT_W,
} from "./world.js";

export class Violation extends Error {}

const minB = (a: bigint, b: bigint) => (a < b ? a : b);

// --- files -------------------------------------------------------------------

export function newFile(m: Model, f: MFile): number {
  const key = m.nextKey++;
  m.files.set(key, { f, refs: 1 });
  return key;
}

export function getFile(m: Readonly<Model>, p: number, fd: number): MFile | undefined {
  const key = m.procs[p]?.fds.get(fd);
  return key === undefined ? undefined : m.files.get(key)?.f;
}

export function fileRef(m: Model, key: number): void {
  const e = m.files.get(key);
  if (e === undefined) throw new Violation(`model: file ${key} is gone`);
  e.refs++;
}

export function filePut(m: Model, key: number): void {
  const e = m.files.get(key);
  if (e === undefined) throw new Violation(`model: file ${key} put twice`);
  if (--e.refs > 0) return;
  m.files.delete(key);
  releaseFile(m, key, e.f);
}

export function closeFd(m: Model, p: number, fd: number): void {
  const key = m.procs[p].fds.get(fd);
  if (key === undefined) return;
  m.procs[p].fds.delete(fd);
  filePut(m, key);
}

/** What the last reference to a file releases (each file type's release()). */
function releaseFile(m: Model, key: number, f: MFile): void {
  switch (f.kind) {
    case "iommufd": {
      const c = m.ctxs.get(f.ctx)!;
      c.fileOpen = false;
      maybeFreeCtx(m, c);
      return;
    }
    case "cdev": {
      const d = m.devs[f.dev];
      if (d.bound?.file === key) {
        const c = m.ctxs.get(d.bound.ctx)!;
        const h = d.attached;
        c.objs.delete(d.bound.devid);
        d.bound = undefined;
        d.attached = undefined;
        if (h !== undefined) leaveHwpt(m, c, h);
        stopMsi(m, f.dev);
        maybeFreeCtx(m, c);
      }
      return;
    }
    case "gdev": {
      const d = m.devs[f.dev];
      d.groupFiles = d.groupFiles.filter((x) => x !== key);
      if (d.groupFiles.length === 0) {
        stopMsi(m, f.dev);
        if (d.compatBound !== undefined) {
          const { ctx, devid, hwpt } = d.compatBound;
          const c = m.ctxs.get(ctx)!;
          c.objs.delete(devid);
          d.compatBound = undefined;
          leaveHwpt(m, c, hwpt);
          maybeFreeCtx(m, c);
        }
      }
      const g = m.groups.get(f.dev)!;
      filePut(m, g.file!);
      return;
    }
    case "group": {
      const g = m.groups.get(f.group)!;
      unsetContainer(m, g);
      g.file = undefined;
      return;
    }
    case "container": {
      const c = m.containers.get(f.c)!;
      c.fileOpen = false;
      maybeFreeContainer(m, f.c);
      return;
    }
    case "memfd":
      memfdPut(m, f.mf);
      return;
    case "access": {
      const c = m.ctxs.get(f.ctx)!;
      c.objs.delete(f.id);
      maybeFreeCtx(m, c);
      return;
    }
    case "eventfd":
    case "chaos":
      return;
  }
}

export function memfdPut(m: Model, mf: number): void {
  const x = m.memfds.get(mf)!;
  if (--x.refs === 0) m.memfds.delete(mf);
}

function stopMsi(m: Model, dev: number): void {
  const d = m.devs[dev];
  if (d.msi !== undefined) {
    const k = d.msi;
    d.msi = undefined;
    filePut(m, k);
  }
}

/** The group leaves its container or iommufd (UNSET_CONTAINER or the group file's release). */
export function unsetContainer(m: Model, g: { dev: number; container?: MGroupContainer }): void {
  const gc = g.container;
  g.container = undefined;
  if (gc === undefined) return;
  if (gc.kind === "legacy") {
    const c = m.containers.get(gc.c)!;
    c.groups = c.groups.filter((x) => x !== g.dev);
    if (c.groups.length === 0) {
      c.type = 0;
      c.dmas = [];
      c.windows = [];
    }
    maybeFreeContainer(m, gc.c);
  } else {
    maybeFreeCtx(m, m.ctxs.get(gc.ctx)!);
  }
}
type MGroupContainer = { kind: "legacy"; c: number } | { kind: "iommufd"; ctx: number };

export function maybeFreeContainer(m: Model, key: number): void {
  const c = m.containers.get(key)!;
  if (c.fileOpen || c.groups.length > 0) return;
  m.containers.delete(key);
}

/** A context goes when nothing holds it: its file, a bound device, a group, an access. */
export function maybeFreeCtx(m: Model, c: MCtx): void {
  if (c.fileOpen) return;
  if (m.devs.some((d) => d.bound?.ctx === c.key || d.compatBound?.ctx === c.key)) return;
  for (const g of m.groups.values()) if (g.container?.kind === "iommufd" && g.container.ctx === c.key) return;
  for (const o of c.objs.values()) if (o.kind === "ACCESS") return;
  freeCtxAreas(m, c);
  m.ctxs.delete(c.key);
}

/** After a device left an HWPT (its attachment already cleared): an auto HWPT goes with its last device. */
export function leaveHwpt(m: Model, c: MCtx, hwpt: number): void {
  const o = c.objs.get(hwpt);
  if (o?.kind !== "HWPT" || !o.auto) return;
  if (hwptUsers(m, c, hwpt) === 0) c.objs.delete(hwpt);
}

/** Devices attached to an HWPT (cdev and compat-bound). */
export function hwptUsers(m: Readonly<Model>, c: MCtx, hwpt: number): number {
  let n = 0;
  for (const d of m.devs) {
    if (d.bound?.ctx === c.key && d.attached === hwpt) n++;
    if (d.compatBound?.ctx === c.key && d.compatBound.hwpt === hwpt) n++;
  }
  return n;
}

// --- IOAS state --------------------------------------------------------------

/** A new HWPT object on an IOAS, tracking off and nothing dirty. */
export function newHwptObj(ioas: number, auto: boolean, dirtyCap: boolean): MObj {
  return { kind: "HWPT", ioas, auto, dirtyCap, tracking: false, dirty: new Set() };
}

/** Unmap everything: every area goes; returns the bytes unmapped. */
export function unmapAllAreas(m: Model, c: MCtx, ioas: MIoas): bigint {
  const gone = ioas.areas;
  ioas.areas = [];
  dropAreas(m, c, gone);
  return gone.reduce((n, x) => n + x.len, 0n);
}

/**
 * iopt_unmap_iova_range() without cutting: the areas wholly inside
 * [iova, last] go in ascending order; one sticking out stops the walk
 * (partial: the call fails, those before it stay unmapped).
 */
export function unmapWholeAreas(
  m: Model,
  c: MCtx,
  ioas: MIoas,
  iova: bigint,
  last: bigint,
): { done: bigint; partial: boolean } {
  const hit = ioas.areas
    .filter((x) => x.iova <= last && x.iova + x.len - 1n >= iova)
    .sort((x, y) => (x.iova < y.iova ? -1 : 1));
  let done = 0n;
  const gone: MArea[] = [];
  let partial = false;
  for (const x of hit) {
    if (x.iova < iova || x.iova + x.len - 1n > last) {
      partial = true;
      break;
    }
    gone.push(x);
    done += x.len;
  }
  ioas.areas = ioas.areas.filter((y) => !gone.includes(y));
  dropAreas(m, c, gone);
  return { done, partial };
}

/** A pages object is freed with its last area: a memfd it held is put. */
export function dropAreas(m: Model, c: MCtx, gone: MArea[]): void {
  const left = new Set<MPages>();
  for (const o of c.objs.values()) if (o.kind === "IOAS") for (const a of o.ioas.areas) left.add(a.pages);
  const seen = new Set<MPages>();
  for (const a of gone) {
    if (left.has(a.pages) || seen.has(a.pages)) continue;
    seen.add(a.pages);
    if (a.pages.memfd !== undefined) memfdPut(m, a.pages.memfd);
    if (a.pages.other !== undefined) filePut(m, a.pages.other);
  }
  // Accesses drop pins inside unmapped areas (ops->unmap); dirty bits go with the IOPTEs.
  for (const o of c.objs.values()) {
    if (o.kind === "ACCESS") {
      for (const [k, it] of [...o.items])
        if (gone.some((a) => overlaps(a.iova, a.len, it.iova, it.len))) o.items.delete(k);
    }
    if (o.kind === "HWPT") {
      for (const a of gone)
        for (let pg = a.iova / PAGE; pg * PAGE < a.iova + a.len; pg++) o.dirty.delete(Number(pg));
    }
  }
}

/** Everything a context held goes (its last reference dropped). */
export function freeCtxAreas(m: Model, c: MCtx): void {
  const all: MArea[] = [];
  for (const o of c.objs.values()) if (o.kind === "IOAS") all.push(...o.ioas.areas);
  for (const o of c.objs.values()) if (o.kind === "IOAS") o.ioas.areas = [];
  dropAreas(m, c, all);
}

export function ioasOf(c: MCtx | undefined, id: number): MIoas | undefined {
  const o = c?.objs.get(id);
  return o?.kind === "IOAS" ? o.ioas : undefined;
}

/** Does the IOAS have a domain (any HWPT on it: auto, user-allocated, noiommu)? */
export function ioasHasDomain(c: MCtx, id: number): boolean {
  for (const o of c.objs.values()) if (o.kind === "HWPT" && o.ioas === id) return true;
  return false;
}

/** The IOAS alignment: a page with a domain or with large pages disabled, else a byte. */
export function ioasAligned(c: MCtx, id: number): boolean {
  if (ioasHasDomain(c, id) || ioasOf(c, id)?.hugeOff === true) return true;
  // An access that pins pages (the selftest's NEEDS_PIN_PAGES) needs page alignment too.
  for (const o of c.objs.values()) if (o.kind === "ACCESS" && o.ioas === id) return true;
  return false;
}

/** An area off the page grid (only possible while the IOAS alignment is a byte). */
export function hasUnalignedArea(c: MCtx, id: number): boolean {
  return ioasOf(c, id)!.areas.some((a) => a.iova % PAGE !== 0n || a.len % PAGE !== 0n);
}

/** Objects holding an IOAS: HWPTs and accesses. */
export function ioasUsers(c: MCtx, id: number): number {
  let n = 0;
  for (const o of c.objs.values()) if ((o.kind === "HWPT" || o.kind === "ACCESS") && o.ioas === id) n++;
  return n;
}

/** Is page `i` of a pages object pinned now (by an area in a domain-ful IOAS, or an access)? */
export function pagePinned(c: MCtx, pages: MPages, i: number): boolean {
  const at = BigInt(i) * PAGE;
  for (const [id, o] of c.objs) {
    if (o.kind !== "IOAS") continue;
    const dom = ioasHasDomain(c, id);
    for (const a of o.ioas.areas) {
      if (a.pages !== pages) continue;
      const first = a.off / PAGE;
      const last = (a.off + a.len - 1n) / PAGE;
      if (BigInt(i) < first || BigInt(i) > last) continue;
      if (dom) return true;
      // An access's pins: page i's IOVA span inside this area meets a pinned item.
      const ps = a.iova + at - a.off;
      const s0 = ps > a.iova ? ps : a.iova;
      const e0 = minB(ps + PAGE, a.iova + a.len);
      for (const acc of c.objs.values()) {
        if (acc.kind !== "ACCESS" || acc.ioas !== id) continue;
        for (const it of acc.items.values()) if (it.iova < e0 && s0 < it.iova + it.len) return true;
      }
    }
  }
  return false;
}

/** Why pinning page i of `pages` from its source fails now (0: it would succeed). */
export function pinErrno(m: Readonly<Model>, pages: MPages, i: number): number {
  if (pages.other !== undefined) return 22; // memfd_pin_folios: neither shmem nor hugetlbfs
  if (pages.memfd !== undefined) {
    const f = m.memfds.get(pages.memfd);
    const idx = pages.start / PAGE + BigInt(i);
    const nr = f === undefined ? 0n : (f.size + PAGE - 1n) / PAGE;
    return idx < nr ? 0 : 22; // EINVAL: memfd_pin_folios past EOF
  }
  const p: MProc | undefined = m.procs[pages.proc];
  const va = pages.va + BigInt(i) * PAGE;
  if (p === undefined || !p.alive) return 14;
  return p.bufs.some((b) => va >= b.va && va < b.va + b.len) ? 0 : 14; // EFAULT
}

/** The errno filling these areas into a new domain gives (0: all pages pinned or pinnable), first area first. */
export function fillErrno(m: Readonly<Model>, c: MCtx, areas: MArea[]): number {
  const sorted = [...areas].sort((a, b) => (a.iova < b.iova ? -1 : 1));
  for (const a of sorted) {
    const e = areaPinErrno(m, c, a);
    if (e !== 0) return e;
    // Page-table formats refuse an IOPTE with neither READ nor WRITE (a compat MAP_DMA with flags 0).
    if (a.prot === 0) return 22;
  }
  return 0;
}

export function areaPinErrno(m: Readonly<Model>, c: MCtx, a: MArea): number {
  const first = Number(a.off / PAGE);
  const last = Number((a.off + a.len - 1n) / PAGE);
  for (let i = first; i <= last; i++) {
    if (pagePinned(c, a.pages, i)) continue;
    const e = pinErrno(m, a.pages, i);
    if (e !== 0) return e;
  }
  return 0;
}

// --- what a device reaches ------------------------------------------------------

export interface DevView {
  /** IOVA ranges the device's domain translates, with prot. */
  ranges: { iova: bigint; len: bigint; prot: number }[];
  /** Where it comes from (for messages). */
  what: string;
  /** The HWPT the device is attached to, for dirty tracking. */
  hwpt?: { ctx: MCtx; id: number };
}

/** The translation the model expects for device d (null: DMA faults everything, or PA mode). */
export function devView(m: Readonly<Model>, d: number): DevView | null {
  const dev = m.devs[d];
  if (dev.bound !== undefined && dev.attached !== undefined) {
    const c = m.ctxs.get(dev.bound.ctx)!;
    const h = c.objs.get(dev.attached);
    if (h?.kind !== "HWPT") throw new Violation(`model: vfio${d} attached to ${dev.attached}, not an HWPT`);
    return {
      ranges: ioasOf(c, h.ioas)!.areas,
      what: `IOAS ${h.ioas} via HWPT ${dev.attached}`,
      hwpt: { ctx: c, id: dev.attached },
    };
  }
  if (dev.compatBound !== undefined) {
    const c = m.ctxs.get(dev.compatBound.ctx)!;
    const h = c.objs.get(dev.compatBound.hwpt);
    if (h?.kind !== "HWPT") return null;
    return {
      ranges: ioasOf(c, h.ioas)!.areas,
      what: `compat IOAS ${h.ioas}`,
      hwpt: { ctx: c, id: dev.compatBound.hwpt },
    };
  }
  const g = m.groups.get(d);
  if (g?.container?.kind === "legacy" && dev.groupFiles.length > 0) {
    const c = m.containers.get(g.container.c)!;
    if (c.type === 0) return null;
    return { ranges: c.dmas, what: `container ${c.key}` };
  }
  return null;
}

/** Does the view let a device read and write [iova, iova+len)? */
export function viewAllowsRw(v: DevView | null, iova: bigint, len: bigint): boolean {
  if (v === null) return false;
  // Ranges may join (adjacent areas); walk them.
  let at = iova;
  const end = iova + len;
  while (at < end) {
    const r = v.ranges.find((x) => at >= x.iova && at < x.iova + x.len);
    if (r === undefined || (r.prot & (PROT_R | PROT_W)) !== (PROT_R | PROT_W)) return false;
    at = r.iova + r.len;
  }
  return true;
}
