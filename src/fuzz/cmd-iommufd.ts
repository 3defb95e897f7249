// /dev/iommu: contexts, IOAS_ALLOC, DESTROY, MAP (fixed and allocated),
// MAP_FILE, COPY, UNMAP, HWPT_ALLOC with dirty tracking, ALLOW_IOVAS,
// OPTION, CHANGE_PROCESS and the noiommu GET_PA, each predicted by the model.
import { uapi } from "../index.js";
import { Base, expectRc, fdsOf, fileOf, hex, pick, roomForFd, U64_MAX, Violation } from "./cmd-base.js";
import {
  areaPinErrno,
  dropAreas,
  fileRef,
  fillErrno,
  getFile,
  hasUnalignedArea,
  ioasAligned,
  ioasHasDomain,
  ioasOf,
  ioasUsers,
  newFile,
  newHwptObj,
  unmapAllAreas,
  unmapWholeAreas,
} from "./model-ops.js";
import {
  IOVA_SLOT,
  IOVA_SLOTS,
  lowestFreeFd,
  lowestFreeId,
  type MArea,
  type MCtx,
  type MIoas,
  type MObj,
  type Model,
  type MPages,
  note,
  overlaps,
  PAGE,
  PROT_R,
  PROT_W,
  type Real,
  sioctl,
  slotIova,
} from "./world.js";

const { EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOSPC, ENOTTY, EOPNOTSUPP, EOVERFLOW, EPERM, EADDRINUSE } =
  uapi;
const RW = uapi.IOMMU_IOAS_MAP_READABLE | uapi.IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = uapi.IOMMU_IOAS_MAP_FIXED_IOVA;

/** An iommufd fd of process p, by pick, with its context. */
export function ctxFd(m: Readonly<Model>, p: number, i: number): { fd: number; ctx: MCtx } | undefined {
  const fd = pick(fdsOf(m, p, "iommufd"), i);
  if (fd === undefined) return undefined;
  return { fd, ctx: m.ctxs.get(fileOf(m, p, fd, "iommufd").ctx)! };
}

/** Process p's i-th iommufd context holds an object of this kind. */
export function ctxHas(m: Readonly<Model>, p: number, i: number, kind: MObj["kind"]): boolean {
  const c = ctxFd(m, p, i);
  return c !== undefined && [...c.ctx.objs.values()].some((o) => o.kind === kind);
}

const ioasIds = (c: MCtx) => [...c.objs].filter(([, o]) => o.kind === "IOAS").map(([id]) => id);

export class OpenIommufd extends Base {
  constructor(
    override readonly p: number,
    readonly chaos: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const want = lowestFreeFd(mp);
    const fd = r.procs[this.P].open("/dev/iommu");
    expectRc(r, "open(/dev/iommu) fd", fd, want);
    if (this.chaos) {
      mp.fds.set(fd, newFile(m, { kind: "chaos" }));
      return;
    }
    const key = m.nextKey++;
    m.ctxs.set(key, { key, proc: this.P, objs: new Map(), mmMode: false, compatType: 0, fileOpen: true });
    mp.fds.set(fd, newFile(m, { kind: "iommufd", ctx: key }));
  }
  toString() {
    return `open(p${this.P}, /dev/iommu${this.chaos ? ", chaos" : ""})`;
  }
}

export class IoasAlloc extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly badFlags: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc, {
      flags: this.badFlags ? 1 : 0,
    });
    if (this.badFlags) return expectRc(r, "IOAS_ALLOC(flags 1)", res.rc, -EOPNOTSUPP);
    expectRc(r, "IOAS_ALLOC", res.rc, 0);
    const id = Number(res.out.out_ioas_id);
    if (id !== lowestFreeId(ctx))
      throw new Violation(`IOAS_ALLOC returned id ${id}, model expects ${lowestFreeId(ctx)}`);
    ctx.objs.set(id, { kind: "IOAS", ioas: { areas: [], allowed: [], hugeOff: false } });
  }
  toString() {
    return `IOAS_ALLOC(p${this.P}, #${this.i}${this.badFlags ? ", bad flags" : ""})`;
  }
}

export class Destroy extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly j: number,
    readonly randomId: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const ids = [...ctx.objs.keys()].sort((a, b) => a - b);
    const id = this.randomId > 0 ? this.randomId : (pick(ids, this.j) ?? 0);
    const res = sioctl(r, this.P, fd, uapi.IOMMU_DESTROY, uapi.iommu_destroy, { id });
    const o = ctx.objs.get(id);
    const what = `DESTROY(${o?.kind ?? "?"} ${id})`;
    if (o === undefined) return expectRc(r, `${what} unknown`, res.rc, -ENOENT);
    let busy = false;
    if (o.kind === "IOAS") busy = ioasUsers(ctx, id) > 0;
    else if (o.kind === "HWPT")
      busy = m.devs.some(
        (d) =>
          (d.bound?.ctx === ctx.key && d.attached === id) ||
          (d.compatBound?.ctx === ctx.key && d.compatBound.hwpt === id),
      );
    else busy = true; // DEVICE and ACCESS objects belong to their driver
    if (busy) return expectRc(r, `${what} referenced`, res.rc, -EBUSY);
    expectRc(r, what, res.rc, 0);
    note(m, `destroy ${o.kind}${o.kind === "IOAS" && o.ioas.areas.length > 0 ? " with areas" : ""}`);
    ctx.objs.delete(id);
    if (o.kind === "IOAS") {
      dropAreas(m, ctx, o.ioas.areas);
      if (ctx.compatIoas === id) ctx.compatIoas = undefined;
    }
  }
  toString() {
    return `DESTROY(p${this.P}, #${this.i}, obj ${this.randomId > 0 ? this.randomId : `#${this.j}`})`;
  }
}

/** How a map request is spoiled (0: a valid request). */
const MAP_DEFECTS = [
  "valid",
  "badId",
  "zeroLen",
  "overflow",
  "badFlags",
  "noRw",
  "unaligned",
  "auto",
] as const;

/** iopt_alloc_iova's alignment: min(roundup_pow_of_two(length), lowest set bit of the user VA). */
function allocAlign(len: bigint, va: bigint): bigint {
  let a = 1n;
  while (a < len) a <<= 1n;
  const low = va === 0n ? a : va & -va;
  return a < low ? a : low;
}

/** Could an allocated IOVA of `len` fit (aligned) inside the allowed ranges, clear of areas? */
function allocFits(ioas: MIoas, len: bigint, align: bigint): boolean {
  for (const [s, l] of ioas.allowed) {
    let at = ((s + align - 1n) / align) * align;
    while (at + len - 1n <= l) {
      const hit = ioas.areas.find((a) => overlaps(a.iova, a.len, at, len));
      if (hit === undefined) return true;
      at = ((hit.iova + hit.len + align - 1n) / align) * align;
    }
  }
  return false;
}

/** Record a new area, checking the kernel's answer; the caller checked errors. */
function addArea(m: Model, ctx: MCtx, id: number, a: MArea): void {
  ioasOf(ctx, id)!.areas.push(a);
  note(m, ioasHasDomain(ctx, id) ? "map pinned" : "map lazy");
}

export class IoasMap extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
    readonly buf: number,
    readonly pages: number,
    readonly slot: number,
    readonly readOnly: boolean,
    readonly defect: number,
    readonly strayVa: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "IOAS");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick(ioasIds(ctx), this.ioasPick)!;
    const ioas = ioasOf(ctx, id)!;
    const mp = m.procs[this.P];
    const b = pick(mp.bufs, this.buf);
    const va = this.strayVa || b === undefined ? 0x7e0000000000n + BigInt(this.slot) * PAGE : b.va;
    const maxPages = b === undefined || this.strayVa ? this.pages : Number(b.len / PAGE);
    const len = BigInt(Math.min(this.pages, maxPages)) * PAGE;
    const iova = slotIova(this.slot);
    const prot = this.readOnly ? PROT_R : PROT_R | PROT_W;
    const flags = FIXED | uapi.IOMMU_IOAS_MAP_READABLE | (this.readOnly ? 0 : uapi.IOMMU_IOAS_MAP_WRITEABLE);
    const d: (typeof MAP_DEFECTS)[number] = MAP_DEFECTS[this.defect];
    const dom = ioasHasDomain(ctx, id);
    const v = { flags, ioas_id: id, user_va: va, length: len, iova };
    if (d === "badId") v.ioas_id = 0x7fff0000 + this.slot;
    if (d === "zeroLen") v.length = 0n;
    if (d === "overflow") {
      // iova + length - 1 wraps past 2^64 (ending exactly at 2^64 - 1 would be valid).
      v.iova = U64_MAX - PAGE + 1n;
      v.length = len + PAGE;
    }
    if (d === "badFlags") v.flags = flags | 0x100;
    if (d === "noRw") v.flags = FIXED;
    // Without a domain the IOAS alignment is one byte: an unaligned IOVA is valid, and a later attach refuses it.
    if (d === "unaligned") v.iova = iova + 0x10n;
    if (d === "auto") v.flags &= ~FIXED;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_MAP, uapi.iommu_ioas_map, v);
    const what = `IOAS_MAP(${d}, iova ${hex(v.iova)}, len ${hex(v.length)})`;
    const want: Record<string, number[]> = {
      badId: [-ENOENT],
      zeroLen: [-EINVAL],
      overflow: [-EOVERFLOW],
      badFlags: [-EOPNOTSUPP],
      noRw: [-EINVAL],
    };
    if (want[d] !== undefined) return expectRc(r, what, res.rc, want[d]);
    if (d === "unaligned" && ioasAligned(ctx, id))
      return expectRc(r, `${what} page-aligned IOAS`, res.rc, -EINVAL);
    const pages: MPages = { id: m.nextKey++, va, proc: this.P, start: 0n, len, writable: !this.readOnly };
    let at = v.iova;
    if (d === "auto") {
      const align = allocAlign(len, va);
      if (ioas.allowed.length > 0 && !allocFits(ioas, len, align))
        return expectRc(r, `${what} no room`, res.rc, -ENOSPC);
    } else if (ioas.areas.some((x) => overlaps(x.iova, x.len, v.iova, len)))
      return expectRc(r, what, res.rc, -EEXIST);
    // With a domain the pages are pinned now: the VA must be backed.
    if (dom && areaPinErrno(m, ctx, { iova: at, len, prot, pages, off: 0n }) !== 0)
      return expectRc(r, what, res.rc, -EFAULT);
    expectRc(r, what, res.rc, 0);
    if (d === "auto") {
      at = res.out.iova as bigint;
      const align = allocAlign(len, va);
      if (at % align !== 0n || ioas.areas.some((x) => overlaps(x.iova, x.len, at, len)))
        throw new Violation(
          `${what}: allocated IOVA ${hex(at)} overlaps an area or is not aligned to ${hex(align)}`,
        );
      if (ioas.allowed.length > 0 && !ioas.allowed.some(([s, l]) => at >= s && at + len - 1n <= l))
        throw new Violation(`${what}: allocated IOVA ${hex(at)} is outside the allowed ranges`);
      note(m, ioas.allowed.length > 0 ? "map auto in allowed" : "map auto");
    }
    addArea(m, ctx, id, { iova: at, len, prot, pages, off: 0n });
  }
  toString() {
    return `IOAS_MAP(p${this.P}, #${this.i}, ioas #${this.ioasPick}, buf ${this.strayVa ? "stray" : this.buf}, ${this.pages}p, slot ${this.slot}${this.readOnly ? ", ro" : ""}, ${MAP_DEFECTS[this.defect]})`;
  }
}

/** MAP_FILE of a memfd: pinned now when a domain exists (past EOF: EINVAL), lazily otherwise. */
export class IoasMapFile extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
    readonly mfPick: number,
    readonly startPage: number,
    readonly pages: number,
    readonly slot: number,
    readonly badFd: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "IOAS") && fdsOf(m, this.P, this.badFd ? "eventfd" : "memfd").length > 0;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick(ioasIds(ctx), this.ioasPick)!;
    const ioas = ioasOf(ctx, id)!;
    // A file that is no memfd (an eventfd): accepted, but it can never be pinned.
    const mfd = pick(fdsOf(m, this.P, this.badFd ? "eventfd" : "memfd"), this.mfPick)!;
    const iova = slotIova(this.slot);
    const len = BigInt(this.pages) * PAGE;
    const start = BigInt(this.startPage) * PAGE;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_MAP_FILE, uapi.iommu_ioas_map_file, {
      flags: FIXED | RW,
      ioas_id: id,
      fd: mfd,
      start,
      length: len,
      iova,
    });
    const what = `IOAS_MAP_FILE(fd ${mfd}, start ${hex(start)}, len ${hex(len)}, iova ${hex(iova)})`;
    if (m.kind === "k612") return expectRc(r, `${what} on 6.12`, res.rc, -ENOTTY);
    const mf = this.badFd ? undefined : fileOf(m, this.P, mfd, "memfd").mf;
    const other = this.badFd ? m.procs[this.P].fds.get(mfd) : undefined;
    if (ioas.areas.some((x) => overlaps(x.iova, x.len, iova, len))) return expectRc(r, what, res.rc, -EEXIST);
    const pages: MPages = {
      id: m.nextKey++,
      va: 0n,
      proc: this.P,
      memfd: mf,
      other,
      start,
      len,
      writable: true,
    };
    const area: MArea = { iova, len, prot: PROT_R | PROT_W, pages, off: 0n };
    if (ioasHasDomain(ctx, id)) {
      const e = areaPinErrno(m, ctx, area);
      if (e !== 0) return expectRc(r, `${what} past EOF`, res.rc, -e);
    }
    expectRc(r, what, res.rc, 0);
    if (mf !== undefined) m.memfds.get(mf)!.refs++;
    if (other !== undefined) fileRef(m, other);
    addArea(m, ctx, id, area);
    note(m, this.badFd ? "map file not a memfd" : "map file");
  }
  toString() {
    return `IOAS_MAP_FILE(p${this.P}, #${this.i}, ioas #${this.ioasPick}, memfd #${this.mfPick}, page ${this.startPage}, ${this.pages}p, slot ${this.slot}${this.badFd ? ", bad fd" : ""})`;
  }
}

/** COPY: the pages under a source range (contiguous areas) mapped again, one area per source slice. */
export class IoasCopy extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly srcPick: number,
    readonly dstPick: number,
    readonly areaPick: number,
    readonly span: number,
    readonly slot: number,
    readonly readOnly: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "IOAS");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const ids = ioasIds(ctx);
    const srcId = pick(ids, this.srcPick)!;
    const dstId = pick(ids, this.dstPick)!;
    const src = ioasOf(ctx, srcId)!;
    const dst = ioasOf(ctx, dstId)!;
    const sorted = [...src.areas].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    const a0 = pick(sorted, this.areaPick);
    // From inside an area (maybe through the next ones), or from an arbitrary grid slot.
    const srcIova =
      a0 !== undefined ? a0.iova + ((BigInt(this.span % 3) * PAGE) % a0.len) : slotIova(this.areaPick);
    const length = BigInt(1 + (this.span % 6)) * PAGE;
    const dstIova = slotIova(this.slot);
    const prot = this.readOnly ? PROT_R : PROT_R | PROT_W;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_COPY, uapi.iommu_ioas_copy, {
      flags: FIXED | uapi.IOMMU_IOAS_MAP_READABLE | (this.readOnly ? 0 : uapi.IOMMU_IOAS_MAP_WRITEABLE),
      dst_ioas_id: dstId,
      src_ioas_id: srcId,
      length,
      dst_iova: dstIova,
      src_iova: srcIova,
    });
    const what = `IOAS_COPY(${srcId}:${hex(srcIova)} -> ${dstId}:${hex(dstIova)}, ${hex(length)})`;
    // iopt_get_pages: contiguous areas must cover the source range.
    const slices: MArea[] = [];
    let at = srcIova;
    const end = srcIova + length;
    while (at < end) {
      const a = src.areas.find((x) => at >= x.iova && at < x.iova + x.len);
      if (a === undefined) return expectRc(r, `${what} source hole at ${hex(at)}`, res.rc, -ENOENT);
      const e = a.iova + a.len < end ? a.iova + a.len : end;
      slices.push({
        iova: dstIova + (at - srcIova),
        len: e - at,
        prot,
        pages: a.pages,
        off: a.off + (at - a.iova),
      });
      at = e;
    }
    if (dst.areas.some((x) => overlaps(x.iova, x.len, dstIova, length)))
      return expectRc(r, what, res.rc, -EEXIST);
    if (!this.readOnly && slices.some((x) => !x.pages.writable))
      return expectRc(r, `${what} writable copy of read-only pages`, res.rc, -EPERM);
    if (ioasHasDomain(ctx, dstId)) {
      const e = fillErrno(m, ctx, slices);
      if (e !== 0) return expectRc(r, `${what} unpinnable`, res.rc, -e);
    }
    expectRc(r, what, res.rc, 0);
    dst.areas.push(...slices);
    note(m, slices.length > 1 ? "copy across areas" : "copy");
  }
  toString() {
    return `IOAS_COPY(p${this.P}, #${this.i}, ${this.srcPick}->${this.dstPick}, area #${this.areaPick}, span ${this.span}, slot ${this.slot}${this.readOnly ? ", ro" : ""})`;
  }
}

export class IoasUnmap extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
    readonly mode: number,
    readonly a: number,
    readonly b: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "IOAS");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick(ioasIds(ctx), this.ioasPick)!;
    const ioas = ioasOf(ctx, id)!;
    let iova: bigint;
    let length: bigint;
    const exact = pick(ioas.areas, this.a);
    if (this.mode === 0 && exact !== undefined) {
      iova = exact.iova;
      length = exact.len;
    } else if (this.mode === 1) {
      iova = 0n;
      length = U64_MAX;
    } else if (this.mode === 2) {
      iova = U64_MAX - 0x1000n;
      length = 0x2000n; // iova + length - 1 overflows
    } else {
      const s = Math.min(this.a % IOVA_SLOTS, this.b % IOVA_SLOTS);
      const e = Math.max(this.a % IOVA_SLOTS, this.b % IOVA_SLOTS);
      iova = slotIova(s);
      length = BigInt(e - s + 1) * IOVA_SLOT;
    }
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_UNMAP, uapi.iommu_ioas_unmap, {
      ioas_id: id,
      iova,
      length,
    });
    const what = `IOAS_UNMAP(${hex(iova)}, ${hex(length)})`;
    if (this.mode === 1) {
      expectRc(r, what, res.rc, 0);
      const total = unmapAllAreas(m, ctx, ioas);
      if (res.out.length !== total)
        throw new Violation(`${what}: unmapped ${res.out.length}, model ${total}`);
      return;
    }
    if (this.mode === 2) return expectRc(r, what, res.rc, -EOVERFLOW);
    // One area sticking out stops the call with ENOENT.
    const { done, partial } = unmapWholeAreas(m, ctx, ioas, iova, iova + length - 1n);
    if (partial) return expectRc(r, `${what} (partial area)`, res.rc, -ENOENT);
    if (done === 0n) return expectRc(r, `${what} (nothing)`, res.rc, -ENOENT);
    expectRc(r, what, res.rc, 0);
    note(m, "unmap");
    if (res.out.length !== done) throw new Violation(`${what}: unmapped ${res.out.length}, model ${done}`);
  }
  toString() {
    return `IOAS_UNMAP(p${this.P}, #${this.i}, ioas #${this.ioasPick}, mode ${this.mode}, ${this.a}, ${this.b})`;
  }
}

/** HWPT_ALLOC of a paging HWPT for a bound device on an IOAS (plain, DIRTY_TRACKING, bad flags, bad ids). */
export class HwptAlloc extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly devPick: number,
    readonly ioasPick: number,
    readonly variant: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "IOAS") && ctxHas(m, this.P, this.i, "DEVICE");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const devIds = [...ctx.objs].filter(([, o]) => o.kind === "DEVICE").map(([id]) => id);
    const devId = pick(devIds, this.devPick)!;
    const ioasId = pick(ioasIds(ctx), this.ioasPick)!;
    const dirty = this.variant === 1;
    const v = {
      flags: dirty ? uapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING : this.variant === 2 ? 0x80 : 0,
      dev_id: this.variant === 3 ? 0x7fff0001 : devId,
      pt_id: this.variant === 4 ? devId : this.variant === 5 ? 0x7fff0002 : ioasId,
    };
    const res = sioctl(r, this.P, fd, uapi.IOMMU_HWPT_ALLOC, uapi.iommu_hwpt_alloc, v);
    const what = `HWPT_ALLOC(dev ${v.dev_id}, pt ${v.pt_id}, flags ${hex(v.flags)})`;
    if (this.variant === 3) return expectRc(r, `${what} unknown device`, res.rc, -ENOENT);
    // iommufd_hwpt_alloc: an unknown pt_id or one of the wrong type is EINVAL.
    if (this.variant === 5) return expectRc(r, `${what} unknown pt`, res.rc, -EINVAL);
    if (this.variant === 4) return expectRc(r, `${what} pt is a device`, res.rc, -EINVAL);
    if (this.variant === 2) return expectRc(r, `${what} bad flags`, res.rc, -EOPNOTSUPP);
    if (dirty && !m.spec.dirty) return expectRc(r, `${what} no dirty tracking`, res.rc, -EOPNOTSUPP);
    const e = newDomainErrno(m, ctx, ioasId);
    if (e !== 0) return expectRc(r, `${what} refused by the IOAS`, res.rc, -e);
    expectRc(r, what, res.rc, 0);
    const id = Number(res.out.out_hwpt_id);
    if (id !== lowestFreeId(ctx))
      throw new Violation(`${what}: hwpt id ${id}, model expects ${lowestFreeId(ctx)}`);
    ctx.objs.set(id, newHwptObj(ioasId, false, dirty));
    note(m, dirty ? "hwpt alloc dirty" : "hwpt alloc");
  }
  toString() {
    return `HWPT_ALLOC(p${this.P}, #${this.i}, dev #${this.devPick}, ioas #${this.ioasPick}, variant ${this.variant})`;
  }
}

/** What adding a new domain to an IOAS fails with: an area off the page grid (EADDRINUSE), then the fill (pins). */
export function newDomainErrno(m: Readonly<Model>, ctx: MCtx, ioasId: number): number {
  const areas = ioasOf(ctx, ioasId)!.areas;
  if (areas.some((a) => a.iova % PAGE !== 0n || a.len % PAGE !== 0n)) return EADDRINUSE;
  // Outside the aperture is reserved for the new domain: an area there refuses it.
  const ap = m.spec.aperture;
  if (ap !== undefined && areas.some((a) => a.iova < ap[0] || a.iova + a.len - 1n > ap[1])) return EADDRINUSE;
  return fillErrno(m, ctx, areas);
}

/** HWPT ids of a context; dirty-tracking ones first when asked (they are the interesting targets). */
const hwptIds = (c: MCtx, dirtyFirst = false) => {
  const all = [...c.objs].filter(([, o]) => o.kind === "HWPT");
  const dirty = all.filter(([, o]) => o.kind === "HWPT" && o.dirtyCap);
  return (dirtyFirst && dirty.length > 0 ? dirty : all).map(([id]) => id);
};

/** The HWPT a dirty-tracking command acts on: three picks in four among the dirty-capable ones. */
function pickDirtyTarget(ctx: MCtx, h: number) {
  const id = pick(hwptIds(ctx, h % 4 !== 3), h)!;
  const o = ctx.objs.get(id)!;
  if (o.kind !== "HWPT") throw new Violation("model: not an HWPT");
  return { id, o };
}

/** SET_DIRTY_TRACKING: enabling starts from a clean slate. */
export class SetDirty extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly h: number,
    readonly enable: boolean,
    readonly badFlags: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "HWPT");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const { id, o } = pickDirtyTarget(ctx, this.h);
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.IOMMU_HWPT_SET_DIRTY_TRACKING,
      uapi.iommu_hwpt_set_dirty_tracking,
      {
        flags: this.badFlags ? 2 : this.enable ? 1 : 0,
        hwpt_id: id,
      },
    );
    const what = `SET_DIRTY_TRACKING(${id}, ${this.enable})`;
    if (this.badFlags) return expectRc(r, `${what} bad flags`, res.rc, -EOPNOTSUPP);
    if (!o.dirtyCap) return expectRc(r, `${what} no dirty ops`, res.rc, -EOPNOTSUPP);
    expectRc(r, what, res.rc, 0);
    o.tracking = this.enable;
    if (this.enable) o.dirty.clear();
    note(m, this.enable ? "dirty tracking on" : "dirty tracking off");
  }
  toString() {
    return `SET_DIRTY(p${this.P}, #${this.i}, hwpt #${this.h}, ${this.enable ? "on" : "off"}${this.badFlags ? ", bad flags" : ""})`;
  }
}

/** GET_DIRTY_BITMAP over grid slots: every page a DMA wrote while tracking is reported (then cleared). */
export class GetDirty extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly h: number,
    readonly slot: number,
    readonly slots: number,
    readonly noClear: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "HWPT");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const { id, o } = pickDirtyTarget(ctx, this.h);
    const iova = slotIova(this.slot);
    const length = BigInt(Math.min(this.slots, IOVA_SLOTS - (this.slot % IOVA_SLOTS))) * IOVA_SLOT;
    const data = r.argVa[this.P] + 4096n;
    const nbits = Number(length / PAGE);
    if (r.procs[this.P].writeMemory(data, new Uint8Array(Math.ceil(nbits / 8))) !== 0)
      throw new Violation("bitmap area not writable");
    const res = sioctl(r, this.P, fd, uapi.IOMMU_HWPT_GET_DIRTY_BITMAP, uapi.iommu_hwpt_get_dirty_bitmap, {
      hwpt_id: id,
      flags: this.noClear ? 1 : 0,
      iova,
      length,
      page_size: PAGE,
      data,
    });
    const what = `GET_DIRTY_BITMAP(${id}, ${hex(iova)}, ${hex(length)})`;
    if (!o.dirtyCap) return expectRc(r, `${what} no dirty ops`, res.rc, -EOPNOTSUPP);
    expectRc(r, what, res.rc, 0);
    const bm = r.procs[this.P].readMemory(data, Math.ceil(nbits / 8));
    if (typeof bm === "number") throw new Violation("bitmap unreadable");
    // The walk covers contiguous areas from iova; a hole stops it.
    const areas = ioasOf(ctx, o.ioas)!.areas;
    let at = iova;
    const end = iova + length;
    while (at < end) {
      const a = areas.find((x) => at >= x.iova && at < x.iova + x.len);
      if (a === undefined) break;
      at = a.iova + a.len;
    }
    // With tracking off the driver refuses the first area: the walk stops there and the ioctl still succeeds.
    const walked = !o.tracking ? iova : at < end ? at : end;
    for (let bit = 0; bit < nbits; bit++) {
      const pg = Number(iova / PAGE) + bit;
      const got = (bm[bit >> 3] & (1 << (bit & 7))) !== 0;
      const want = o.dirty.has(pg) && BigInt(pg) * PAGE < walked;
      if (want && !got)
        throw new Violation(
          `${what}: page ${hex(BigInt(pg) * PAGE)} was written by DMA but is not reported dirty`,
        );
      if (got && BigInt(pg) * PAGE >= walked)
        throw new Violation(
          `${what}: page ${hex(BigInt(pg) * PAGE)} reported dirty outside the walked areas`,
        );
      if (got && !this.noClear) o.dirty.delete(pg);
    }
    if (!this.noClear)
      for (const pg of [...o.dirty])
        if (BigInt(pg) * PAGE >= iova && BigInt(pg) * PAGE < walked) o.dirty.delete(pg);
    if (bm.some((x) => x !== 0)) note(m, "dirty bits read");
  }
  toString() {
    return `GET_DIRTY(p${this.P}, #${this.i}, hwpt #${this.h}, slot ${this.slot}+${this.slots}${this.noClear ? ", no clear" : ""})`;
  }
}

/** ALLOW_IOVAS: grid ranges (or none, clearing the list); malformed lists change nothing. */
export class AllowIovas extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
    readonly ranges: [number, number][],
    readonly bad: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxHas(m, this.P, this.i, "IOAS");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick(ioasIds(ctx), this.ioasPick)!;
    const list: [bigint, bigint][] = this.ranges.map(([a, n]) => [
      slotIova(a),
      slotIova(a) + BigInt(1 + n) * IOVA_SLOT - 1n,
    ]);
    if (this.bad === 1 && list.length > 0) list[0] = [list[0][1], list[0][0]]; // start > last
    if (this.bad === 2 && list.length > 0) list.push(list[0]); // overlapping
    const bytes = new Uint8Array(16 * list.length);
    const dv = new DataView(bytes.buffer);
    list.forEach(([s, l], k) => {
      dv.setBigUint64(16 * k, s, true);
      dv.setBigUint64(16 * k + 8, l, true);
    });
    const ptr = r.argVa[this.P] + 4096n;
    if (r.procs[this.P].writeMemory(ptr, bytes) !== 0) throw new Violation("range area not writable");
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_ALLOW_IOVAS, uapi.iommu_ioas_allow_iovas, {
      ioas_id: id,
      num_iovas: list.length,
      allowed_iovas: ptr,
    });
    const what = `ALLOW_IOVAS(${id}, ${list.map(([s, l]) => `${hex(s)}-${hex(l)}`).join(",")})`;
    if (this.bad > 0 && this.ranges.length > 0) return expectRc(r, `${what} malformed`, res.rc, -EINVAL);
    expectRc(r, what, res.rc, 0);
    ioasOf(ctx, id)!.allowed = list;
    note(m, list.length > 0 ? "allow iovas" : "allow iovas cleared");
  }
  toString() {
    return `ALLOW_IOVAS(p${this.P}, #${this.i}, ioas #${this.ioasPick}, ${JSON.stringify(this.ranges)}${this.bad ? `, bad ${this.bad}` : ""})`;
  }
}

/** IOMMU_OPTION: RLIMIT_MODE (global, CAP_SYS_RESOURCE, only while the context is empty) and HUGE_PAGES per IOAS. */
export class OptionCmd extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly which: number,
    readonly get: boolean,
    readonly val: number,
    readonly ioasPick: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const huge = this.which === 1;
    const ids = ioasIds(ctx);
    const objectId = huge ? (pick(ids, this.ioasPick) ?? 0x7fff0003) : 0;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_OPTION, uapi.iommu_option, {
      option_id: this.which,
      op: this.get ? 1 : 0,
      object_id: objectId,
      val64: BigInt(this.val),
    });
    const what = `OPTION(${huge ? "HUGE_PAGES" : "RLIMIT_MODE"}, ${this.get ? "get" : `set ${this.val}`}, obj ${objectId})`;
    if (this.which > 1) return expectRc(r, what, res.rc, -EOPNOTSUPP);
    if (!huge) {
      if (this.get) {
        expectRc(r, what, res.rc, 0);
        if (res.out.val64 !== (ctx.mmMode ? 1n : 0n))
          throw new Violation(`${what}: ${res.out.val64}, model ${ctx.mmMode ? 1 : 0}`);
        return;
      }
      if (!r.procs[this.P].task.cred.caps.has("CAP_SYS_RESOURCE"))
        return expectRc(r, `${what} unprivileged`, res.rc, -EPERM);
      if (ctx.objs.size > 0) return expectRc(r, `${what} objects exist`, res.rc, -EBUSY);
      if (this.val > 1) return expectRc(r, what, res.rc, -EINVAL);
      expectRc(r, what, res.rc, 0);
      ctx.mmMode = this.val === 1;
      note(m, "rlimit mode set");
      return;
    }
    const ioas = ioasOf(ctx, objectId);
    if (ioas === undefined) return expectRc(r, `${what} no IOAS`, res.rc, -ENOENT);
    if (this.get) {
      expectRc(r, what, res.rc, 0);
      if (res.out.val64 !== (ioas.hugeOff ? 0n : 1n))
        throw new Violation(`${what}: ${res.out.val64}, model ${ioas.hugeOff ? 0 : 1}`);
      return;
    }
    if (this.val > 1) return expectRc(r, what, res.rc, -EINVAL);
    if (this.val === 0 && !ioas.hugeOff && ioasHasDomain(ctx, objectId) && ioas.areas.length > 0)
      return expectRc(r, `${what} domain with areas`, res.rc, -EINVAL);
    if (this.val === 0 && !ioas.hugeOff && hasUnalignedArea(ctx, objectId))
      return expectRc(r, `${what} unaligned area`, res.rc, -EADDRINUSE);
    expectRc(r, what, res.rc, 0);
    ioas.hugeOff = this.val === 0;
    note(m, "huge pages option");
  }
  toString() {
    return `OPTION(p${this.P}, #${this.i}, ${this.which}, ${this.get ? "get" : `set ${this.val}`}, ioas #${this.ioasPick})`;
  }
}

/** CHANGE_PROCESS: only when every area is file-backed (the caller is the owner here: nothing moves). */
export class ChangeProcess extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return ctxFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_CHANGE_PROCESS, uapi.iommu_ioas_change_process, {});
    const what = "IOAS_CHANGE_PROCESS";
    if (m.kind === "k612") return expectRc(r, `${what} on 6.12`, res.rc, -ENOTTY);
    for (const o of ctx.objs.values()) {
      if (
        o.kind === "IOAS" &&
        o.ioas.areas.some((a) => a.pages.memfd === undefined && a.pages.other === undefined)
      )
        return expectRc(r, `${what} anonymous area`, res.rc, -EINVAL);
    }
    expectRc(r, what, res.rc, 0);
    note(m, "change process");
  }
  toString() {
    return `CHANGE_PROCESS(p${this.P}, #${this.i})`;
  }
}

/** noiommu GET_PA: the PA of a mapped IOVA (kept for DMA), ENOENT off the areas, EOPNOTSUPP without the software domain. */
export class GetPa extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
    readonly areaPick: number,
    readonly off: number,
    readonly max: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return m.spec.noiommu && ctxHas(m, this.P, this.i, "IOAS");
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick(ioasIds(ctx), this.ioasPick)!;
    const ioas = ioasOf(ctx, id)!;
    const a = pick(ioas.areas, this.areaPick);
    const iova = a !== undefined ? a.iova + ((BigInt(this.off) * 0x308n) % a.len) : slotIova(this.areaPick);
    const max = BigInt(this.max) * 0x800n;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_NOIOMMU_GET_PA, uapi.iommu_ioas_noiommu_get_pa, {
      ioas_id: id,
      iova,
      length: max,
    });
    const rev = r.m.ctx.noiommuRevision;
    const what = `GET_PA(${rev}, ${hex(iova)}, max ${hex(max)})`;
    if (rev === "v9" && max === 0n) return expectRc(r, `${what} zero length`, res.rc, -EINVAL);
    const hit = ioas.areas.find((x) => iova >= x.iova && iova < x.iova + x.len);
    if (hit === undefined) return expectRc(r, `${what} unmapped`, res.rc, -ENOENT);
    if (!ioasHasDomain(ctx, id)) return expectRc(r, `${what} no domain`, res.rc, -EOPNOTSUPP);
    expectRc(r, what, res.rc, 0);
    const phys = res.out.out_phys as bigint;
    const len = res.out.length as bigint;
    const cap = rev === "v4" || max === 0n ? U64_MAX : max;
    const toEnd = hit.iova + hit.len - iova;
    const inPage = PAGE - (iova % PAGE);
    const least = [toEnd, inPage, cap].reduce((x, y) => (x < y ? x : y));
    if (phys % PAGE !== iova % PAGE || len < least || len > toEnd || len > cap)
      throw new Violation(
        `${what}: phys ${hex(phys)} length ${hex(len)} (area ends ${hex(toEnd)} on, cap ${hex(cap)})`,
      );
    m.pas.push(phys - (phys % 8n));
    if (m.pas.length > 16) m.pas.shift();
    note(m, "get pa");
  }
  toString() {
    return `GET_PA(p${this.P}, #${this.i}, ioas #${this.ioasPick}, area #${this.areaPick}, +${this.off}, max ${this.max})`;
  }
}

export { EFAULT, getFile };
