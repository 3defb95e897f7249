import { DmaLog } from "../hw/dma-log.js";
import { FaultInject } from "../hw/fault-inject.js";
import { FrameAllocator } from "../hw/frame-alloc.js";
import { PciBus, type PciDeviceKind } from "../hw/pci-bus.js";
import { PAGE_SHIFT, PhysMem } from "../hw/phys-mem.js";
import type { IommuDeviceFlags } from "../iommu/device.js";
import type { SpaprMachineOptions } from "../iommu/spapr-platform.js";
import { createIommuSubsystem, type IommuSubsystem } from "../iommu/subsystem.js";
import {
  type IommufdGlobals,
  iommufdCounters,
  iommufdInvariants,
  registerIommufd,
} from "../iommufd/index.js";
import { HSTATE_ATTRS, writeHstateAttr } from "../mm/hugetlb-pool.js";
import { type ForeignFile, ForeignMemFile, type ForeignMemory } from "../mm/index.js";
import type { MmStruct } from "../mm/mm-struct.js";
import { EINVAL, ENOENT, ENOMEM, fail } from "../uapi/errno.js";
import { VfioCore } from "../vfio/vfio-main.js";
import { type Cred, RLIM_INFINITY } from "./cred.js";
import { Debug, type DebugSources } from "./debug.js";
import type { KFile } from "./file.js";
import { addIntelDebugfs } from "./intel-debugfs.js";
import { resolveKconfig } from "./kconfig.js";
import type { IommuKind, KernelCtx, KernelProfileName, NoiommuRevision } from "./kctx.js";
import { checkMachineInvariants } from "./machine-invariants.js";
import { badValue, isOptionValue } from "./machine-options.js";
import { MmGlue } from "./mm-glue.js";
import { isParamName, PARAM_DEFAULTS, type ParamName, type ParamValue, parseParam } from "./params.js";
import { PciIov } from "./pci-iov.js";
import { addPciSysfs } from "./pci-sysfs.js";
import { KernelLog } from "./printk.js";
import { Process } from "./process.js";
import type { KernelServices } from "./services.js";
import { sysfsAttrFile } from "./sysfs.js";
import type { Task } from "./task.js";
import { Tracer } from "./trace.js";
import { Vfs } from "./vfs.js";

export interface PciDeviceConfig {
  bdf: string;
  kind: PciDeviceKind;
  /** iommu_group number to share with other devices; default: a group of its own. */
  group?: number;
  /** The device sits behind no IOMMU even on an IOMMU machine. */
  noIommu?: boolean;
  /** Facts its IOMMU driver reads (e.g. `pasid`: PASID-capable). */
  flags?: IommuDeviceFlags;
}

/** The options of a Machine. Each is also declared in MACHINE_OPTIONS (machine-options.ts): its scenario key and flag. */
export interface MachineOptions {
  iommu?: IommuKind;
  memoryBytes?: bigint;
  pci?: PciDeviceConfig[];
  kconfig?: Record<string, boolean>;
  params?: Partial<Record<ParamName, ParamValue>>;
  kernel?: KernelProfileName;
  noiommuRevision?: NoiommuRevision;
  seed?: number;
  /** Keep every syscall in m.trace (the CLI turns it on). */
  trace?: boolean;
  /** PPC64 (`iommu: "spapr"`): platform flavour and TCE page sizes (docs/ppc64.md). */
  spapr?: SpaprMachineOptions;
  /**
   * Hugetlb pools: nr_hugepages per size, allocated at boot (as the
   * hugepages= command line does). Without it both pools are unlimited
   * (nr_overcommit_hugepages unlimited, no reservations: the model's default).
   * With it, a size not named has 0 pages.
   */
  hugepages?: { "2M"?: number; "1G"?: number };
}

export interface SpawnOptions {
  uid?: number;
  caps?: string[];
  /** RLIMIT_MEMLOCK in bytes; default 8 MiB as on current distributions. */
  rlimitMemlock?: bigint;
  /**
   * The memory of a real process (the exec bridge): the new process's
   * address space is that process's, not simulated memory (ForeignMm).
   */
  foreignMemory?: ForeignMemory;
}

const GIB = 1n << 30n;

/**
 * The simulated machine: memory, PCI devices, IOMMU, the kernel and its
 * processes. Construction is instant whatever the memory size (frames are
 * materialized when written).
 */
export class Machine implements KernelServices {
  readonly iommuKind: IommuKind;
  readonly phys: PhysMem;
  readonly frames: FrameAllocator;
  readonly faults = new FaultInject();
  readonly vfs = new Vfs();
  readonly tracer = new Tracer();
  readonly klog = new KernelLog();
  readonly ctx: KernelCtx;
  readonly debug: Debug;
  /** The IOMMU layer: groups, IommuDevices by BDF, drivers (src/iommu). */
  readonly iommu: IommuSubsystem;
  /** iommufd's globals: the live contexts (src/iommufd); undefined without CONFIG_IOMMUFD. */
  readonly iommufd: IommufdGlobals | undefined;
  readonly pciConfig: readonly PciDeviceConfig[];
  /** The PCI bus: functions by BDF, with their DMA engines (src/hw). */
  readonly pci: PciBus;
  /** VFIO: driver binding, /dev/vfio nodes, group/container/cdev files (src/vfio). */
  readonly vfio: VfioCore;
  /** The PCI core's SR-IOV: PFs' sriov_* sysfs files, VFs added and removed (drivers/pci/iov.c). */
  readonly iov: PciIov;
  /** The options this machine was built with (a recorder writes them back out). */
  readonly options: Readonly<MachineOptions>;
  private readonly mmGlue: MmGlue;
  private readonly processes = new Map<number, Process>();
  private nextPid = 100;

  constructor(opts: MachineOptions = {}) {
    this.options = { ...opts };
    this.iommuKind = opts.iommu ?? "amd";
    if (!isOptionValue("iommu", this.iommuKind))
      throw new Error(badValue("iommu", "iommu kind", this.iommuKind));
    const mem = opts.memoryBytes ?? 4n * GIB;
    if (mem < 64n << 20n) throw new Error("memoryBytes must be at least 64 MiB");
    if (mem > 1n << 44n) throw new Error("memoryBytes above 16 TiB is not modelled");
    this.phys = new PhysMem(...ramLayout(mem, this.iommuKind === "spapr"));
    const seed = opts.seed ?? 1;
    this.frames = new FrameAllocator(this.phys, seed, this.faults);
    this.tracer.enabled = opts.trace ?? false;
    const params = { ...PARAM_DEFAULTS } as Record<ParamName, ParamValue>;
    for (const [k, v] of Object.entries(opts.params ?? {})) {
      if (!isParamName(k)) throw new Error(`unknown module parameter ${k}`);
      const pv = parseParam(k, v as ParamValue);
      if (pv === undefined) throw new Error(`bad value for ${k}`);
      params[k] = pv;
    }
    this.pciConfig = opts.pci ?? [{ bdf: "0000:00:04.0", kind: "memcpy" }];
    this.ctx = {
      phys: this.phys,
      frames: this.frames,
      faults: this.faults,
      vfs: this.vfs,
      klog: this.klog,
      kconfig: resolveKconfig(opts.kconfig ?? {}, this.iommuKind === "spapr"),
      params,
      profile: opts.kernel ?? "latest",
      noiommuRevision: opts.noiommuRevision ?? "v9",
      iommuKind: this.iommuKind,
      seed,
      dmaLog: new DmaLog(),
      domainIds: { next: 1 },
    };
    if (!isOptionValue("kernel", this.ctx.profile))
      throw new Error(badValue("kernel", "kernel profile", this.ctx.profile));
    if (!isOptionValue("noiommuRevision", this.ctx.noiommuRevision))
      throw new Error(badValue("noiommuRevision", "noiommu revision", this.ctx.noiommuRevision));
    this.mmGlue = new MmGlue(this.ctx);
    this.bootHugetlb(opts.hugepages);
    this.iommu = createIommuSubsystem(this.ctx, this.iommuKind, [...this.pciConfig], { spapr: opts.spapr });
    this.iommufd = registerIommufd(this.ctx, this.iommu);
    this.pci = new PciBus(this.phys, this.ctx.dmaLog);
    for (const d of this.pciConfig) this.pci.add(d).iommu = this.iommu.device(d.bdf) ?? null;
    addPciSysfs(this.vfs, this.pci);
    addIntelDebugfs(this.vfs, this.iommu, this.phys);
    this.pci.sanitizer.oracle = this.mmGlue.pages;
    const sanitizer = this.pci.sanitizer;
    this.mmGlue.pages.onUnpin = (pfn, n) => sanitizer.noteUnpin(pfn, n);
    this.iov = new PciIov({
      bus: this.pci,
      vfs: this.vfs,
      iommu: this.iommu,
      phys: this.phys,
      klog: this.klog,
      vfio: () => this.vfio,
    });
    const iov = this.iov;
    this.vfio = new VfioCore({
      ctx: this.ctx,
      iommu: this.iommu,
      pciFunction: (bdf) => this.pci.get(bdf),
      pciFunctions: () => this.pci.all(),
      pciEnableSriov: (pf, n) => iov.enable(pf, n),
      pciDisableSriov: (pf) => iov.disable(pf),
      pciNumVf: (fn) => iov.numVf(fn),
      pciIsPhysfn: (fn) => iov.isPhysfn(fn),
    });
    this.mmGlue.onMmExit = (mm) => this.vfio.mmExit(mm);
    this.registerModuleParams();
    const iommufd = this.iommufd;
    // Every subsystem's counters and invariant checks, typed, in boot order.
    const sources: DebugSources = {
      // (Object.assign, not spreads: four spreads cost V8 ~10 µs, and the fuzzer reads these every step)
      counters: () => {
        const out: Record<string, number> = Object.assign({}, this.mmGlue.counters(), this.iommu.counters());
        if (iommufd !== undefined) Object.assign(out, iommufdCounters(iommufd));
        Object.assign(out, this.vfio.counters());
        out.openFiles = this.openFiles();
        out.processes = this.processes.size;
        return out;
      },
      invariants: (_changedOnly: boolean) => [],
    };
    this.debug = new Debug(this, this.mmGlue.pages, sources);
    const fc = this.debug.counters();
    const poolFree = () => this.poolFreeFrames();
    const bootOther = fc.usedFrames - fc.ptFrames - poolFree();
    const view = {
      ctx: this.ctx,
      pages: this.mmGlue.pages,
      users: this.mmGlue.users,
      tasks: () => [...this.processes.values()].map((p) => p.task),
      counters: () => this.debug.counters(),
      vfioType1PinnedPages: () => this.vfio.counters().vfioType1PinnedPages ?? 0,
      // free hugetlb pool pages are the kernel's too, and the pool may grow or shrink at run time
      get bootOtherFrames() {
        return bootOther + poolFree();
      },
      vfioBackends: () => this.vfio.containerBackends(),
      iommufdContexts: () => this.iommufd?.contexts ?? [],
      vfioPreregions: () => this.vfio.preregions(),
      vfioPreregCharged: (mm: MmStruct) => this.vfio.mmIommu.charged(mm),
      domains: () => this.iommu.liveDomains(),
      sanitizerOracle: () => this.pci.sanitizer.oracle,
      dmaLog: this.ctx.dmaLog,
      translated: (bdf: string) =>
        this.pci.get(bdf)?.iommu !== null && this.pci.get(bdf)?.iommu !== undefined,
      dmaChecked: { n: 0 },
    };
    const named = (name: string, found: string[]) => found.map((v) => `${name}: ${v}`);
    sources.invariants = (changedOnly) => [
      ...named("iommu", this.iommu.checkInvariants(changedOnly)),
      ...(iommufd === undefined ? [] : named("iommufd", iommufdInvariants(iommufd))),
      ...named("machine", checkMachineInvariants(view)),
      ...named("hugetlb", this.mmGlue.pages.hugetlbInvariants()),
    ];
  }

  get kconfig() {
    return this.ctx.kconfig;
  }

  /** Like writing the BDF to /sys/bus/pci/drivers/<driver>/bind: 0 or -errno (the probe's). */
  bindDriver(bdf: string, driver: string): number {
    const ret = this.vfio.bindDriver(bdf, driver);
    this.tracer.op({ pid: 0, call: "bind_driver", args: [bdf, driver], ret });
    return ret;
  }

  /** Like writing the BDF to the bound driver's unbind file: 0 or -errno. */
  unbindDriver(bdf: string): number {
    const ret = this.vfio.unbindDriver(bdf);
    this.tracer.op({ pid: 0, call: "unbind_driver", args: [bdf], ret });
    return ret;
  }

  /** A new process. Default: uid 1000, no capabilities, RLIMIT_MEMLOCK 8 MiB. */
  spawn(opts: SpawnOptions = {}): Process {
    const cred: Cred = {
      uid: opts.uid ?? 1000,
      caps: new Set(opts.caps ?? []),
      rlimitMemlock: opts.rlimitMemlock ?? 8n << 20n,
    };
    if (cred.rlimitMemlock < 0n || cred.rlimitMemlock > RLIM_INFINITY) throw new Error("bad rlimitMemlock");
    const mm =
      opts.foreignMemory === undefined ? undefined : this.mmGlue.newForeignMm(cred, opts.foreignMemory);
    const p = new Process(this, this.nextPid++, cred, mm);
    this.processes.set(p.pid, p);
    this.tracer.op({
      pid: p.pid,
      call: "spawn",
      args: [cred.uid, cred.rlimitMemlock],
      caps: [...cred.caps],
      ret: 0,
    });
    return p;
  }

  /**
   * A real process's shmem file (a memfd) as a file of this machine (the
   * exec bridge's IOMMU_IOAS_MAP_FILE); `key` names it as /proc/PID/maps
   * does ("MAJ:MIN INODE"), so its pages are those of the program's
   * MAP_SHARED mappings of it.
   */
  newForeignMemFile(name: string, file: ForeignFile, key: string): ForeignMemFile {
    return new ForeignMemFile(this.mmGlue.pages, name, file, this.mmGlue.foreignShared, key);
  }

  /** Like writing /sys/module/<mod>/parameters/<name>. 0 or -errno. */
  setParam(name: string, value: ParamValue | string): number {
    const ret = this.applyParam(name, value);
    this.tracer.op({ pid: 0, call: "set_param", args: [name], value, ret });
    return ret;
  }

  /** setParam without the trace op: the sysfs write is already a traced write(2). */
  private applyParam(name: string, value: ParamValue | string): number {
    if (!isParamName(name)) return -ENOENT;
    const v = parseParam(name, value);
    if (v === undefined) return -EINVAL;
    this.ctx.params[name] = v;
    return 0;
  }

  getParam(name: ParamName): ParamValue {
    return this.ctx.params[name];
  }

  listDir(path: string): string[] {
    return this.vfs.listDir(path);
  }

  readFile(path: string): string {
    return this.vfs.readFile(path);
  }

  liveProcesses(): Process[] {
    return [...this.processes.values()];
  }

  // --- KernelServices -----------------------------------------------------

  newMm(cred: Cred) {
    return this.mmGlue.newMm(cred);
  }
  mmMmap(
    task: Task,
    addr: bigint,
    len: bigint,
    prot: number,
    flags: number,
    backing: unknown,
    off: bigint,
  ): bigint {
    return this.mmGlue.mmap(task, addr, len, prot, flags, backing, off);
  }
  mmMunmap(task: Task, va: bigint, len: bigint): number {
    return this.mmGlue.munmap(task, va, len);
  }
  mmRelease(task: Task): void {
    this.mmGlue.release(task);
  }

  userRead(task: Task, va: bigint, len: number): Uint8Array {
    return this.mmGlue.read(task, va, len);
  }
  userWrite(task: Task, va: bigint, bytes: Uint8Array): number {
    return this.mmGlue.write(task, va, bytes);
  }
  newMemfd(name: string, flags: number): KFile {
    return this.mmGlue.newMemfd(name, flags);
  }
  truncate(file: KFile, len: bigint): number {
    return this.mmGlue.truncate(file, len);
  }
  openAttr(path: string, flags: number): KFile {
    const node = this.vfs.lookup(path);
    if (node === undefined || node.type === "chr") return fail(ENOENT, `${path} does not exist`);
    return sysfsAttrFile(this.vfs, path, flags);
  }
  processExited(p: Process): void {
    this.processes.delete(p.pid);
  }
  forkProcess(parent: Process): Process {
    // copy_process order: the task, then the fd table (dup_fd), then the mm (dup_mm); the pid last.
    if (this.faults.hit("dup_task_struct")) fail(ENOMEM, "fork: cannot allocate the child's task_struct");
    const pc = parent.cred;
    const cred: Cred = { uid: pc.uid, caps: new Set(pc.caps), rlimitMemlock: pc.rlimitMemlock };
    if (this.faults.hit("dup_fd")) fail(ENOMEM, "fork: cannot copy the fd table (dup_fd)");
    // each fd of the child is a new reference to the same open file description
    const fds = parent.task.fds.map((f) => f?.get());
    let mm: ReturnType<MmGlue["fork"]>;
    try {
      mm = this.mmGlue.fork(parent.task, cred);
    } catch (e) {
      for (const f of fds) f?.put();
      throw e;
    }
    const child = new Process(this, this.nextPid++, cred, mm);
    for (let fd = 0; fd < fds.length; fd++) child.task.fds[fd] = fds[fd];
    this.processes.set(child.pid, child);
    return child;
  }

  // --- internals ----------------------------------------------------------

  private openFiles(): number {
    let n = 0;
    for (const p of this.processes.values()) n += p.task.openFileCount();
    return n;
  }

  /** Frames on the hugetlb pools' free lists. */
  private poolFreeFrames(): number {
    const p = this.mmGlue.pages;
    return p.h2m.free * 512 + p.h1g.free * 262144;
  }

  /**
   * The hugetlb pools at boot (`hugepages` option) and their
   * /sys/kernel/mm/hugepages/hugepages-<size>kB/ attributes.
   */
  private bootHugetlb(cfg: MachineOptions["hugepages"]): void {
    const pages = this.mmGlue.pages;
    if (cfg !== undefined) {
      for (const k of Object.keys(cfg))
        if (k !== "2M" && k !== "1G") throw new Error(`unknown hugepages size ${k}`);
      // gigantic pages first, as boot-time allocation does: 2 MiB pages would fragment the gigabytes
      for (const [h, n] of [
        [pages.h1g, cfg["1G"] ?? 0],
        [pages.h2m, cfg["2M"] ?? 0],
      ] as const) {
        if (!Number.isSafeInteger(n) || n < 0) throw new Error(`bad hugepages count ${n}`);
        h.setMaxHugePages(n);
      }
    }
    for (const h of [pages.h2m, pages.h1g]) {
      for (const a of HSTATE_ATTRS) {
        const path = `/sys/kernel/mm/hugepages/${h.name}/${a}`;
        const writable = a === "nr_hugepages" || a === "nr_overcommit_hugepages";
        this.vfs.add(path, {
          type: "attr",
          read: () => h.attr(a),
          write: writable
            ? (v) => {
                const r = writeHstateAttr(h, a, v);
                if (r < 0) fail(-r, `${path}: not a number (kstrtoul)`);
              }
            : undefined,
        });
      }
    }
  }

  private registerModuleParams(): void {
    for (const name of Object.keys(PARAM_DEFAULTS) as ParamName[]) {
      const [mod, param] = name.split(".");
      this.vfs.add(`/sys/module/${mod}/parameters/${param}`, {
        type: "attr",
        read: () => {
          const v = this.ctx.params[name];
          return typeof v === "boolean" ? (v ? "Y\n" : "N\n") : `${v}\n`;
        },
        write: (s) => {
          if (this.applyParam(name, s) !== 0) fail(EINVAL, `invalid value for ${name}`);
        },
      });
    }
  }
}

/**
 * RAM as x86 firmware lays it out: below 3 GiB, then the PCI/MMIO hole up
 * to 4 GiB (where the MSI window 0xfee00000 lives), then the rest above
 * 4 GiB. PPC64 machines have one flat range.
 */
function ramLayout(bytes: bigint, flat: boolean): [bigint, [number, number][]] {
  const pages = (b: bigint) => Number(b >> BigInt(PAGE_SHIFT));
  if (flat || bytes <= 3n * GIB) return [bytes, [[0, pages(bytes)]]];
  const high = bytes - 3n * GIB;
  return [
    4n * GIB + high,
    [
      [0, pages(3n * GIB)],
      [pages(4n * GIB), pages(4n * GIB + high)],
    ],
  ];
}
