// Recipes: a realistic chain of valid calls as one fast-check command, so a
// random sequence reaches deep states (a device DMAing through a dirty-
// tracking HWPT, a type1 container with a device fd, sPAPR pre-registered
// memory, a noiommu PA, a selftest access) in reasonable time. Each link is
// an ordinary command with its own prediction, aimed at what the previous
// links made; the chain stops at the first link that does not apply.
import { Base, type Cmd, fdsOf } from "./cmd-base.js";
import {
  GetDirty,
  GetPa,
  HwptAlloc,
  IoasAlloc,
  IoasMap,
  OpenIommufd,
  OptionCmd,
  SetDirty,
} from "./cmd-iommufd.js";
import { Mmap } from "./cmd-proc.js";
import {
  AccessPages,
  Attach,
  Bind,
  CreateAccess,
  Dma,
  GetDeviceFd,
  MapDma,
  OpenContainer,
  OpenDev,
  OpenGroup,
  SetContainer,
  SetIommu,
  SpaprRegister,
} from "./cmd-vfio.js";
import { getFile } from "./model-ops.js";
import { CDEV_DEVS, type Model, type Real } from "./world.js";

export const RECIPES = ["cdev", "dirty", "type1", "compat", "spapr", "noiommu", "access"] as const;
export type RecipeKind = (typeof RECIPES)[number];

/** Where a new fd sits in the sorted list commands pick from. */
const at = (fds: number[], fd: number | undefined) => Math.max(0, fd === undefined ? 0 : fds.indexOf(fd));
const newest = (before: number[], after: number[]) => after.find((fd) => !before.includes(fd));

export class Recipe extends Base {
  constructor(
    override readonly p: number,
    readonly kind: RecipeKind,
    readonly d: number,
    readonly slot: number,
  ) {
    super();
  }
  ok(m: Readonly<Model>) {
    if (this.P < 0) return false;
    if (m.procs[this.P].fds.size > 6 || m.procs[this.P].bufs.length > 6) return false;
    const k = m.spec;
    switch (this.kind) {
      case "type1":
        return k.container === "type1" && k.groupDevs.length > 0;
      case "spapr":
        return k.container === "spapr";
      case "compat":
        return k.groupDevs.length > 0;
      case "noiommu":
        return k.noiommu;
      case "access":
        return k.selftest;
      case "dirty":
        return k.dirty;
      default:
        return true;
    }
  }
  /** The links run as their own steps (each checked against the model and the invariants). */
  override run(m: Model, r: Real): void {
    this.act(m, r);
  }
  act(m: Model, r: Real): void {
    const P = this.P;
    const p = m.procs.filter((x) => x.alive).findIndex((_, i, live) => live[i] === m.procs[P]);
    const step = (c: Cmd): boolean => {
      if (!c.check(m)) return false;
      c.run(m, r);
      return true;
    };
    const opened = (kind: Parameters<typeof fdsOf>[2], f: () => boolean): number | undefined => {
      const before = fdsOf(m, P, kind);
      if (!f()) return undefined;
      return newest(before, fdsOf(m, P, kind));
    };
    const s = this.slot;
    if (!step(new Mmap(p, 4, false))) return;
    const buf = m.procs[P].bufs.length - 1;
    const dev = CDEV_DEVS[this.d % CDEV_DEVS.length];
    const cdevChain = (): { ctxIdx: number; devIdx: number; ioasIdx: number } | undefined => {
      const ctxFd = opened("iommufd", () => step(new OpenIommufd(p, false)));
      if (ctxFd === undefined) return undefined;
      const ctxIdx = at(fdsOf(m, P, "iommufd"), ctxFd);
      // Per-mm accounting now and then (needs CAP_SYS_RESOURCE and an empty context).
      if (s % 3 === 0) step(new OptionCmd(p, ctxIdx, 0, false, 1, 0));
      if (!step(new IoasAlloc(p, ctxIdx, false))) return undefined;
      const ctx = m.ctxs.get((getFile(m, P, ctxFd) as { ctx: number }).ctx)!;
      const ioasIdx = [...ctx.objs.values()].filter((o) => o.kind === "IOAS").length - 1;
      const devFd = opened("cdev", () => step(new OpenDev(p, dev)));
      if (devFd === undefined) return undefined;
      const devIdx = at(fdsOf(m, P, "cdev"), devFd);
      if (!step(new Bind(p, devIdx, ctxIdx, false))) return undefined;
      if (!step(new IoasMap(p, ctxIdx, ioasIdx, buf, 4, s, false, 0, false))) return undefined;
      return { ctxIdx, devIdx, ioasIdx };
    };
    const dma = (devFd: number | undefined) => {
      const list: number[] = [];
      for (const fd of [...m.procs[P].fds.keys()].sort((a, b) => a - b)) {
        const f = getFile(m, P, fd);
        const key = m.procs[P].fds.get(fd)!;
        if ((f?.kind === "cdev" && m.devs[f.dev].bound?.file === key) || f?.kind === "gdev") list.push(fd);
      }
      const i = at(list, devFd);
      for (let k = 0; k < 3; k++) step(new Dma(p, i, s + k, k * 3, true, false));
    };
    switch (this.kind) {
      case "cdev":
      case "noiommu":
      case "dirty": {
        const c = cdevChain();
        if (c === undefined) return;
        const devFd = fdsOf(m, P, "cdev")[c.devIdx];
        if (this.kind === "dirty") {
          const ctx = m.ctxs.get((getFile(m, P, fdsOf(m, P, "iommufd")[c.ctxIdx]) as { ctx: number }).ctx)!;
          const devIdx = [...ctx.objs.values()].filter((o) => o.kind === "DEVICE").length - 1;
          if (!step(new HwptAlloc(p, c.ctxIdx, devIdx, c.ioasIdx, 1))) return;
          if (!step(new Attach(p, c.devIdx, 0, 1))) return;
          if (!step(new SetDirty(p, c.ctxIdx, 0, true, false))) return;
          dma(devFd);
          step(new GetDirty(p, c.ctxIdx, 0, s, 2, s % 2 === 0));
          return;
        }
        if (!step(new Attach(p, c.devIdx, c.ioasIdx, 0))) return;
        if (this.kind === "noiommu")
          for (let k = 0; k < 2; k++) step(new GetPa(p, c.ctxIdx, c.ioasIdx, 100, k, 8));
        dma(devFd);
        return;
      }
      case "access": {
        const ctxFd = opened("iommufd", () => step(new OpenIommufd(p, false)));
        if (ctxFd === undefined) return;
        const ctxIdx = at(fdsOf(m, P, "iommufd"), ctxFd);
        if (!step(new IoasAlloc(p, ctxIdx, false))) return;
        const ctx = m.ctxs.get((getFile(m, P, ctxFd) as { ctx: number }).ctx)!;
        const ioasIdx = [...ctx.objs.values()].filter((o) => o.kind === "IOAS").length - 1;
        if (!step(new IoasMap(p, ctxIdx, ioasIdx, buf, 4, s, false, 0, false))) return;
        const afd = opened("access", () => step(new CreateAccess(p, ctxIdx, ioasIdx)));
        if (afd === undefined) return;
        step(new AccessPages(p, at(fdsOf(m, P, "access"), afd), 0, 1 + (s % 4), s % 2 === 0, 0));
        return;
      }
      case "type1":
      case "spapr":
      case "compat": {
        const g = opened("group", () => step(new OpenGroup(p, this.d)));
        if (g === undefined) return;
        const cfd =
          this.kind === "compat"
            ? opened("iommufd", () => step(new OpenIommufd(p, false)))
            : opened("container", () => step(new OpenContainer(p)));
        if (cfd === undefined) return;
        const containerish = () =>
          [...fdsOf(m, P, "container"), ...fdsOf(m, P, "iommufd")].sort((a, b) => a - b);
        const ci = at(containerish(), cfd);
        if (!step(new SetContainer(p, at(fdsOf(m, P, "group"), g), ci, false))) return;
        if (this.kind !== "compat" && !step(new SetIommu(p, ci, this.kind === "spapr" ? 7 : 1 + 2 * (s % 2))))
          return;
        if (this.kind === "spapr") step(new SpaprRegister(p, at(fdsOf(m, P, "container"), cfd), buf, false));
        const gdev = opened("gdev", () => step(new GetDeviceFd(p, at(fdsOf(m, P, "group"), g), false)));
        step(new MapDma(p, ci, buf, 4, s, false, 0));
        dma(gdev);
        return;
      }
    }
  }
  toString() {
    return `RECIPE(p${this.P}, ${this.kind}, #${this.d}, slot ${this.slot})`;
  }
}
