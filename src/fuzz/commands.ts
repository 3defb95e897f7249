// fast-check commands: each runs one system call (or a few, for DMA) on the
// real machine, predicts the outcome from the reference model, and updates
// the model. A mismatch throws a Violation; after every command the
// machine's invariants must hold and no syscall may have thrown.
import fc from "fast-check";
import { uapi } from "../index.js";
import {
  backed,
  IOVA_BASE,
  IOVA_SLOT,
  IOVA_SLOTS,
  ioasHasDomain,
  le,
  lowestFreeFd,
  MAX_PROCS,
  type MCtx,
  type MDev,
  type MMap,
  type Model,
  note,
  overlaps,
  PAGE,
  PROT_R,
  PROT_W,
  type Real,
  rawIoctl,
  sioctl,
} from "./world.js";

const { EBADF, EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOTTY, EOPNOTSUPP, EOVERFLOW, E2BIG, EIO, errnoName } =
  uapi;

const U64_MAX = (1n << 64n) - 1n;

export class Violation extends Error {}

function expectRc(what: string, rc: number, want: number | readonly number[]): void {
  const ok = typeof want === "number" ? rc === want : want.includes(rc);
  if (!ok) {
    const fmt = (x: number) => (x < 0 ? `-${errnoName(-x)}` : String(x));
    const w = typeof want === "number" ? fmt(want) : want.map(fmt).join("|");
    throw new Violation(`${what}: got ${fmt(rc)}, model expects ${w}`);
  }
}

/** After every command: invariants, no internal errors. */
export function checkMachine(real: Real, after: string): void {
  const v = real.m.debug.checkInvariants();
  if (v.length > 0) throw new Violation(`after ${after}: invariant violated: ${v.join("; ")}`);
}

type Cmd = fc.Command<Model, Real>;

abstract class Base implements Cmd {
  /** Which live process the command acts on: the p-th (modulo) of those alive, resolved by check(). */
  readonly p: number = 0;
  P = -1;
  abstract check(m: Readonly<Model>): boolean;
  abstract act(m: Model, r: Real): void;
  abstract toString(): string;
  run(m: Model, r: Real): void {
    m.steps++;
    this.act(m, r);
    checkMachine(r, this.toString());
  }
}

/** The index of the pick-th live process (modulo their number), or -1. */
function livePick(m: Readonly<Model>, pick: number): number {
  const live: number[] = [];
  m.procs.forEach((x, i) => {
    if (x.alive) live.push(i);
  });
  return live.length === 0 ? -1 : live[pick % live.length];
}

const alive = (m: Readonly<Model>, p: number) => m.procs[p]?.alive === true;
const fdsOf = (m: Readonly<Model>, p: number, kind: string) =>
  alive(m, p) ? [...m.procs[p].fds].filter(([, f]) => f.kind === kind).map(([fd]) => fd) : [];
const pick = <T>(xs: T[], i: number): T | undefined => (xs.length === 0 ? undefined : xs[i % xs.length]);

function reservedFds(r: Real, p: number): Set<number> {
  // Nothing but the model's fds is open in a process; kept as a hook.
  void r;
  void p;
  return new Set();
}

// --- processes and memory -----------------------------------------------------

export class Spawn extends Base {
  check(m: Readonly<Model>): boolean {
    return m.procs.filter((p) => p.alive).length < MAX_PROCS && m.procs.length < 12;
  }
  act(m: Model, r: Real) {
    const p = r.m.spawn({ rlimitMemlock: 64n << 20n });
    const va = p.mmap(0n, 8192n, 3, 0x22);
    if (va < 0n) throw new Violation(`mmap of the argument page failed: ${va}`);
    if (p.writeMemory(va, new Uint8Array(8192)) !== 0) throw new Violation("argument page not writable");
    r.procs.push(p);
    r.argVa.push(va);
    m.procs.push({ alive: true, fds: new Map(), bufs: [] });
  }
  toString() {
    return "spawn";
  }
}

class Exit extends Base {
  constructor(override readonly p: number) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    r.procs[this.P].exit();
    const mp = m.procs[this.P];
    if (m.devs.some((d) => d.bound?.proc === this.P)) note(m, "exit with a bound device");
    for (const fd of [...mp.fds.keys()]) closeInModel(m, this.P, fd);
    mp.alive = false;
    mp.bufs = [];
    // Everything of the process is gone: no context of it may remain.
    for (const c of m.ctxs.values()) if (c.proc === this.P) throw new Violation(`ctx ${c.key} outlived exit`);
  }
  toString() {
    return `exit(p${this.P})`;
  }
}

class Mmap extends Base {
  constructor(
    override readonly p: number,
    readonly pages: number,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P) && m.procs[this.P].bufs.length < 8;
  }
  act(m: Model, r: Real) {
    const len = BigInt(this.pages) * PAGE;
    const va = r.procs[this.P].mmap(0n, len, 3, 0x22);
    if (va < 0n) throw new Violation(`mmap(${len}) failed: ${va}`);
    m.procs[this.P].bufs.push({ va, len });
  }
  toString() {
    return `mmap(p${this.P}, ${this.pages} pages)`;
  }
}

class Munmap extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly bad: number,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const b = pick(mp.bufs, this.i);
    if (this.bad === 1 || b === undefined) {
      // Unaligned address: EINVAL and nothing changes.
      expectRc("munmap(unaligned)", r.procs[this.P].munmap(0x10001n, 4096n), -EINVAL);
      return;
    }
    if (this.bad === 2) {
      expectRc("munmap(len 0)", r.procs[this.P].munmap(b.va, 0n), -EINVAL);
      return;
    }
    expectRc("munmap", r.procs[this.P].munmap(b.va, b.len), 0);
    mp.bufs.splice(mp.bufs.indexOf(b), 1);
  }
  toString() {
    return `munmap(p${this.P}, buf ${this.i}${this.bad ? `, bad ${this.bad}` : ""})`;
  }
}

// --- files ----------------------------------------------------------------------

class OpenIommufd extends Base {
  constructor(
    override readonly p: number,
    readonly chaos: boolean,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P) && m.procs[this.P].fds.size < 10;
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const want = lowestFreeFd(mp, reservedFds(r, this.P));
    const fd = r.procs[this.P].open("/dev/iommu");
    expectRc("open(/dev/iommu) fd", fd, want);
    if (this.chaos) {
      mp.fds.set(fd, { kind: "chaos" });
      return;
    }
    const key = m.nextCtx++;
    m.ctxs.set(key, { key, proc: this.P, fdOpen: true, ioas: new Map(), objs: new Map() });
    mp.fds.set(fd, { kind: "iommufd", ctx: key });
  }
  toString() {
    return `open(p${this.P}, /dev/iommu${this.chaos ? ", chaos" : ""})`;
  }
}

class OpenDev extends Base {
  constructor(
    override readonly p: number,
    readonly d: number,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P) && m.procs[this.P].fds.size < 10;
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const want = lowestFreeFd(mp, reservedFds(r, this.P));
    const fd = r.procs[this.P].open(`/dev/vfio/devices/vfio${this.d}`);
    expectRc("open(vfio cdev) fd", fd, want);
    mp.fds.set(fd, { kind: "dev", dev: this.d });
  }
  toString() {
    return `open(p${this.P}, vfio${this.d})`;
  }
}

function closeInModel(m: Model, p: number, fd: number): void {
  const f = m.procs[p].fds.get(fd);
  m.procs[p].fds.delete(fd);
  if (f === undefined) return;
  if (f.kind === "dev") {
    const d = m.devs[f.dev];
    if (d.bound?.proc === p && d.bound.fd === fd) {
      const ctx = m.ctxs.get(d.bound.ctx)!;
      if (d.attached !== undefined) dropHwptIfUnused(m, ctx, d.attached.hwpt, d);
      ctx.objs.delete(d.bound.devid);
      d.bound = undefined;
      d.attached = undefined;
      maybeFreeCtx(m, ctx);
    }
  } else if (f.kind === "iommufd") {
    const ctx = m.ctxs.get(f.ctx)!;
    ctx.fdOpen = false;
    maybeFreeCtx(m, ctx);
  }
}

/** An auto HWPT is destroyed when the last device of its context leaves it. */
function dropHwptIfUnused(m: Model, ctx: MCtx, hwpt: number, leaving: MDev): void {
  const used = m.devs.some((o) => o !== leaving && o.bound?.ctx === ctx.key && o.attached?.hwpt === hwpt);
  if (!used) ctx.objs.delete(hwpt);
}

/** A context goes when its fd is closed and no bound device holds it. */
function maybeFreeCtx(m: Model, ctx: MCtx): void {
  if (ctx.fdOpen) return;
  if (m.devs.some((d) => d.bound?.ctx === ctx.key)) return;
  m.ctxs.delete(ctx.key);
}

class Close extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly stray: boolean,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const fds = [...mp.fds.keys()];
    const fd = pick(fds, this.i);
    if (this.stray || fd === undefined) {
      // An fd number open in no table of this process (maybe in another's): EBADF.
      let n = 3 + (this.i % 20);
      while (mp.fds.has(n)) n++;
      expectRc(`close(${n}) not open in p${this.P}`, r.procs[this.P].close(n), -EBADF);
      return;
    }
    expectRc(`close(${fd})`, r.procs[this.P].close(fd), 0);
    closeInModel(m, this.P, fd);
  }
  toString() {
    return `close(p${this.P}, #${this.i}${this.stray ? ", stray" : ""})`;
  }
}

// --- iommufd ----------------------------------------------------------------------

function ctxFd(m: Readonly<Model>, p: number, i: number): { fd: number; ctx: MCtx } | undefined {
  const fd = pick(fdsOf(m, p, "iommufd"), i);
  if (fd === undefined) return undefined;
  const f = m.procs[p].fds.get(fd) as { kind: "iommufd"; ctx: number };
  return { fd, ctx: m.ctxs.get(f.ctx)! };
}

class IoasAlloc extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly badFlags: boolean,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return ctxFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_ALLOC, uapi.iommu_ioas_alloc, {
      flags: this.badFlags ? 1 : 0,
    });
    if (this.badFlags) return expectRc("IOAS_ALLOC(flags 1)", res.rc, -EOPNOTSUPP);
    expectRc("IOAS_ALLOC", res.rc, 0);
    const id = Number(res.out.out_ioas_id);
    if (id <= 0 || ctx.objs.has(id))
      throw new Violation(`IOAS_ALLOC returned id ${id}, already in use or invalid`);
    ctx.objs.set(id, "IOAS");
    ctx.ioas.set(id, { maps: [] });
  }
  toString() {
    return `IOAS_ALLOC(p${this.P}, #${this.i}${this.badFlags ? ", bad flags" : ""})`;
  }
}

class Destroy extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly j: number,
    readonly randomId: number,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return ctxFd(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const ids = [...ctx.objs.keys()];
    const id = this.randomId > 0 ? this.randomId : (pick(ids, this.j) ?? 0);
    const res = sioctl(r, this.P, fd, uapi.IOMMU_DESTROY, uapi.iommu_destroy, { id });
    const kind = ctx.objs.get(id);
    if (kind === undefined) return expectRc(`DESTROY(${id}) unknown`, res.rc, -ENOENT);
    if (kind !== "IOAS" || ioasHasDomain(m, ctx.key, id)) {
      return expectRc(`DESTROY(${kind} ${id}) referenced`, res.rc, -EBUSY);
    }
    expectRc(`DESTROY(IOAS ${id})`, res.rc, 0);
    note(m, ioasMapsNote(ctx.ioas.get(id)!.maps.length));
    ctx.objs.delete(id);
    ctx.ioas.delete(id);
  }
  toString() {
    return `DESTROY(p${this.P}, #${this.i}, obj ${this.randomId > 0 ? this.randomId : `#${this.j}`})`;
  }
}

/** How a map request is spoiled (0: a valid request). */
const MAP_DEFECTS = ["valid", "badId", "zeroLen", "overflow", "badFlags", "noRw", "unaligned"] as const;

class Map_ extends Base {
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
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    const c = ctxFd(m, this.P, this.i);
    return c !== undefined && c.ctx.ioas.size > 0;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick([...ctx.ioas.keys()], this.ioasPick)!;
    const ioas = ctx.ioas.get(id)!;
    const mp = m.procs[this.P];
    const b = pick(mp.bufs, this.buf);
    // A stray VA: page-aligned, user range, but no mapping there (or only the process's scratch).
    const va = this.strayVa || b === undefined ? 0x7e0000000000n + BigInt(this.slot) * PAGE : b.va;
    const maxPages = b === undefined || this.strayVa ? this.pages : Number(b.len / PAGE);
    const len = BigInt(Math.min(this.pages, maxPages)) * PAGE;
    const iova = IOVA_BASE + BigInt(this.slot) * IOVA_SLOT;
    const prot = this.readOnly ? PROT_R : PROT_R | PROT_W;
    const flags =
      uapi.IOMMU_IOAS_MAP_FIXED_IOVA |
      uapi.IOMMU_IOAS_MAP_READABLE |
      (this.readOnly ? 0 : uapi.IOMMU_IOAS_MAP_WRITEABLE);
    let d: (typeof MAP_DEFECTS)[number] = MAP_DEFECTS[this.defect];
    // Without a domain the IOAS alignment is one byte: an unaligned IOVA is then valid.
    if (d === "unaligned" && !ioasHasDomain(m, ctx.key, id)) d = "valid";
    const v = { flags, ioas_id: id, user_va: va, length: len, iova };
    if (d === "badId") v.ioas_id = 0x7fff0000 + this.slot;
    if (d === "zeroLen") v.length = 0n;
    if (d === "overflow") {
      // iova + length - 1 wraps past 2^64 (ending exactly at 2^64 - 1 would be valid).
      v.iova = U64_MAX - PAGE + 1n;
      v.length = len + PAGE;
    }
    if (d === "badFlags") v.flags = flags | 0x100;
    if (d === "noRw") v.flags = uapi.IOMMU_IOAS_MAP_FIXED_IOVA;
    if (d === "unaligned") v.iova = iova + 0x10n;
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_MAP, uapi.iommu_ioas_map, v);
    const what = `IOAS_MAP(${d}, iova 0x${v.iova.toString(16)}, len 0x${v.length.toString(16)})`;
    if (d !== "valid") {
      const want: Record<string, number[]> = {
        badId: [-ENOENT],
        zeroLen: [-EINVAL],
        overflow: [-EOVERFLOW, -EINVAL, -ENOENT],
        badFlags: [-EOPNOTSUPP],
        noRw: [-EINVAL],
        unaligned: [-EINVAL],
      };
      return expectRc(what, res.rc, want[d]);
    }
    if (ioas.maps.some((x) => overlaps(x.iova, x.len, iova, len))) return expectRc(what, res.rc, -EEXIST);
    // With a domain the pages are pinned now: the VA must be backed.
    if (ioasHasDomain(m, ctx.key, id) && !backed(mp, va, len)) return expectRc(what, res.rc, -EFAULT);
    expectRc(what, res.rc, 0);
    ioas.maps.push({ iova, len, prot, va });
    note(m, ioasHasDomain(m, ctx.key, id) ? "map pinned" : "map lazy");
  }
  toString() {
    return `IOAS_MAP(p${this.P}, #${this.i}, ioas #${this.ioasPick}, buf ${this.strayVa ? "stray" : this.buf}, ${this.pages}p, slot ${this.slot}${this.readOnly ? ", ro" : ""}, ${MAP_DEFECTS[this.defect]})`;
  }
}

class Unmap extends Base {
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
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    const c = ctxFd(m, this.P, this.i);
    return c !== undefined && c.ctx.ioas.size > 0;
  }
  act(m: Model, r: Real) {
    const { fd, ctx } = ctxFd(m, this.P, this.i)!;
    const id = pick([...ctx.ioas.keys()], this.ioasPick)!;
    const ioas = ctx.ioas.get(id)!;
    let iova: bigint;
    let length: bigint;
    const exact = pick(ioas.maps, this.a);
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
      iova = IOVA_BASE + BigInt(s) * IOVA_SLOT;
      length = BigInt(e - s + 1) * IOVA_SLOT;
    }
    const res = sioctl(r, this.P, fd, uapi.IOMMU_IOAS_UNMAP, uapi.iommu_ioas_unmap, {
      ioas_id: id,
      iova,
      length,
    });
    const what = `IOAS_UNMAP(0x${iova.toString(16)}, 0x${length.toString(16)})`;
    if (this.mode === 1) {
      const total = ioas.maps.reduce((n, x) => n + x.len, 0n);
      expectRc(what, res.rc, 0);
      if (res.out.length !== total)
        throw new Violation(`${what}: unmapped ${res.out.length}, model ${total}`);
      ioas.maps = [];
      return;
    }
    if (this.mode === 2) return expectRc(what, res.rc, [-EOVERFLOW, -EINVAL]);
    // Areas wholly inside go in ascending order; one sticking out stops the call with ENOENT.
    const last = iova + length - 1n;
    const hit = ioas.maps.filter((x) => x.iova <= last && x.iova + x.len - 1n >= iova);
    hit.sort((x, y) => (x.iova < y.iova ? -1 : 1));
    let done = 0n;
    for (const x of hit) {
      if (x.iova < iova || x.iova + x.len - 1n > last) {
        ioas.maps = ioas.maps.filter((y) => !removedSet.has(y));
        removedSet.clear();
        return expectRc(`${what} (partial area)`, res.rc, -ENOENT);
      }
      removedSet.add(x);
      done += x.len;
    }
    ioas.maps = ioas.maps.filter((y) => !removedSet.has(y));
    removedSet.clear();
    if (done === 0n) return expectRc(`${what} (nothing)`, res.rc, -ENOENT);
    expectRc(what, res.rc, 0);
    note(m, "unmap");
    if (res.out.length !== done) throw new Violation(`${what}: unmapped ${res.out.length}, model ${done}`);
  }
  toString() {
    return `IOAS_UNMAP(p${this.P}, #${this.i}, ioas #${this.ioasPick}, mode ${this.mode}, ${this.a}, ${this.b})`;
  }
}
const ioasMapsNote = (n: number) => (n > 0 ? "destroy IOAS with areas" : "destroy IOAS");
const removedSet = new Set<MMap>();

// --- VFIO device cdev ------------------------------------------------------------

function devFd(m: Readonly<Model>, p: number, i: number): { fd: number; d: number } | undefined {
  const fd = pick(fdsOf(m, p, "dev"), i);
  if (fd === undefined) return undefined;
  return { fd, d: (m.procs[p].fds.get(fd) as { kind: "dev"; dev: number }).dev };
}

class Bind extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly j: number,
    readonly badFd: boolean,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return devFd(m, this.P, this.i) !== undefined && (this.badFd || ctxFd(m, this.P, this.j) !== undefined);
  }
  act(m: Model, r: Real) {
    const { fd, d } = devFd(m, this.P, this.i)!;
    const dev = m.devs[d];
    let iommufd: number;
    let ctx: MCtx | undefined;
    if (this.badFd) {
      iommufd = 3;
      while (m.procs[this.P].fds.has(iommufd)) iommufd++;
    } else {
      const c = ctxFd(m, this.P, this.j)!;
      iommufd = c.fd;
      ctx = c.ctx;
    }
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
    // Kernel order: this fd already bound; the iommufd lookup; then the one-opener rule.
    if (dev.bound?.proc === this.P && dev.bound.fd === fd)
      return expectRc(`${what} this fd is bound`, res.rc, -EINVAL);
    if (ctx === undefined) return expectRc(`${what} bad fd`, res.rc, -EBADF);
    if (dev.bound !== undefined) return expectRc(`${what} bound elsewhere`, res.rc, [-EINVAL, -EBUSY]);
    expectRc(what, res.rc, 0);
    const devid = Number(res.out.out_devid);
    if (devid <= 0 || ctx.objs.has(devid)) throw new Violation(`${what}: devid ${devid} in use or invalid`);
    ctx.objs.set(devid, "DEVICE");
    dev.bound = { proc: this.P, fd, ctx: ctx.key, devid };
    note(m, "bind");
    r.regions.set(`${this.P}/${fd}`, regions(r, this.P, fd));
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

/** The device fd that is bound, in process p, by pick. */
function boundDev(m: Readonly<Model>, p: number, i: number) {
  const cands = fdsOf(m, p, "dev").filter((fd) => {
    const d = (m.procs[p].fds.get(fd) as { dev: number }).dev;
    return m.devs[d].bound?.fd === fd && m.devs[d].bound?.proc === p;
  });
  const fd = pick(cands, i);
  if (fd === undefined) return undefined;
  const d = (m.procs[p].fds.get(fd) as { dev: number }).dev;
  return { fd, d, dev: m.devs[d] };
}

class Attach extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly ioasPick: number,
    readonly badId: boolean,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return boundDev(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, d, dev } = boundDev(m, this.P, this.i)!;
    const ctx = m.ctxs.get(dev.bound!.ctx)!;
    const ioasId = this.badId ? undefined : pick([...ctx.ioas.keys()], this.ioasPick);
    const ptId = ioasId ?? 0x7ffffff0;
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      uapi.vfio_device_attach_iommufd_pt,
      { pt_id: ptId },
      "argsz",
      12,
    );
    const what = `VFIO_DEVICE_ATTACH_IOMMUFD_PT(vfio${d}, pt ${ptId})`;
    if (ioasId === undefined) return expectRc(what, res.rc, -ENOENT);
    if (dev.attached?.ioas === ioasId) {
      // Attaching again to the same IOAS replaces with the same auto domain.
      expectRc(`${what} again`, res.rc, [0, -EINVAL, -EBUSY]);
      return;
    }
    const ioas = ctx.ioas.get(ioasId)!;
    const shared = ioasHasDomain(m, ctx.key, ioasId);
    const mp = m.procs[this.P];
    if (!shared && ioas.maps.some((x) => !backed(mp, x.va, x.len))) {
      note(m, "attach refused: unbacked area");
      return expectRc(`${what} unbacked area`, res.rc, -EFAULT);
    }
    expectRc(what, res.rc, 0);
    const hwpt = Number(res.out.pt_id);
    if (dev.attached !== undefined) dropHwptIfUnused(m, ctx, dev.attached.hwpt, dev);
    if (hwpt <= 0 || (ctx.objs.has(hwpt) && ctx.objs.get(hwpt) !== "HWPT")) {
      throw new Violation(`${what}: hwpt id ${hwpt} clashes`);
    }
    ctx.objs.set(hwpt, "HWPT");
    note(m, dev.attached === undefined ? "attach" : "replace");
    dev.attached = { ioas: ioasId, hwpt };
  }
  toString() {
    return `ATTACH(p${this.P}, dev #${this.i}, ioas #${this.ioasPick}${this.badId ? ", bad id" : ""})`;
  }
}

class Detach extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return boundDev(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, dev } = boundDev(m, this.P, this.i)!;
    const res = sioctl(
      r,
      this.P,
      fd,
      uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT,
      uapi.vfio_device_detach_iommufd_pt,
      {},
      "argsz",
    );
    expectRc("VFIO_DEVICE_DETACH_IOMMUFD_PT", res.rc, 0);
    if (dev.attached !== undefined) {
      const ctx = m.ctxs.get(dev.bound!.ctx)!;
      const h = dev.attached.hwpt;
      dev.attached = undefined;
      dropHwptIfUnused(m, ctx, h, dev);
    }
  }
  toString() {
    return `DETACH(p${this.P}, dev #${this.i})`;
  }
}

/**
 * What the device sees: the memcpy engine copies 8 bytes from an IOVA onto
 * itself (a read and a write of the same bytes). The model says whether the
 * IOVA is mapped readable and writable in the attached IOAS.
 */
class Dma extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly slot: number,
    readonly off: number,
    readonly fromMaps: boolean,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return boundDev(m, this.P, this.i) !== undefined;
  }
  act(m: Model, r: Real) {
    const { fd, d, dev } = boundDev(m, this.P, this.i)!;
    const rg = r.regions.get(`${this.P}/${fd}`)!;
    const p = r.procs[this.P];
    const cmd = p.pread(fd, 2, rg.cfg + 4n);
    if (typeof cmd === "number") throw new Violation(`config read failed ${cmd}`);
    const w = (off: bigint, v: bigint | number, n: number) => {
      const rc = p.pwrite(fd, le(v, n), off);
      if (rc !== n) throw new Violation(`pwrite at 0x${off.toString(16)} returned ${rc}`);
    };
    w(rg.cfg + 4n, cmd[0] | (cmd[1] << 8) | 4, 2);
    let iova = IOVA_BASE + BigInt(this.slot) * IOVA_SLOT + BigInt(this.off) * 8n;
    const att =
      dev.attached !== undefined ? m.ctxs.get(dev.bound!.ctx)!.ioas.get(dev.attached.ioas) : undefined;
    const target = this.fromMaps && att !== undefined ? pick(att.maps, this.slot) : undefined;
    // Mostly aim inside a mapped range (maybe at its last bytes), else anywhere on the grid.
    if (target !== undefined) iova = target.iova + ((BigInt(this.off) * 0x7f8n) % target.len);
    w(rg.bar0 + 0x08n, iova, 8);
    w(rg.bar0 + 0x10n, iova, 8);
    w(rg.bar0 + 0x18n, 8, 8);
    w(rg.bar0 + 0x20n, 1, 4);
    const st = p.pread(fd, 4, rg.bar0 + 0x24n);
    if (typeof st === "number") throw new Violation(`STATUS read failed ${st}`);
    let want = 3;
    if (dev.attached !== undefined) {
      const ioas = m.ctxs.get(dev.bound!.ctx)!.ioas.get(dev.attached.ioas)!;
      const mp = ioas.maps.find((x) => iova >= x.iova && iova + 8n <= x.iova + x.len);
      if (mp !== undefined && (mp.prot & PROT_W) !== 0) want = 2;
    }
    note(m, want === 2 ? "dma ok" : "dma fault");
    if (st[0] !== want) {
      throw new Violation(
        `DMA on vfio${d} at iova 0x${iova.toString(16)}: STATUS ${st[0]}, model expects ${want}`,
      );
    }
  }
  toString() {
    return `DMA(p${this.P}, dev #${this.i}, slot ${this.slot}+${this.off * 8})`;
  }
}

// --- invalid and random structs ---------------------------------------------------

const KNOWN = [
  uapi.IOMMU_IOAS_ALLOC,
  uapi.IOMMU_IOAS_MAP,
  uapi.IOMMU_IOAS_UNMAP,
  uapi.IOMMU_IOAS_COPY,
  uapi.IOMMU_DESTROY,
  uapi.IOMMU_IOAS_IOVA_RANGES,
  uapi.IOMMU_IOAS_ALLOW_IOVAS,
  uapi.IOMMU_OPTION,
  uapi.IOMMU_HWPT_ALLOC,
  uapi.IOMMU_IOAS_MAP_FILE,
  uapi.IOMMU_GET_HW_INFO,
];

/**
 * Structs that must fail whatever else is in them, on a modelled fd:
 * a size below the minimum (EINVAL), a non-zero tail past the struct
 * (E2BIG), a pointer to nowhere (EFAULT), an unknown request (ENOTTY), an
 * fd this process does not have (EBADF).
 */
class BadIoctl extends Base {
  constructor(
    override readonly p: number,
    readonly i: number,
    readonly kind: number,
    readonly req: number,
    readonly junk: Uint8Array,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    const mp = m.procs[this.P];
    const fds = [...mp.fds.keys()].filter((f) => mp.fds.get(f)!.kind === "iommufd");
    const fd = pick(fds, this.i);
    const req = KNOWN[this.req % KNOWN.length];
    const p = r.procs[this.P];
    if (fd === undefined || this.kind === 4) {
      let n = 3 + (this.i % 40);
      while (mp.fds.has(n)) n++;
      return expectRc(`ioctl on fd ${n} not open here`, p.ioctl(n, req, r.argVa[this.P]), -EBADF);
    }
    if (this.kind === 0) {
      const b = new Uint8Array(8);
      b.set(le(4 + (this.junk[0] % 4), 4)); // size 4..7: below every minimum but the header
      return expectRc("ioctl with size below minimum", rawIoctl(r, this.P, fd, req, b), -EINVAL);
    }
    if (this.kind === 1) {
      const b = new Uint8Array(256);
      b.set(le(256, 4));
      b[200] = 1 + (this.junk[0] % 255);
      return expectRc("ioctl with a non-zero tail", rawIoctl(r, this.P, fd, req, b), -E2BIG);
    }
    if (this.kind === 2) {
      return expectRc(
        "ioctl on a stray pointer",
        p.ioctl(fd, req, 0x7f0000001000n + BigInt(this.junk[0]) * PAGE),
        -EFAULT,
      );
    }
    const nr = 0xc0 + (this.junk[0] % 0x30);
    return expectRc(`ioctl nr 0x${nr.toString(16)}`, p.ioctl(fd, (0x3b << 8) | nr, r.argVa[this.P]), -ENOTTY);
  }
  toString() {
    return `BAD_IOCTL(p${this.P}, #${this.i}, kind ${this.kind}, req ${this.req})`;
  }
}

/** Random requests and bytes on an unmodelled iommufd: only "no throw, invariants hold". */
class ChaosIoctl extends Base {
  constructor(
    override readonly p: number,
    readonly req: number,
    readonly bytes: Uint8Array,
    readonly size: number,
  ) {
    super();
  }
  check(m: Readonly<Model>) {
    this.P = livePick(m, this.p);
    return fdsOf(m, this.P, "chaos").length > 0;
  }
  act(m: Model, r: Real) {
    const fd = fdsOf(m, this.P, "chaos")[0];
    const b = new Uint8Array(Math.max(8, this.bytes.length));
    b.set(this.bytes);
    b.set(le(this.size, 4));
    const req = KNOWN[this.req % KNOWN.length];
    const rc = rawIoctl(r, this.P, fd, req, b);
    if (!Number.isInteger(rc)) throw new Violation(`ioctl returned ${rc}`);
    // EIO is what the syscall boundary makes of an exception: a model bug.
    if (rc === -EIO) throw new Violation(`chaos ioctl ended in EIO: ${r.procs[this.P].lastError()?.reason}`);
  }
  toString() {
    return `CHAOS(p${this.P}, req ${this.req}, size ${this.size}, ${this.bytes.length} bytes)`;
  }
}

// --- arbitraries ----------------------------------------------------------------

const proc = fc.nat({ max: MAX_PROCS - 1 });
const idx = fc.nat({ max: 15 });
const slot = fc.nat({ max: IOVA_SLOTS - 1 });

/** The command mix: valid calls dominate, invalid ones are spread in. */
export function commandArbs(): fc.Arbitrary<Cmd>[] {
  const a = arbs();
  // The calls that build state come more often than the ones that tear it down.
  const weight: Record<string, number> = { mmap: 2, open: 2, ioas: 2, map: 6, bind: 2, attach: 3, dma: 5 };
  return Object.entries(a).flatMap(([k, arb]) => Array<fc.Arbitrary<Cmd>>(weight[k] ?? 1).fill(arb));
}

/** Process picks are resolved against the live processes by check(). */
function arbs(): Record<string, fc.Arbitrary<Cmd>> {
  return {
    spawn: fc.constant(new Spawn()),
    exit: proc.map((p) => new Exit(p)),
    mmap: fc.tuple(proc, fc.integer({ min: 1, max: 8 })).map(([p, n]) => new Mmap(p, n)),
    munmap: fc.tuple(proc, idx, fc.nat({ max: 6 })).map(([p, i, b]) => new Munmap(p, i, b > 4 ? b - 4 : 0)),
    open: fc.tuple(proc, fc.nat({ max: 7 })).map(([p, c]) => new OpenIommufd(p, c === 0)),
    openDev: fc.tuple(proc, fc.nat({ max: 1 })).map(([p, d]) => new OpenDev(p, d)),
    close: fc.tuple(proc, idx, fc.nat({ max: 7 })).map(([p, i, s]) => new Close(p, i, s === 0)),
    ioas: fc.tuple(proc, idx, fc.nat({ max: 9 })).map(([p, i, b]) => new IoasAlloc(p, i, b === 0)),
    destroy: fc
      .tuple(proc, idx, idx, fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 40 })))
      .map(([p, i, j, id]) => new Destroy(p, i, j, id)),
    map: fc
      .tuple(
        proc,
        idx,
        idx,
        idx,
        fc.integer({ min: 1, max: 4 }),
        slot,
        fc.nat({ max: 3 }),
        fc.nat({ max: 14 }),
        fc.nat({ max: 9 }),
      )
      .map(
        ([p, i, io, b, n, s, ro, def, st]) =>
          new Map_(p, i, io, b, n, s, ro === 0, def > 6 ? 0 : def, st === 0),
      ),
    unmap: fc
      .tuple(proc, idx, idx, fc.nat({ max: 5 }), fc.nat({ max: 100 }), fc.nat({ max: 100 }))
      .map(([p, i, io, mode, a, b]) => new Unmap(p, i, io, mode > 3 ? 0 : mode, a, b)),
    bind: fc.tuple(proc, idx, idx, fc.nat({ max: 9 })).map(([p, i, j, b]) => new Bind(p, i, j, b === 0)),
    attach: fc
      .tuple(proc, idx, idx, fc.nat({ max: 9 }))
      .map(([p, i, io, b]) => new Attach(p, i, io, b === 0)),
    detach: fc.tuple(proc, idx).map(([p, i]) => new Detach(p, i)),
    dma: fc
      .tuple(proc, idx, slot, fc.nat({ max: 600 }), fc.nat({ max: 4 }))
      .map(([p, i, s, o, f]) => new Dma(p, i, s, o, f > 0)),
    bad: fc
      .tuple(
        proc,
        idx,
        fc.nat({ max: 4 }),
        fc.nat({ max: 20 }),
        fc.uint8Array({ minLength: 1, maxLength: 4 }),
      )
      .map(([p, i, k, q, j]) => new BadIoctl(p, i, k, q, j)),
    chaos: fc
      .tuple(
        proc,
        fc.nat({ max: 20 }),
        fc.uint8Array({ maxLength: 96 }),
        fc.oneof(fc.nat({ max: 128 }), fc.nat()),
      )
      .map(([p, q, b, s]) => new ChaosIoctl(p, q, b, s)),
  };
}

export type { Cmd };
