// The command mix of model-based fuzzing: every command of cmd-*.ts with
// its arbitrary, weighted so state is built more often than torn down, plus
// structs that must fail whatever else is in them and random bytes on an
// unmodelled iommufd.
import fc from "fast-check";
import { uapi } from "../index.js";
import { alive, Base, type Cmd, expectRc, fdsOf, pick, strayFd, Violation } from "./cmd-base.js";
import {
  AllowIovas,
  ChangeProcess,
  Destroy,
  GetDirty,
  GetPa,
  HwptAlloc,
  IoasAlloc,
  IoasCopy,
  IoasMap,
  IoasMapFile,
  IoasUnmap,
  OpenIommufd,
  OptionCmd,
  SetDirty,
} from "./cmd-iommufd.js";
import {
  Close,
  Dup,
  Eventfd,
  Exit,
  Ftruncate,
  MemfdCreate,
  Mmap,
  Munmap,
  ReadEventfd,
  Spawn,
} from "./cmd-proc.js";
import { RECIPES, Recipe } from "./cmd-recipe.js";
import {
  AccessPages,
  Attach,
  Bind,
  CreateAccess,
  Detach,
  Dma,
  GetDeviceFd,
  MapDma,
  MmapBar,
  OpenContainer,
  OpenDev,
  OpenGroup,
  SetContainer,
  SetIommu,
  SetMsi,
  SpaprRegister,
  SpaprWindow,
  UnmapDma,
  UnsetContainer,
} from "./cmd-vfio.js";
import {
  CDEV_DEVS,
  IOVA_SLOTS,
  le,
  MAX_PROCS,
  type MachineKind,
  type Model,
  PAGE,
  type Real,
  rawIoctl,
} from "./world.js";

export { checkMachine, Violation } from "./cmd-base.js";
export { Spawn };

const { E2BIG, EBADF, EFAULT, EINVAL, EIO, ENOTTY } = uapi;

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
  ok(m: Readonly<Model>) {
    return alive(m, this.P);
  }
  act(m: Model, r: Real) {
    const fds = fdsOf(m, this.P, "iommufd");
    const fd = pick(fds, this.i);
    const req = KNOWN[this.req % KNOWN.length];
    const p = r.procs[this.P];
    if (fd === undefined || this.kind === 4) {
      const n = strayFd(m, this.P, this.i);
      return expectRc(r, `ioctl on fd ${n} not open here`, p.ioctl(n, req, r.argVa[this.P]), -EBADF);
    }
    // IOMMU_IOAS_MAP_FILE came in 6.13: a 6.12 kernel has no such command whatever the struct.
    if (m.kind === "k612" && req === uapi.IOMMU_IOAS_MAP_FILE && this.kind < 4) {
      return expectRc(r, "IOAS_MAP_FILE on 6.12", rawIoctl(r, this.P, fd, req, new Uint8Array(8)), -ENOTTY);
    }
    if (this.kind === 0) {
      const b = new Uint8Array(8);
      b.set(le(4 + (this.junk[0] % 4), 4)); // size 4..7: below every minimum but the header
      return expectRc(r, "ioctl with size below minimum", rawIoctl(r, this.P, fd, req, b), -EINVAL);
    }
    if (this.kind === 1) {
      const b = new Uint8Array(256);
      b.set(le(256, 4));
      b[200] = 1 + (this.junk[0] % 255);
      return expectRc(r, "ioctl with a non-zero tail", rawIoctl(r, this.P, fd, req, b), -E2BIG);
    }
    if (this.kind === 2) {
      return expectRc(
        r,
        "ioctl on a stray pointer",
        p.ioctl(fd, req, 0x7f0000001000n + BigInt(this.junk[0]) * PAGE),
        -EFAULT,
      );
    }
    const nr = 0xc0 + (this.junk[0] % 0x30);
    return expectRc(
      r,
      `ioctl nr 0x${nr.toString(16)}`,
      p.ioctl(fd, (0x3b << 8) | nr, r.argVa[this.P]),
      -ENOTTY,
    );
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
  ok(m: Readonly<Model>) {
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
const chance = (n: number) => fc.nat({ max: n - 1 }).map((x) => x === 0);

/** The command mix for a machine kind: valid calls dominate, invalid ones are spread in. */
export function commandArbs(kind: MachineKind = "amd"): fc.Arbitrary<Cmd>[] {
  const a = arbs();
  // The calls that build state come more often than the ones that tear it down.
  const weight: Record<string, number> = {
    mmap: 3,
    open: 2,
    openDev: 2,
    ioas: 2,
    map: 6,
    bind: 3,
    attach: 3,
    hwptAlloc: 2,
    dirty: 2,
    getDirty: 2,
    dma: 8,
    mmapBar: 1,
    copy: 2,
    mapFile: 2,
    recipe: 4,
  };
  if (kind === "noiommu")
    Object.assign(weight, {
      getPa: 4,
      openGroup: 0,
      openContainer: 0,
      setContainer: 0,
      unsetContainer: 0,
      setIommu: 0,
      mapDma: 0,
      unmapDma: 0,
      getDeviceFd: 0,
      dirty: 0,
      getDirty: 0,
    });
  else
    Object.assign(weight, {
      getPa: 0,
      openGroup: 2,
      openContainer: 2,
      setContainer: 3,
      setIommu: 3,
      mapDma: 4,
      getDeviceFd: 3,
    });
  if (kind !== "mock") Object.assign(weight, { createAccess: 0, accessPages: 0 });
  else Object.assign(weight, { createAccess: 2, accessPages: 4 });
  if (kind !== "spapr") Object.assign(weight, { spaprRegister: 0, spaprWindow: 0 });
  else Object.assign(weight, { spaprRegister: 4, spaprWindow: 2, dirty: 0, getDirty: 0 });
  return Object.entries(a).flatMap(([k, arb]) => Array<fc.Arbitrary<Cmd>>(weight[k] ?? 1).fill(arb));
}

/** Process picks are resolved against the live processes by check(). */
function arbs(): Record<string, fc.Arbitrary<Cmd>> {
  return {
    spawn: fc.nat({ max: 5 }).map((k) => new Spawn(k > 3 ? 0 : k)),
    exit: proc.map((p) => new Exit(p)),
    mmap: fc.tuple(proc, fc.integer({ min: 1, max: 8 }), chance(6)).map(([p, n, l]) => new Mmap(p, n, l)),
    munmap: fc.tuple(proc, idx, fc.nat({ max: 8 })).map(([p, i, b]) => new Munmap(p, i, b > 5 ? b - 5 : 0)),
    open: fc.tuple(proc, chance(8)).map(([p, c]) => new OpenIommufd(p, c)),
    openDev: fc.tuple(proc, fc.constantFrom(...CDEV_DEVS)).map(([p, d]) => new OpenDev(p, d)),
    close: fc.tuple(proc, idx, chance(8)).map(([p, i, s]) => new Close(p, i, s)),
    dup: fc.tuple(proc, idx).map(([p, i]) => new Dup(p, i)),
    memfd: fc.tuple(proc, fc.integer({ min: 1, max: 8 })).map(([p, n]) => new MemfdCreate(p, n)),
    ftruncate: fc.tuple(proc, idx, fc.nat({ max: 10 })).map(([p, i, n]) => new Ftruncate(p, i, n)),
    eventfd: proc.map((p) => new Eventfd(p)),
    readEventfd: fc.tuple(proc, idx).map(([p, i]) => new ReadEventfd(p, i)),
    ioas: fc.tuple(proc, idx, chance(10)).map(([p, i, b]) => new IoasAlloc(p, i, b)),
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
        chance(4),
        fc.nat({ max: 16 }),
        chance(10),
      )
      .map(([p, i, io, b, n, s, ro, def, st]) => new IoasMap(p, i, io, b, n, s, ro, def > 7 ? 0 : def, st)),
    mapFile: fc
      .tuple(proc, idx, idx, idx, fc.nat({ max: 6 }), fc.integer({ min: 1, max: 4 }), slot, chance(12))
      .map(([p, i, io, f, st, n, s, b]) => new IoasMapFile(p, i, io, f, st, n, s, b)),
    copy: fc
      .tuple(proc, idx, idx, idx, idx, fc.nat({ max: 30 }), slot, chance(4))
      .map(([p, i, s, d, a, sp, sl, ro]) => new IoasCopy(p, i, s, d, a, sp, sl, ro)),
    unmap: fc
      .tuple(proc, idx, idx, fc.nat({ max: 5 }), fc.nat({ max: 100 }), fc.nat({ max: 100 }))
      .map(([p, i, io, mode, a, b]) => new IoasUnmap(p, i, io, mode > 3 ? 0 : mode, a, b)),
    hwptAlloc: fc
      .tuple(proc, idx, idx, idx, fc.nat({ max: 9 }))
      .map(([p, i, d, io, v]) => new HwptAlloc(p, i, d, io, v > 5 ? v % 2 : v)),
    dirty: fc
      .tuple(proc, idx, idx, fc.boolean(), chance(10))
      .map(([p, i, h, e, b]) => new SetDirty(p, i, h, e, b)),
    getDirty: fc
      .tuple(proc, idx, idx, slot, fc.integer({ min: 1, max: 8 }), chance(4))
      .map(([p, i, h, s, n, nc]) => new GetDirty(p, i, h, s, n, nc)),
    allow: fc
      .tuple(
        proc,
        idx,
        idx,
        fc.array(fc.tuple(slot, fc.nat({ max: 6 })), { maxLength: 2 }),
        fc.nat({ max: 6 }),
      )
      .map(([p, i, io, rs, b]) => {
        // Disjoint, increasing grid ranges.
        const sorted = [...rs].sort((x, y) => x[0] - y[0]);
        const ok: [number, number][] = [];
        let next = 0;
        for (const [s, n] of sorted) {
          if (s < next) continue;
          const len = Math.min(n, IOVA_SLOTS - 1 - s);
          ok.push([s, len]);
          next = s + len + 1;
        }
        return new AllowIovas(p, i, io, ok, b > 2 ? 0 : b);
      }),
    option: fc
      .tuple(proc, idx, fc.nat({ max: 5 }), fc.boolean(), fc.nat({ max: 4 }), idx)
      .map(([p, i, w, g, v, io]) => new OptionCmd(p, i, w > 2 ? w % 2 : w, g, v > 2 ? v % 2 : v, io)),
    changeProcess: fc.tuple(proc, idx).map(([p, i]) => new ChangeProcess(p, i)),
    getPa: fc
      .tuple(proc, idx, idx, idx, fc.nat({ max: 40 }), fc.nat({ max: 20 }))
      .map(([p, i, io, a, o, mx]) => new GetPa(p, i, io, a, o, mx)),
    bind: fc.tuple(proc, idx, idx, chance(10)).map(([p, i, j, b]) => new Bind(p, i, j, b)),
    attach: fc
      .tuple(proc, idx, idx, fc.nat({ max: 9 }))
      .map(([p, i, t, k]) => new Attach(p, i, t, k < 5 ? 0 : k < 9 ? 1 : 2)),
    detach: fc.tuple(proc, idx).map(([p, i]) => new Detach(p, i)),
    dma: fc
      .tuple(proc, idx, slot, fc.nat({ max: 600 }), fc.nat({ max: 4 }), chance(3))
      .map(([p, i, s, o, f, b]) => new Dma(p, i, s, o, f > 0, b)),
    mmapBar: fc.tuple(proc, idx).map(([p, i]) => new MmapBar(p, i)),
    msi: fc.tuple(proc, idx, idx, chance(5)).map(([p, i, e, d]) => new SetMsi(p, i, e, d)),
    openGroup: fc.tuple(proc, fc.nat({ max: 1 })).map(([p, g]) => new OpenGroup(p, g)),
    openContainer: proc.map((p) => new OpenContainer(p)),
    setContainer: fc.tuple(proc, idx, idx, chance(12)).map(([p, i, j, b]) => new SetContainer(p, i, j, b)),
    unsetContainer: fc.tuple(proc, idx).map(([p, i]) => new UnsetContainer(p, i)),
    setIommu: fc
      .tuple(proc, idx, fc.constantFrom(1, 3, 3, 1, 2, 7, 7, 8))
      .map(([p, i, t]) => new SetIommu(p, i, t)),
    mapDma: fc
      .tuple(proc, idx, idx, fc.integer({ min: 1, max: 4 }), slot, chance(4), fc.nat({ max: 9 }))
      .map(([p, i, b, n, s, ro, d]) => new MapDma(p, i, b, n, s, ro, d > 3 ? 0 : d)),
    unmapDma: fc
      .tuple(proc, idx, fc.nat({ max: 5 }), fc.nat({ max: 100 }), fc.nat({ max: 100 }))
      .map(([p, i, mode, a, b]) => new UnmapDma(p, i, mode > 3 ? 0 : mode, a, b)),
    getDeviceFd: fc.tuple(proc, idx, chance(10)).map(([p, i, b]) => new GetDeviceFd(p, i, b)),
    spaprRegister: fc.tuple(proc, idx, idx, chance(4)).map(([p, i, b, u]) => new SpaprRegister(p, i, b, u)),
    spaprWindow: fc
      .tuple(proc, idx, fc.boolean(), fc.nat({ max: 1 }))
      .map(([p, i, rm, w]) => new SpaprWindow(p, i, rm, w)),
    createAccess: fc.tuple(proc, idx, idx).map(([p, i, io]) => new CreateAccess(p, i, io)),
    accessPages: fc
      .tuple(proc, idx, slot, fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.nat({ max: 4 }))
      .map(([p, i, s, n, w, d]) => new AccessPages(p, i, s, n, w, d > 2 ? d - 2 : 0)),
    recipe: fc
      .tuple(proc, fc.constantFrom(...RECIPES), fc.nat({ max: 1 }), slot)
      .map(([p, k, d, s]) => new Recipe(p, k, d, s)),
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
