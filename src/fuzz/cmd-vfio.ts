// VFIO: device cdevs (bind, attach/replace between IOASes and HWPTs,
// detach), groups and containers (legacy type1 and sPAPR, and iommufd's
// compat container on /dev/iommu or /dev/vfio/vfio), GET_DEVICE_FD, the
// device's DMA through BAR0 (pwrite or an mmap of the BAR) with MSI to an
// eventfd, and the selftest's access objects.
import { uapi } from "../index.js";
import {
  alive,
  Base,
  expectRc,
  fdsOf,
  fileOf,
  hex,
  maxB,
  minB,
  pick,
  roomForFd,
  strayFd,
  U64_MAX,
  Violation,
} from "./cmd-base.js";
import { ctxFd, ctxHas, newDomainErrno } from "./cmd-iommufd.js";
import {
  areaPinErrno,
  devView,
  dropAreas,
  filePut,
  fileRef,
  fillErrno,
  getFile,
  hasUnalignedArea,
  ioasAligned,
  ioasHasDomain,
  ioasOf,
  leaveHwpt,
  newFile,
  newHwptObj,
  unmapAllAreas,
  unmapWholeAreas,
  unsetContainer,
  viewAllowsRw,
} from "./model-ops.js";
import {
  backed,
  bdfOf,
  CDEV_DEVS,
  IOVA_SLOT,
  IOVA_SLOTS,
  le,
  lowestFreeFd,
  lowestFreeId,
  type MArea,
  type MContainer,
  type MCtx,
  type MDma,
  type Model,
  note,
  overlaps,
  PAGE,
  PROT_R,
  PROT_W,
  type Real,
  sioctl,
  slotIova,
} from "./world.js";

const {
  EADDRINUSE,
  EBADF,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  ENODEV,
  ENOENT,
  EOPNOTSUPP,
  EPERM,
  ENXIO,
  ENOSPC,
  ENOMEM,
  ENOTTY,
} = uapi;
/** What the legacy sPAPR container may answer where the model takes the kernel's word (v1/v2, windows, registration). */
const SPAPR_ANSWERS = [0, -EINVAL, -EPERM, -ENOENT, -EBUSY, -ENOMEM, -EFAULT, -ENOTTY, -ENXIO, -ENOSPC];

// --- device cdevs -------------------------------------------------------------------

export class OpenDev extends Base {
  constructor(
    override readonly p: number,
    readonly d: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const want = lowestFreeFd(mp);
    const fd = r.procs[this.P].open(m.spec.cdev(this.d));
    expectRc(r, `open(${m.spec.cdev(this.d)}) fd`, fd, want);
    mp.fds.set(fd, newFile(m, { kind: "cdev", dev: this.d }));
  }
  toString() {
    return `open(p${this.P}, vfio${this.d})`;
  }
}

function cdevFd(
  m: Readonly<Model>,
  p: number,
  i: number,
): { fd: number; d: number; key: number } | undefined {
  const fd = pick(fdsOf(m, p, "cdev"), i);
  if (fd === undefined) return undefined;
  return { fd, d: fileOf(m, p, fd, "cdev").dev, key: m.procs[p].fds.get(fd)! };
}

/** Device fds with access granted (bound cdevs, group-path device fds), by pick. */
function openDevFd(m: Readonly<Model>, p: number, i: number) {
  const c: { fd: number; d: number; key: number }[] = [];
  if (!alive(m, p)) return undefined;
  for (const fd of [...m.procs[p].fds.keys()].sort((a, b) => a - b)) {
    const key = m.procs[p].fds.get(fd)!;
    const f = m.files.get(key)!.f;
    if (f.kind === "cdev" && m.devs[f.dev].bound?.file === key) c.push({ fd, d: f.dev, key });
    if (f.kind === "gdev") c.push({ fd, d: f.dev, key });
  }
  return pick(c, i);
}

export class Bind extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly j: number,
    readonly badFd: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return cdevFd(m, this.P, this.i) !== undefined && (this.badFd || ctxFd(m, this.P, this.j) !== undefined);
  }
  act(m: Model, r: Real) {
    const { fd, d, key } = cdevFd(m, this.P, this.i)!;
    const dev = m.devs[d];
    let iommufd: number;
    let ctx: MCtx | undefined;
    if (this.badFd) iommufd = strayFd(m, this.P, this.j);
    else ({ fd: iommufd, ctx } = ctxFd(m, this.P, this.j)!);
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.VFIO_DEVICE_BIND_IOMMUFD,
      uapi.vfio_device_bind_iommufd,
      { iommufd },
      "argsz",
    );
    const what = `VFIO_DEVICE_BIND_IOMMUFD(vfio${d}, iommufd ${iommufd})`;
    // Kernel order: this file already bound; the iommufd lookup; then the one-opener rule.
    if (dev.bound?.file === key) return expectRc(r, `${what} this fd is bound`, res.rc, -EINVAL);
    if (ctx === undefined) return expectRc(r, `${what} bad fd`, res.rc, -EBADF);
    if (dev.bound !== undefined) return expectRc(r, `${what} bound elsewhere`, res.rc, -EINVAL);
    expectRc(r, what, res.rc, 0);
    const devid = Number(res.out.out_devid);
    if (devid !== lowestFreeId(ctx))
      throw new Violation(`${what}: devid ${devid}, model expects ${lowestFreeId(ctx)}`);
    ctx.objs.set(devid, { kind: "DEVICE", dev: d });
    dev.bound = { file: key, ctx: ctx.key, devid };
    note(m, "bind");
    r.regions.set(String(key), regions(r, this.P, fd));
  }
  toString() {
    return `BIND(p${this.P}, dev #${this.i}, iommufd #${this.j}${this.badFd ? ", bad fd" : ""})`;
  }
}

function regions(r: Real, p: number, fd: number): { cfg: bigint; bar0: bigint } {
  const get = (index: number) => {
    const res = sioctl(
      r,
      p,
      fd,
      uapi.VFIO_DEVICE_GET_REGION_INFO,
      uapi.vfio_region_info,
      { index },
      "argsz",
      32,
    );
    if (res.rc !== 0) throw new Violation(`GET_REGION_INFO(${index}) failed: ${res.rc}`);
    return res.out.offset as bigint;
  };
  return { cfg: get(uapi.VFIO_PCI_CONFIG_REGION_INDEX), bar0: get(uapi.VFIO_PCI_BAR0_REGION_INDEX) };
}

/** The auto HWPT of an IOAS in a context, if one exists (the kernel reuses it). */
function autoHwptOf(c: MCtx, ioas: number): number | undefined {
  for (const [id, o] of c.objs) if (o.kind === "HWPT" && o.auto && o.ioas === ioas) return id;
  return undefined;
}

/**
 * Attach a device to an IOAS (auto domain: reuse or allocate) or to an
 * HWPT, as the model sees it: the errno, or the HWPT id it ends on.
 */
function predictAttach(
  m: Readonly<Model>,
  c: MCtx,
  current: number | undefined,
  pt: number,
): { errno: number } | { hwpt: number; fresh: boolean } {
  const o = c.objs.get(pt);
  if (o === undefined) return { errno: ENOENT };
  if (o.kind === "HWPT") return { hwpt: pt, fresh: false };
  if (o.kind !== "IOAS") return { errno: EINVAL };
  if (current !== undefined) {
    const cur = c.objs.get(current);
    if (cur?.kind === "HWPT" && cur.auto && cur.ioas === pt) return { hwpt: current, fresh: false };
  }
  const shared = autoHwptOf(c, pt);
  if (shared !== undefined) return { hwpt: shared, fresh: false };
  const e = newDomainErrno(m, c, pt);
  if (e !== 0) return { errno: e };
  return { hwpt: lowestFreeId(c), fresh: true };
}

export class Attach extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly target: number,
    readonly kind: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    const c = cdevFd(m, this.P, this.i);
    return c !== undefined && m.devs[c.d].bound?.file === c.key;
  }
  act(m: Model, r: Real) {
    const { fd, d } = cdevFd(m, this.P, this.i)!;
    const dev = m.devs[d];
    const ctx = m.ctxs.get(dev.bound!.ctx)!;
    // kind 0: an IOAS, 1: an HWPT (auto or allocated), 2: an id that does not exist.
    const byKind = (k: string) => [...ctx.objs].filter(([, o]) => o.kind === k).map(([id]) => id);
    let pt = 0x7ffffff0;
    if (this.kind === 0) pt = pick(byKind("IOAS"), this.target) ?? pt;
    if (this.kind === 1) {
      // Allocated HWPTs first: attaching to one is the interesting replace.
      const user = [...ctx.objs].filter(([, o]) => o.kind === "HWPT" && !o.auto).map(([id]) => id);
      pt =
        pick(user.length > 0 && this.target % 4 !== 3 ? user : byKind("HWPT"), this.target) ??
        pick(byKind("IOAS"), this.target) ??
        pt;
    }
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      uapi.vfio_device_attach_iommufd_pt,
      { pt_id: pt },
      "argsz",
      12,
    );
    const what = `VFIO_DEVICE_ATTACH_IOMMUFD_PT(vfio${d}, pt ${pt})`;
    const want = predictAttach(m, ctx, dev.attached, pt);
    if ("errno" in want) {
      if (want.errno === EFAULT) note(m, "attach refused: unpinnable area");
      return expectRc(r, what, res.rc, -want.errno);
    }
    expectRc(r, what, res.rc, 0);
    const hwpt = Number(res.out.pt_id);
    if (hwpt !== want.hwpt)
      throw new Violation(`${what}: attached to HWPT ${hwpt}, model expects ${want.hwpt}`);
    if (want.fresh) ctx.objs.set(hwpt, newHwptObj(pt, true, false));
    const old = dev.attached;
    dev.attached = hwpt;
    note(m, old === undefined ? "attach" : old === hwpt ? "attach same" : "replace");
    if (old !== undefined && old !== hwpt) leaveHwpt(m, ctx, old);
  }
  toString() {
    return `ATTACH(p${this.P}, dev #${this.i}, ${["ioas", "hwpt", "bad"][this.kind]} #${this.target})`;
  }
}

export class Detach extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    const c = cdevFd(m, this.P, this.i);
    return c !== undefined && m.devs[c.d].bound?.file === c.key;
  }
  act(m: Model, r: Real) {
    const { fd, d } = cdevFd(m, this.P, this.i)!;
    const dev = m.devs[d];
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT,
      uapi.vfio_device_detach_iommufd_pt,
      {},
      "argsz",
    );
    expectRc(r, "VFIO_DEVICE_DETACH_IOMMUFD_PT", res.rc, 0);
    const h = dev.attached;
    dev.attached = undefined;
    if (h !== undefined) leaveHwpt(m, m.ctxs.get(dev.bound!.ctx)!, h);
  }
  toString() {
    return `DETACH(p${this.P}, dev #${this.i})`;
  }
}

// --- DMA, BAR mmap, MSI -------------------------------------------------------------

/** mmap of BAR0 through a device fd: the mapping holds the device file until munmap or exit. */
export class MmapBar extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return openDevFd(m, this.P, this.i) !== undefined && m.procs[this.P].bars.length < 4;
  }
  act(m: Model, r: Real) {
    const { fd, key } = openDevFd(m, this.P, this.i)!;
    const rg = r.regions.get(String(key))!;
    const va = r.procs[this.P].mmap(0n, 4096n, 3, 0x01, fd, rg.bar0);
    if (va < 0n) throw new Violation(`mmap of BAR0 failed: ${va}`);
    m.procs[this.P].bars.push({ va, file: key });
    fileRef(m, key);
    note(m, "mmap BAR");
  }
  toString() {
    return `MMAP_BAR(p${this.P}, dev #${this.i})`;
  }
}

/**
 * What the device sees: the memcpy engine copies 8 bytes from an address
 * onto itself (a read and a write of the same bytes), programmed through
 * BAR0 by pwrite or through an mmap of BAR0. The model says whether the
 * IOVA is mapped readable and writable for that device (noiommu: the
 * address is a PA from GET_PA and is always reached). Completion raises
 * MSI vector 0 when an eventfd is set.
 */
export class Dma extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly slot: number,
    readonly off: number,
    readonly fromMaps: boolean,
    readonly viaBar: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return openDevFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, d, key } = openDevFd(m, this.P, this.i)!;
    const rg = r.regions.get(String(key))!;
    const p = r.procs[this.P];
    const bar = this.viaBar ? m.procs[this.P].bars.find((b) => b.file === key) : undefined;
    const cmd = p.pread(fd, 2, rg.cfg + 4n);
    if (typeof cmd === "number") throw new Violation(`config read failed ${cmd}`);
    const cfgw = p.pwrite(fd, le(cmd[0] | (cmd[1] << 8) | 4, 2), rg.cfg + 4n);
    if (cfgw !== 2) throw new Violation(`config write returned ${cfgw}`);
    const w = (off: bigint, v: bigint | number, n: number) => {
      const rc =
        bar !== undefined ? p.writeMemory(bar.va + off, le(v, n)) : p.pwrite(fd, le(v, n), rg.bar0 + off) - n;
      if (rc !== 0) throw new Violation(`BAR0 write at ${hex(off)} failed: ${rc}`);
    };
    const view = devView(m, d);
    let addr = slotIova(this.slot) + BigInt(this.off) * 8n;
    if (m.spec.noiommu) {
      addr = pick(m.pas, this.slot) ?? 0x1000n;
    } else {
      const target = this.fromMaps && view !== null ? pick(view.ranges, this.slot) : undefined;
      // Mostly aim inside a mapped range (maybe at its last bytes), else anywhere on the grid.
      if (target !== undefined) addr = target.iova + ((BigInt(this.off) * 0x7f8n) % target.len);
    }
    const logBefore = r.m.ctx.dmaLog.events.length;
    w(0x08n, addr, 8);
    w(0x10n, addr, 8);
    w(0x18n, 8, 8);
    w(0x20n, 1, 4);
    const st = bar !== undefined ? p.readMemory(bar.va + 0x24n, 4) : p.pread(fd, 4, rg.bar0 + 0x24n);
    if (typeof st === "number") throw new Violation(`STATUS read failed ${st}`);
    const want = m.spec.noiommu ? 2 : viewAllowsRw(view, addr, 8n) ? 2 : 3;
    note(
      m,
      `dma ${want === 2 ? "ok" : "fault"}${bar !== undefined ? " via BAR mmap" : ""}${view?.what.startsWith("container") ? " container" : view?.what.startsWith("compat") ? " compat" : ""}`,
    );
    if (st[0] !== want) {
      throw new Violation(
        `DMA on vfio${d} at ${hex(addr)} (${view?.what ?? "no domain"}): STATUS ${st[0]}, model expects ${want}`,
      );
    }
    checkDmaLog(m, r, d, logBefore, view);
    if (want === 2 && view?.hwpt !== undefined && m.spec.hwDirty) {
      const h = view.hwpt.ctx.objs.get(view.hwpt.id);
      if (h?.kind === "HWPT" && h.tracking) h.dirty.add(Number(addr / PAGE));
    }
    const msi = m.devs[d].msi;
    if (msi !== undefined) {
      const f = m.files.get(msi)!.f;
      if (f.kind === "eventfd") f.count++;
    }
  }
  toString() {
    return `DMA(p${this.P}, dev #${this.i}, slot ${this.slot}+${this.off * 8}${this.viaBar ? ", via BAR mmap" : ""})`;
  }
}

/**
 * The DMA log of the probe: each "ok" DMA touched only IOVAs the device's
 * domain maps with the needed permission, and (with an IOMMU) only pinned
 * frames: the sanitizer has nothing to say.
 */
function checkDmaLog(m: Model, r: Real, d: number, from: number, view: ReturnType<typeof devView>): void {
  const ev = r.m.ctx.dmaLog.events.slice(from);
  if (ev.length === 0) throw new Violation(`DMA on vfio${d}: nothing in the DMA log`);
  for (const e of ev) {
    if (e.device !== m.devs[d].bdf) throw new Violation(`DMA log: ${e.device} in a probe of vfio${d}`);
    if (e.result !== "ok" || m.spec.noiommu) continue;
    const need = e.op === "write" ? PROT_W : PROT_R;
    const ok = view?.ranges.some(
      (x) => e.addr >= x.iova && e.addr + BigInt(e.len) <= x.iova + x.len && (x.prot & need) !== 0,
    );
    if (!ok)
      throw new Violation(
        `DMA log: ${e.op} at ${hex(e.addr)} succeeded but ${view?.what ?? "no domain"} does not map it`,
      );
    if (e.finding !== undefined)
      throw new Violation(`DMA log: the sanitizer flagged a translated DMA: ${e.finding}`);
  }
}

/** VFIO_DEVICE_SET_IRQS on MSI: an eventfd trigger for vector 0, or none. */
export class SetMsi extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly e: number,
    readonly disable: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return (
      openDevFd(m, this.P, this.i) !== undefined && (this.disable || fdsOf(m, this.P, "eventfd").length > 0)
    );
  }
  act(m: Model, r: Real) {
    const { fd, d } = openDevFd(m, this.P, this.i)!;
    const efd = this.disable ? -1 : pick(fdsOf(m, this.P, "eventfd"), this.e)!;
    const b = new Uint8Array(24);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, this.disable ? 20 : 24, true);
    dv.setUint32(
      4,
      uapi.VFIO_IRQ_SET_ACTION_TRIGGER |
        (this.disable ? uapi.VFIO_IRQ_SET_DATA_NONE : uapi.VFIO_IRQ_SET_DATA_EVENTFD),
      true,
    );
    dv.setUint32(8, uapi.VFIO_PCI_MSI_IRQ_INDEX, true);
    dv.setUint32(12, 0, true);
    dv.setUint32(16, this.disable ? 0 : 1, true);
    dv.setInt32(20, efd, true);
    if (r.procs[this.P].writeMemory(r.argVa[this.P], b) !== 0)
      throw new Violation("argument page write failed");
    const rc = r.procs[this.P].ioctl(fd, uapi.VFIO_DEVICE_SET_IRQS, r.argVa[this.P]);
    const what = `VFIO_DEVICE_SET_IRQS(MSI, ${this.disable ? "none" : `eventfd ${efd}`})`;
    const dev = m.devs[d];
    // DATA_NONE with count 0 disables MSI; with MSI off it is a loopback trigger of nothing (EINVAL).
    if (this.disable && dev.msi === undefined) return expectRc(r, `${what} MSI off`, rc, -EINVAL);
    expectRc(r, what, rc, 0);
    if (dev.msi !== undefined) filePut(m, dev.msi);
    dev.msi = undefined;
    if (!this.disable) {
      const key = m.procs[this.P].fds.get(efd)!;
      fileRef(m, key);
      dev.msi = key;
      note(m, "msi eventfd");
    }
  }
  toString() {
    return `SET_MSI(p${this.P}, dev #${this.i}, ${this.disable ? "off" : `eventfd #${this.e}`})`;
  }
}

// --- groups and containers ------------------------------------------------------------

export class OpenGroup extends Base {
  constructor(
    override readonly p: number,
    readonly g: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return m.spec.groupDevs.length > 0 && roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const d = pick(m.spec.groupDevs, this.g)!;
    const g = m.groups.get(d)!;
    const mp = m.procs[this.P];
    const fd = r.procs[this.P].open(`/dev/vfio/${d}`);
    if (g.file !== undefined) return expectRc(r, `open(/dev/vfio/${d}) while open`, fd, -EBUSY);
    expectRc(r, `open(/dev/vfio/${d})`, fd, lowestFreeFd(mp));
    const key = newFile(m, { kind: "group", group: d });
    g.file = key;
    mp.fds.set(fd, key);
  }
  toString() {
    return `open(p${this.P}, group #${this.g})`;
  }
}

/** /dev/vfio/vfio: a legacy container, or (IOMMUFD_VFIO_CONTAINER) an iommufd context. */
export class OpenContainer extends Base {
  constructor(override readonly p: number) {
    super();
  }
  ok(m: Readonly<Model>) {
    return m.spec.container !== "none" && roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const fd = r.procs[this.P].open("/dev/vfio/vfio");
    expectRc(r, "open(/dev/vfio/vfio)", fd, lowestFreeFd(mp));
    const key = m.nextKey++;
    if (m.spec.container === "compat") {
      // Opened as /dev/vfio/vfio, the context accounts per mm as VFIO does (iommufd_fops_open).
      m.ctxs.set(key, { key, proc: this.P, objs: new Map(), mmMode: true, compatType: 0, fileOpen: true });
      mp.fds.set(fd, newFile(m, { kind: "iommufd", ctx: key }));
      return;
    }
    m.containers.set(key, {
      key,
      proc: this.P,
      groups: [],
      type: 0,
      dmas: [],
      prereg: [],
      windows: [],
      fileOpen: true,
    });
    mp.fds.set(fd, newFile(m, { kind: "container", c: key }));
  }
  toString() {
    return `open(p${this.P}, /dev/vfio/vfio)`;
  }
}

function groupFd(m: Readonly<Model>, p: number, i: number) {
  const fd = pick(fdsOf(m, p, "group"), i);
  if (fd === undefined) return undefined;
  const d = fileOf(m, p, fd, "group").group;
  return { fd, d, g: m.groups.get(d)! };
}

/** A legacy container fd or an iommufd fd (the type1 ioctls work on both), by pick. */
function containerish(m: Readonly<Model>, p: number, i: number) {
  const fds = [...fdsOf(m, p, "container"), ...fdsOf(m, p, "iommufd")].sort((a, b) => a - b);
  const fd = pick(fds, i);
  if (fd === undefined) return undefined;
  const f = getFile(m, p, fd)!;
  return f.kind === "container"
    ? { fd, c: m.containers.get(f.c)!, ctx: undefined }
    : { fd, c: undefined, ctx: m.ctxs.get((f as { ctx: number }).ctx)! };
}

export class SetContainer extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly j: number,
    readonly badFd: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return (
      groupFd(m, this.P, this.i) !== undefined &&
      (this.badFd || containerish(m, this.P, this.j) !== undefined)
    );
  }
  act(m: Model, r: Real) {
    const { fd, d, g } = groupFd(m, this.P, this.i)!;
    const t = this.badFd ? undefined : containerish(m, this.P, this.j)!;
    const cfd = t?.fd ?? strayFd(m, this.P, this.j);
    const b = le(cfd, 4);
    if (r.procs[this.P].writeMemory(r.argVa[this.P], b) !== 0)
      throw new Violation("argument page write failed");
    const rc = r.procs[this.P].ioctl(fd, uapi.VFIO_GROUP_SET_CONTAINER, r.argVa[this.P]);
    const what = `VFIO_GROUP_SET_CONTAINER(group ${d}, fd ${cfd})`;
    if (t === undefined) return expectRc(r, `${what} bad fd`, rc, -EBADF);
    if (g.container !== undefined) return expectRc(r, `${what} already set`, rc, -EINVAL);
    // A device still bound through iommufd keeps the group's DMA ownership (iommu_group_claim_dma_owner).
    if (t.c !== undefined && m.devs[d].compatBound !== undefined)
      return expectRc(r, `${what} DMA owner claimed by iommufd`, rc, -EPERM);
    if (t.c !== undefined && m.spec.container === "spapr" && t.c.type !== 0) {
      // tce_iommu_attach_group: a v1 container takes one group; v2 needs a compatible PE.
      expectRc(r, `${what} sPAPR container in use`, rc, t.c.type === 2 ? -EBUSY : [0, -EBUSY, -EINVAL]);
      if (rc !== 0) return;
    } else expectRc(r, what, rc, 0);
    if (t.c !== undefined) {
      g.container = { kind: "legacy", c: t.c.key };
      t.c.groups.push(d);
      note(m, t.c.type !== 0 ? "group joins a set container" : "set container");
      return;
    }
    const ctx = t.ctx!;
    g.container = { kind: "iommufd", ctx: ctx.key };
    if (ctx.compatIoas === undefined) {
      const id = lowestFreeId(ctx);
      ctx.objs.set(id, { kind: "IOAS", ioas: { areas: [], allowed: [], hugeOff: false } });
      ctx.compatIoas = id;
    }
    note(m, "set container iommufd");
  }
  toString() {
    return `SET_CONTAINER(p${this.P}, group #${this.i}, #${this.j}${this.badFd ? ", bad fd" : ""})`;
  }
}

export class UnsetContainer extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return groupFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, d, g } = groupFd(m, this.P, this.i)!;
    const rc = r.procs[this.P].ioctl(fd, uapi.VFIO_GROUP_UNSET_CONTAINER);
    const what = `VFIO_GROUP_UNSET_CONTAINER(group ${d})`;
    if (g.container === undefined) return expectRc(r, `${what} none`, rc, -EINVAL);
    if (g.container.kind === "legacy" && m.devs[d].groupFiles.length > 0)
      return expectRc(r, `${what} devices open`, rc, -EBUSY);
    expectRc(r, what, rc, 0);
    unsetContainer(m, g);
    note(m, "unset container");
  }
  toString() {
    return `UNSET_CONTAINER(p${this.P}, group #${this.i})`;
  }
}

export class SetIommu extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly type: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return containerish(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const t = containerish(m, this.P, this.i)!;
    const rc = r.procs[this.P].ioctl(t.fd, uapi.VFIO_SET_IOMMU, BigInt(this.type));
    const what = `VFIO_SET_IOMMU(${this.type})`;
    if (t.c !== undefined) {
      const c = t.c;
      if (c.groups.length === 0) return expectRc(r, `${what} no group`, rc, -EINVAL);
      if (c.type !== 0) return expectRc(r, `${what} already set`, rc, -EINVAL);
      const ok = m.spec.container === "spapr" ? [2, 7] : [1, 3];
      if (!ok.includes(this.type)) return expectRc(r, `${what} no driver`, rc, [-ENODEV, -EINVAL, -EBUSY]);
      if (m.spec.container === "spapr") {
        // v1 takes one group; v2 needs DDW (present): the model accepts what the PE says.
        expectRc(r, what, rc, [0, -EBUSY, -EINVAL]);
        if (rc !== 0) return;
      } else expectRc(r, what, rc, 0);
      c.type = this.type;
      note(m, `set iommu ${this.type}`);
      return;
    }
    const ctx = t.ctx!;
    if (this.type !== 1 && this.type !== 3) return expectRc(r, `${what} compat`, rc, -EINVAL);
    const id = ctx.compatIoas;
    if (id === undefined) return expectRc(r, `${what} compat without IOAS`, rc, -ENODEV);
    const ioas = ioasOf(ctx, id)!;
    if (this.type === 1 && !ioas.hugeOff && ioasHasDomain(ctx, id) && ioas.areas.length > 0)
      return expectRc(r, `${what} compat v1 with mapped domain`, rc, -EINVAL);
    if (this.type === 1 && !ioas.hugeOff && hasUnalignedArea(ctx, id))
      return expectRc(r, `${what} compat v1 with an unaligned area`, rc, -EADDRINUSE);
    expectRc(r, what, rc, 0);
    if (this.type === 1) ioas.hugeOff = true;
    ctx.compatType = this.type;
    note(m, `set iommu compat ${this.type}`);
  }
  toString() {
    return `SET_IOMMU(p${this.P}, #${this.i}, type ${this.type})`;
  }
}

/** Drop [iova, iova+size) from legacy DMA mappings, splitting (type1 v1 semantics are applied by the caller). */
function removeDmaRange(c: MContainer, iova: bigint, size: bigint): void {
  const out: MDma[] = [];
  for (const x of c.dmas) {
    if (!overlaps(x.iova, x.len, iova, size)) {
      out.push(x);
      continue;
    }
    if (x.iova < iova) out.push({ ...x, len: iova - x.iova });
    if (x.iova + x.len > iova + size) {
      const cut = iova + size - x.iova;
      out.push({ iova: iova + size, len: x.len - cut, prot: x.prot, va: x.va + cut });
    }
  }
  c.dmas = out;
}

export class MapDma extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly buf: number,
    readonly pages: number,
    readonly slot: number,
    readonly readOnly: boolean,
    readonly defect: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return containerish(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const t = containerish(m, this.P, this.i)!;
    const mp = m.procs[this.P];
    const b = pick(mp.bufs, this.buf);
    const stray = this.defect === 3 || b === undefined;
    const va = stray ? 0x7e0000000000n + BigInt(this.slot) * PAGE : b.va;
    const len = BigInt(Math.min(this.pages, stray ? this.pages : Number(b.len / PAGE))) * PAGE;
    const iova = slotIova(this.slot);
    let flags = uapi.VFIO_DMA_MAP_FLAG_READ | (this.readOnly ? 0 : uapi.VFIO_DMA_MAP_FLAG_WRITE);
    if (this.defect === 1) flags = 0;
    const size = this.defect === 2 ? len + 0x10n : len;
    const res = sioctl(
      r,
      this.P,
      t.fd,
      uapi.VFIO_IOMMU_MAP_DMA,
      uapi.vfio_iommu_type1_dma_map,
      { flags, vaddr: va, iova, size },
      "argsz",
    );
    const what = `VFIO_IOMMU_MAP_DMA(${t.c !== undefined ? "container" : "iommufd"}, va ${hex(va)}, iova ${hex(iova)}, size ${hex(size)}, flags ${flags})`;
    const prot = this.readOnly ? PROT_R : PROT_R | PROT_W;
    if (t.c !== undefined) {
      const c = t.c;
      if (c.type === 0) return expectRc(r, `${what} before SET_IOMMU`, res.rc, -EINVAL);
      if (m.spec.container === "spapr") {
        // sPAPR: registration, windows and TCE sizes decide; the model takes the kernel's word but checks what DMA sees.
        expectRc(r, what, res.rc, SPAPR_ANSWERS);
        if (res.rc === 0) {
          removeDmaRange(c, iova, size);
          c.dmas.push({ iova, len: size, prot: flags === 1 ? PROT_R : prot, va });
          note(m, "spapr map");
        }
        return;
      }
      if (flags === 0 || this.defect === 2) return expectRc(r, what, res.rc, -EINVAL);
      if (c.dmas.some((x) => overlaps(x.iova, x.len, iova, size))) return expectRc(r, what, res.rc, -EEXIST);
      if (!backed(mp, va, len)) return expectRc(r, `${what} unbacked`, res.rc, -EFAULT);
      expectRc(r, what, res.rc, 0);
      c.dmas.push({ iova, len: size, prot, va });
      note(m, "type1 map");
      return;
    }
    // iommufd's compat: an IOAS_MAP (FIXED) on the compat IOAS.
    // Flags 0 is accepted there: the mapping has neither READ nor WRITE (iommufd_vfio_map_dma).
    const ctx = t.ctx!;
    const id = ctx.compatIoas;
    if (id === undefined) return expectRc(r, `${what} no compat IOAS`, res.rc, -ENODEV);
    const ioas = ioasOf(ctx, id)!;
    // Without a domain the IOAS alignment is a byte: an odd size is fine until a domain comes.
    if (this.defect === 2 && ioasAligned(ctx, id)) return expectRc(r, what, res.rc, -EINVAL);
    if (ioas.areas.some((x) => overlaps(x.iova, x.len, iova, size)))
      return expectRc(r, what, res.rc, -EEXIST);
    const area: MArea = {
      iova,
      len: size,
      prot: flags === 0 ? 0 : prot,
      pages: {
        id: m.nextKey++,
        va,
        proc: this.P,
        start: 0n,
        len: size,
        writable: flags === 0 ? false : !this.readOnly,
      },
      off: 0n,
    };
    if (ioasHasDomain(ctx, id)) {
      const e = fillErrno(m, ctx, [area]);
      if (e !== 0) return expectRc(r, `${what} refused by the domain`, res.rc, -e);
    }
    expectRc(r, what, res.rc, 0);
    ioas.areas.push(area);
    note(m, "compat map");
  }
  toString() {
    return `MAP_DMA(p${this.P}, #${this.i}, buf ${this.buf}, ${this.pages}p, slot ${this.slot}${this.readOnly ? ", ro" : ""}, defect ${this.defect})`;
  }
}

export class UnmapDma extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly mode: number,
    readonly a: number,
    readonly b: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return containerish(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const t = containerish(m, this.P, this.i)!;
    // mode 0: one mapping exactly; 1: UNMAP_ALL; 2: a slot range (may bisect); 3: unaligned size.
    let iova = 0n;
    let size = 0n;
    let flags = 0;
    const ranges: { iova: bigint; len: bigint }[] =
      t.c !== undefined
        ? t.c.dmas
        : t.ctx!.compatIoas !== undefined
          ? (ioasOf(t.ctx!, t.ctx!.compatIoas)?.areas ?? [])
          : [];
    const ex = pick(ranges, this.a);
    if (this.mode === 0 && ex !== undefined) {
      iova = ex.iova;
      size = ex.len;
    } else if (this.mode === 1) flags = uapi.VFIO_DMA_UNMAP_FLAG_ALL;
    else {
      const s = Math.min(this.a % IOVA_SLOTS, this.b % IOVA_SLOTS);
      const e = Math.max(this.a % IOVA_SLOTS, this.b % IOVA_SLOTS);
      iova = slotIova(s) + BigInt(this.a % 3) * PAGE;
      size = BigInt(e - s + 1) * IOVA_SLOT - BigInt(this.b % 2) * PAGE + (this.mode === 3 ? 0x10n : 0n);
    }
    const res = sioctl(
      r,
      this.P,
      t.fd,
      uapi.VFIO_IOMMU_UNMAP_DMA,
      uapi.vfio_iommu_type1_dma_unmap,
      { flags, iova, size },
      "argsz",
    );
    const what = `VFIO_IOMMU_UNMAP_DMA(${t.c !== undefined ? "container" : "iommufd"}, ${hex(iova)}, ${hex(size)}, flags ${flags})`;
    const check = (want: bigint) => {
      if (res.out.size !== want)
        throw new Violation(`${what}: unmapped ${hex(res.out.size as bigint)}, model ${hex(want)}`);
    };
    if (t.c !== undefined) {
      const c = t.c;
      if (c.type === 0) return expectRc(r, `${what} before SET_IOMMU`, res.rc, -EINVAL);
      if (m.spec.container === "spapr") {
        expectRc(r, what, res.rc, SPAPR_ANSWERS);
        if (res.rc === 0) {
          removeDmaRange(c, iova, size);
          note(m, "spapr unmap");
        }
        return;
      }
      if (this.mode === 1) {
        expectRc(r, what, res.rc, 0);
        check(c.dmas.reduce((n, x) => n + x.len, 0n));
        c.dmas = [];
        return;
      }
      if (this.mode === 3) return expectRc(r, `${what} unaligned`, res.rc, -EINVAL);
      const end = iova + size;
      const v2 = c.type === 3;
      if (v2) {
        const first = c.dmas.find((x) => overlaps(x.iova, x.len, iova, 1n));
        const last = c.dmas.find((x) => overlaps(x.iova, x.len, end - 1n, 1n));
        if (
          (first !== undefined && first.iova !== iova) ||
          (last !== undefined && last.iova + last.len !== end)
        )
          return expectRc(r, `${what} bisects (v2)`, res.rc, -EINVAL);
      }
      let done = 0n;
      const sorted = c.dmas
        .filter((x) => overlaps(x.iova, x.len, iova, size))
        .sort((x, y) => (x.iova < y.iova ? -1 : 1));
      for (const x of sorted) {
        if (!v2 && iova > x.iova) break;
        done += x.len;
        c.dmas.splice(c.dmas.indexOf(x), 1);
      }
      expectRc(r, what, res.rc, 0);
      check(done);
      note(m, done > 0n ? `type1 v${v2 ? 2 : 1} unmap` : "type1 unmap nothing");
      return;
    }
    const ctx = t.ctx!;
    const id = ctx.compatIoas;
    if (id === undefined) return expectRc(r, `${what} no compat IOAS`, res.rc, -ENODEV);
    const ioas = ioasOf(ctx, id)!;
    if (this.mode === 1) {
      expectRc(r, what, res.rc, 0);
      check(unmapAllAreas(m, ctx, ioas));
      return;
    }
    if (ioas.hugeOff) {
      // iopt_cut_iova: a cut inside an area must leave both halves page aligned.
      const cuts = [iova + size - 1n, ...(iova !== 0n ? [iova - 1n] : [])];
      for (const x of cuts) {
        const a = ioas.areas.find((y) => x >= y.iova && x < y.iova + y.len - 1n);
        if (a !== undefined && (x + 1n) % PAGE !== 0n)
          return expectRc(r, `${what} unaligned cut`, res.rc, -EINVAL);
      }
    }
    const last = iova + size - 1n;
    if (ioas.hugeOff) {
      // TYPE1 compat: cut at the range's edges, then everything inside goes.
      const next: MArea[] = [];
      const gone: MArea[] = [];
      let done = 0n;
      for (const x of ioas.areas) {
        if (!overlaps(x.iova, x.len, iova, size)) {
          next.push(x);
          continue;
        }
        const s = maxB(x.iova, iova);
        const e = minB(x.iova + x.len, iova + size);
        done += e - s;
        gone.push(x);
        if (x.iova < s) next.push({ ...x, len: s - x.iova });
        if (e < x.iova + x.len)
          next.push({ ...x, iova: e, len: x.iova + x.len - e, off: x.off + (e - x.iova) });
      }
      ioas.areas = next;
      dropAreas(m, ctx, gone);
      expectRc(r, what, res.rc, 0);
      check(done);
      note(m, done > 0n ? "compat v1 unmap" : "compat unmap nothing");
      return;
    }
    const { done, partial } = unmapWholeAreas(m, ctx, ioas, iova, last);
    if (partial) return expectRc(r, `${what} bisects an area`, res.rc, -ENOENT);
    expectRc(r, what, res.rc, 0);
    check(done);
    note(m, done > 0n ? "compat unmap" : "compat unmap nothing");
  }
  toString() {
    return `UNMAP_DMA(p${this.P}, #${this.i}, mode ${this.mode}, ${this.a}, ${this.b})`;
  }
}

/** GET_DEVICE_FD by name: needs a container with an IOMMU driver (legacy) or an iommufd (compat: bind + attach). */
export class GetDeviceFd extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly badName: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return groupFd(m, this.P, this.i) !== undefined && roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const { fd, d, g } = groupFd(m, this.P, this.i)!;
    const name = this.badName ? "0000:00:1f.7" : bdfOf(d);
    const b = new TextEncoder().encode(`${name}\0`);
    if (r.procs[this.P].writeMemory(r.argVa[this.P], b) !== 0)
      throw new Violation("argument page write failed");
    const rc = r.procs[this.P].ioctl(fd, uapi.VFIO_GROUP_GET_DEVICE_FD, r.argVa[this.P]);
    const what = `VFIO_GROUP_GET_DEVICE_FD(group ${d}, ${name})`;
    if (this.badName) return expectRc(r, `${what} no such device`, rc, -ENODEV);
    if (g.container === undefined) return expectRc(r, `${what} no container`, rc, -EINVAL);
    const dev = m.devs[d];
    let bind: { ctx: number; devid: number; hwpt: number; fresh: boolean } | undefined;
    if (g.container.kind === "legacy") {
      if (m.containers.get(g.container.c)!.type === 0)
        return expectRc(r, `${what} no IOMMU driver`, rc, -EINVAL);
    } else if (dev.groupFiles.length === 0) {
      const ctx = m.ctxs.get(g.container.ctx)!;
      if (ctx.compatIoas === undefined) return expectRc(r, `${what} compat IOAS destroyed`, rc, -ENODEV);
      const devid = lowestFreeId(ctx);
      ctx.objs.set(devid, { kind: "DEVICE", dev: d });
      const want = predictAttach(m, ctx, undefined, ctx.compatIoas);
      ctx.objs.delete(devid);
      if ("errno" in want) return expectRc(r, `${what} compat attach`, rc, -want.errno);
      bind = { ctx: ctx.key, devid, hwpt: want.hwpt, fresh: want.fresh };
    }
    expectRc(r, what, rc, lowestFreeFd(m.procs[this.P]));
    const key = newFile(m, { kind: "gdev", dev: d });
    fileRef(m, g.file!);
    dev.groupFiles.push(key);
    m.procs[this.P].fds.set(rc, key);
    if (bind !== undefined) {
      const ctx = m.ctxs.get(bind.ctx)!;
      ctx.objs.set(bind.devid, { kind: "DEVICE", dev: d });
      if (bind.fresh) ctx.objs.set(bind.hwpt, newHwptObj(ctx.compatIoas!, true, false));
      dev.compatBound = { ctx: bind.ctx, devid: bind.devid, hwpt: bind.hwpt };
      note(m, "group device via iommufd");
    } else note(m, "group device via container");
    r.regions.set(String(key), regions(r, this.P, rc));
  }
  toString() {
    return `GET_DEVICE_FD(p${this.P}, group #${this.i}${this.badName ? ", bad name" : ""})`;
  }
}

// --- sPAPR v2: pre-registered memory and windows ---------------------------------------

export class SpaprRegister extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly buf: number,
    readonly unregister: boolean,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return (
      m.spec.container === "spapr" &&
      fdsOf(m, this.P, "container").length > 0 &&
      m.procs[this.P].bufs.length > 0
    );
  }
  act(m: Model, r: Real) {
    const fd = pick(fdsOf(m, this.P, "container"), this.i)!;
    const b = pick(m.procs[this.P].bufs, this.buf)!;
    const req = this.unregister
      ? uapi.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY
      : uapi.VFIO_IOMMU_SPAPR_REGISTER_MEMORY;
    const res = sioctl(
      r,
      this.P,
      fd,
      req,
      uapi.vfio_iommu_spapr_register_memory,
      { flags: 0, vaddr: b.va, size: b.len },
      "argsz",
    );
    // Registration is per mm and refcounted; TCEs in use keep a region: the model checks only that nothing breaks.
    expectRc(
      r,
      `SPAPR_${this.unregister ? "UN" : ""}REGISTER_MEMORY(${hex(b.va)}, ${hex(b.len)})`,
      res.rc,
      SPAPR_ANSWERS,
    );
    if (res.rc === 0) note(m, this.unregister ? "spapr unregister" : "spapr register");
  }
  toString() {
    return `SPAPR_${this.unregister ? "UN" : ""}REGISTER(p${this.P}, #${this.i}, buf ${this.buf})`;
  }
}

export class SpaprWindow extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly remove: boolean,
    readonly which: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return m.spec.container === "spapr" && fdsOf(m, this.P, "container").length > 0;
  }
  act(m: Model, r: Real) {
    const fd = pick(fdsOf(m, this.P, "container"), this.i)!;
    const c = m.containers.get(fileOf(m, this.P, fd, "container").c)!;
    if (this.remove) {
      const start = this.which === 0 ? 0n : 1n << 59n;
      const res = sioctl(
        r,
        this.P,
        fd,
        uapi.VFIO_IOMMU_SPAPR_TCE_REMOVE,
        uapi.vfio_iommu_spapr_tce_remove,
        { flags: 0, start_addr: start },
        "argsz",
      );
      expectRc(r, `SPAPR_TCE_REMOVE(${hex(start)})`, res.rc, SPAPR_ANSWERS);
      if (res.rc === 0) {
        // The window and every TCE in it go.
        if (start === 0n) removeDmaRange(c, 0n, 1n << 40n);
        note(m, "spapr window removed");
      }
      return;
    }
    const shift = this.which === 0 ? 12 : 16;
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.VFIO_IOMMU_SPAPR_TCE_CREATE,
      uapi.vfio_iommu_spapr_tce_create,
      {
        flags: 0,
        page_shift: shift,
        window_size: this.which === 0 ? 1n << 30n : 1n << 32n,
        levels: 1,
      },
      "argsz",
    );
    expectRc(r, `SPAPR_TCE_CREATE(shift ${shift})`, res.rc, SPAPR_ANSWERS);
    if (res.rc === 0) note(m, `spapr window created at ${hex(res.out.start_addr as bigint)}`);
  }
  toString() {
    return `SPAPR_TCE_${this.remove ? "REMOVE" : "CREATE"}(p${this.P}, #${this.i}, ${this.which})`;
  }
}

// --- selftest access objects (mock machine) --------------------------------------------

const TEST_OP_CREATE_ACCESS = 5;
const TEST_OP_DESTROY_ACCESS_PAGES = 6;
const TEST_OP_ACCESS_PAGES = 7;

function testCmd(
  r: Real,
  p: number,
  fd: number,
  words: [number, number, bigint][],
): { rc: number; out: DataView } {
  const b = new Uint8Array(72);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 72, true);
  for (const [off, n, v] of words) {
    if (n === 4) dv.setUint32(off, Number(v), true);
    else dv.setBigUint64(off, v, true);
  }
  const va = r.argVa[p];
  if (r.procs[p].writeMemory(va, b) !== 0) throw new Violation("argument page write failed");
  const rc = r.procs[p].ioctl(fd, uapi.IOMMU_TEST_CMD, va);
  const back = r.procs[p].readMemory(va, 72);
  if (typeof back === "number") throw new Violation("argument page read failed");
  return { rc, out: new DataView(back.buffer, back.byteOffset, 72) };
}

/** IOMMU_TEST_OP_CREATE_ACCESS on an IOAS: an ACCESS object and its fd (NEEDS_PIN_PAGES). */
export class CreateAccess extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return m.spec.selftest && ctxHas(m, this.P, this.i, "IOAS") && roomForFd(m, this.P);
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick(
      [...ctx.objs].filter(([, o]) => o.kind === "IOAS").map(([k]) => k),
      this.ioasPick,
    )!;
    const res = testCmd(r, this.P, fd, [
      [4, 4, BigInt(TEST_OP_CREATE_ACCESS)],
      [8, 4, BigInt(id)],
      [20, 4, 1n],
    ]);
    const what = `TEST_CMD(CREATE_ACCESS, ioas ${id})`;
    if (!ioasAligned(ctx, id) && hasUnalignedArea(ctx, id))
      return expectRc(r, `${what} unaligned area`, res.rc, -EADDRINUSE);
    expectRc(r, what, res.rc, 0);
    const afd = res.out.getUint32(16, true);
    if (afd !== lowestFreeFd(m.procs[this.P]))
      throw new Violation(`CREATE_ACCESS: fd ${afd}, model expects ${lowestFreeFd(m.procs[this.P])}`);
    const aid = lowestFreeId(ctx);
    const key = newFile(m, { kind: "access", ctx: ctx.key, id: aid });
    ctx.objs.set(aid, { kind: "ACCESS", ioas: id, file: key, items: new Map() });
    m.procs[this.P].fds.set(afd, key);
    note(m, "access create");
  }
  toString() {
    return `CREATE_ACCESS(p${this.P}, #${this.i}, ioas #${this.ioasPick})`;
  }
}

/** IOMMU_TEST_OP_ACCESS_PAGES: pin an IOVA range through the access (or drop a pinned item). */
export class AccessPages extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly slot: number,
    readonly pages: number,
    readonly write: boolean,
    readonly drop: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    return fdsOf(m, this.P, "access").length > 0 && ctxOfAccess(m, this.P) !== undefined;
  }
  act(m: Model, r: Real) {
    const afd = pick(fdsOf(m, this.P, "access"), this.i)!;
    const f = fileOf(m, this.P, afd, "access");
    const ctx = m.ctxs.get(f.ctx)!;
    const o = ctx.objs.get(f.id)!;
    if (o.kind !== "ACCESS") throw new Violation("model: not an access");
    const fd = ctxOfAccess(m, this.P)!;
    if (this.drop > 0 && o.items.size > 0) {
      const item = pick([...o.items.keys()], this.drop)!;
      const res = testCmd(r, this.P, fd, [
        [4, 4, BigInt(TEST_OP_DESTROY_ACCESS_PAGES)],
        [8, 4, BigInt(afd)],
        [16, 4, BigInt(item)],
      ]);
      expectRc(r, `TEST_CMD(DESTROY_ACCESS_PAGES ${item})`, res.rc, 0);
      o.items.delete(item);
      return;
    }
    const ioas = ioasOf(ctx, o.ioas)!;
    const target = pick(ioas.areas, this.slot);
    const iova = target !== undefined ? target.iova : slotIova(this.slot);
    const len = BigInt(this.pages) * PAGE;
    const res = testCmd(r, this.P, fd, [
      [4, 4, BigInt(TEST_OP_ACCESS_PAGES)],
      [8, 4, BigInt(afd)],
      [16, 4, this.write ? 1n : 0n],
      [24, 8, iova],
      [32, 8, len],
      [40, 8, r.argVa[this.P] + 4096n],
    ]);
    const what = `TEST_CMD(ACCESS_PAGES, ${hex(iova)}, ${hex(len)}${this.write ? ", write" : ""})`;
    // Contiguous areas must cover the range with the permission; then every page is pinned.
    let at = iova;
    const parts: MArea[] = [];
    while (at < iova + len) {
      const a = ioas.areas.find((x) => at >= x.iova && at < x.iova + x.len);
      if (a === undefined) return expectRc(r, `${what} hole`, res.rc, -ENOENT);
      if ((a.prot & (this.write ? PROT_W : PROT_R)) === 0) return expectRc(r, `${what} prot`, res.rc, -EPERM);
      const e = a.iova + a.len < iova + len ? a.iova + a.len : iova + len;
      parts.push({ ...a, iova: at, len: e - at, off: a.off + (at - a.iova) });
      at = e;
    }
    for (const part of parts) {
      const e = areaPinErrno(m, ctx, part);
      if (e !== 0) return expectRc(r, `${what} unpinnable`, res.rc, -e);
    }
    expectRc(r, what, res.rc, 0);
    const item = res.out.getUint32(20, true);
    if (o.items.has(item)) throw new Violation(`${what}: item ${item} reused`);
    o.items.set(item, { iova, len });
    note(m, "access pages");
  }
  toString() {
    return `ACCESS_PAGES(p${this.P}, #${this.i}, slot ${this.slot}, ${this.pages}p${this.write ? ", w" : ""}${this.drop ? `, drop #${this.drop}` : ""})`;
  }
}

/** An iommufd fd of the process the access's context belongs to (TEST_CMD goes through any iommufd of it). */
function ctxOfAccess(m: Readonly<Model>, p: number): number | undefined {
  return fdsOf(m, p, "iommufd")[0];
}

export { CDEV_DEVS, EOPNOTSUPP, U64_MAX };
