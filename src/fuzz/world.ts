// The two sides of model-based fuzzing: the real machine, driven only
// through the syscall contract, and a small reference model of the state
// that matters (open files and the fds naming them, iommufd contexts and
// their objects by id, each IOAS's areas, device bindings and attachments,
// legacy containers and their DMA mappings, memfds). Commands
// (cmd-*.ts) run on both and compare.
import { Machine, type MachineOptions, type Process, uapi } from "../index.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";

export const MAX_PROCS = 3;
/** Valid fixed IOVAs sit on this grid, inside every IOMMU's aperture (and sPAPR window 0), clear of reserved ranges. */
export const IOVA_BASE = 0x1000000n;
export const IOVA_SLOT = 0x4000n;
export const IOVA_SLOTS = 64;
/** The IOVA of grid slot s (modulo the grid). */
export const slotIova = (s: number) => IOVA_BASE + BigInt(s % IOVA_SLOTS) * IOVA_SLOT;
export { PAGE };

export const PROT_R = uapi.PROT_READ;
export const PROT_W = uapi.PROT_WRITE;

/** The machines a campaign rotates through (docs/reliability.md). */
export const MACHINE_KINDS = ["amd", "intel", "mock", "noiommu", "spapr", "compat", "k612"] as const;
export type MachineKind = (typeof MACHINE_KINDS)[number];

/** Devices 0 and 1 are used through their cdevs, 2 and 3 through their groups (one group each). */
export const CDEV_DEVS = [0, 1];
export const GROUP_DEVS = [2, 3];
export const bdfOf = (d: number) => `0000:00:0${4 + d}.0`;

export interface KindSpec {
  opts: MachineOptions;
  /** Capabilities every process gets. */
  caps: string[];
  /** The cdev node of device d. */
  cdev(d: number): string;
  /** Devices with a group path (none on noiommu: the cdev noiommu series is what is fuzzed there). */
  groupDevs: number[];
  /** What /dev/vfio/vfio is: the legacy container (type1 or sPAPR), iommufd's compat container, or absent. */
  container: "type1" | "spapr" | "compat" | "none";
  /** Devices DMA with physical addresses (GET_PA). */
  noiommu: boolean;
  /** IOMMUFD_TEST with IOMMU_TEST_CMD (access objects). */
  selftest: boolean;
  /** HWPT_ALLOC with DIRTY_TRACKING succeeds. */
  dirty: boolean;
  /** DMA writes set IOPTE dirty bits (the selftest mock has no hardware: only IOMMU_TEST_OP_DIRTY does). */
  hwDirty: boolean;
  /** A paging domain's aperture when it does not start at 0 (a new domain reserves what is outside). */
  aperture?: [bigint, bigint];
}

const NOIOMMU_REVISIONS = ["v4", "v7", "v9"] as const;

export function kindSpec(kind: MachineKind, seed: number): KindSpec {
  const base: KindSpec = {
    opts: { iommu: "amd" },
    caps: [],
    cdev: (d) => `/dev/vfio/devices/vfio${d}`,
    groupDevs: GROUP_DEVS,
    container: "type1",
    noiommu: false,
    selftest: false,
    dirty: true,
    hwDirty: true,
  };
  switch (kind) {
    case "amd":
      return base;
    case "intel":
      return { ...base, opts: { iommu: "intel" } };
    case "mock":
      return {
        ...base,
        opts: { iommu: "mock", kconfig: { IOMMUFD_TEST: true } },
        selftest: true,
        hwDirty: false,
        aperture: [1n << 24n, (1n << 31n) - 1n],
      };
    case "k612":
      return { ...base, opts: { iommu: "amd", kernel: "6.12" } };
    case "compat":
      return {
        ...base,
        opts: { iommu: "amd", kconfig: { VFIO_CONTAINER: false, IOMMUFD_VFIO_CONTAINER: true } },
        container: "compat",
      };
    case "spapr":
      return { ...base, opts: { iommu: "spapr" }, container: "spapr", dirty: false };
    case "noiommu":
      return {
        ...base,
        opts: {
          iommu: "none",
          params: { "vfio.enable_unsafe_noiommu_mode": true },
          noiommuRevision: NOIOMMU_REVISIONS[Math.abs(seed) % 3],
        },
        caps: ["CAP_SYS_RAWIO"],
        cdev: (d) => `/dev/vfio/devices/noiommu-vfio${d}`,
        groupDevs: [],
        container: "none",
        noiommu: true,
        dirty: false,
      };
  }
}

/** Bytes of pages an area uses: from which source. */
export interface MPages {
  id: number;
  /** Anonymous memory of a process at va, or a memfd from byte `start`. */
  va: bigint;
  proc: number;
  memfd?: number;
  /** A file that is not a memfd (its key): MAP_FILE takes it, pinning it fails (EINVAL). */
  other?: number;
  start: bigint;
  len: bigint;
  /** Mapped WRITEABLE: a writable COPY of it is refused (EPERM). */
  writable: boolean;
}

export interface MArea {
  iova: bigint;
  len: bigint;
  prot: number;
  pages: MPages;
  /** Byte offset of the area's first byte inside its pages. */
  off: bigint;
}

export interface MIoas {
  areas: MArea[];
  /** IOMMU_IOAS_ALLOW_IOVAS ranges ([start, last]); empty: everything allowed. */
  allowed: [bigint, bigint][];
  hugeOff: boolean;
}

export type MObj =
  | { kind: "IOAS"; ioas: MIoas }
  | { kind: "DEVICE"; dev: number }
  | {
      kind: "HWPT";
      ioas: number;
      auto: boolean;
      dirtyCap: boolean;
      tracking: boolean;
      /** IOVA pages (page numbers) a DMA wrote while tracking was on. */
      dirty: Set<number>;
    }
  | { kind: "ACCESS"; ioas: number; file: number; items: Map<number, { iova: bigint; len: bigint }> };

/** An iommufd context (lives while a file holds it: its own, a bound device, a group set to it). */
export interface MCtx {
  key: number;
  proc: number;
  objs: Map<number, MObj>;
  /** The compat IOAS id (groups set to this context use it). */
  compatIoas?: number;
  /** RLIMIT_MODE 1 (per mm) instead of per user. */
  mmMode: boolean;
  /** Type1 mode chosen by VFIO_SET_IOMMU on the compat container (1 or 3), 0 before. */
  compatType: number;
  /** The context's own file is open (otherwise only references keep it). */
  fileOpen: boolean;
}

export interface MDma {
  iova: bigint;
  len: bigint;
  prot: number;
  va: bigint;
}

/** A legacy container (/dev/vfio/vfio of VFIO_CONTAINER). */
export interface MContainer {
  key: number;
  proc: number;
  groups: number[];
  /** VFIO_SET_IOMMU type, 0 before. */
  type: number;
  dmas: MDma[];
  /** sPAPR v2: pre-registered regions and the TCE windows created. */
  prereg: { va: bigint; len: bigint }[];
  windows: { start: bigint; size: bigint; shift: number }[];
  fileOpen: boolean;
}

export interface MDev {
  bdf: string;
  /** cdev binding: the device file, its context and device id. */
  bound?: { file: number; ctx: number; devid: number };
  /** Attached HWPT id (cdev) in the bound context. */
  attached?: number;
  /** Group path: device files open (GET_DEVICE_FD), and what the compat path bound. */
  groupFiles: number[];
  compatBound?: { ctx: number; devid: number; hwpt: number };
  /** MSI eventfd file and the completions signalled but not read. */
  msi?: number;
}

export interface MGroup {
  dev: number;
  /** The group file (one opener). */
  file?: number;
  container?: { kind: "legacy"; c: number } | { kind: "iommufd"; ctx: number };
}

export interface MMemfd {
  key: number;
  size: bigint;
  /** File references: fds plus pages objects. */
  refs: number;
}

export type MFile =
  | { kind: "iommufd"; ctx: number }
  | { kind: "cdev"; dev: number }
  | { kind: "group"; group: number }
  | { kind: "container"; c: number }
  | { kind: "gdev"; dev: number }
  | { kind: "memfd"; mf: number }
  | { kind: "eventfd"; count: bigint }
  | { kind: "access"; ctx: number; id: number }
  /** An iommufd for random, unchecked ioctls: its state is not modelled. */
  | { kind: "chaos" };

export interface MProc {
  alive: boolean;
  /** fd -> file key. */
  fds: Map<number, number>;
  /** Live anonymous buffers the process mapped (whole mappings). */
  bufs: { va: bigint; len: bigint; locked: boolean }[];
  /** BAR0 mmaps: va and the device file they hold. */
  bars: { va: bigint; file: number }[];
}

export interface Model {
  kind: MachineKind;
  spec: KindSpec;
  procs: MProc[];
  files: Map<number, { f: MFile; refs: number }>;
  ctxs: Map<number, MCtx>;
  containers: Map<number, MContainer>;
  memfds: Map<number, MMemfd>;
  devs: MDev[];
  groups: Map<number, MGroup>;
  nextKey: number;
  steps: number;
  /** GET_PA results (noiommu): physical addresses the device may be given. */
  pas: bigint[];
  /** Outcomes seen, by label (coverage of the interesting paths). */
  seen: Record<string, number>;
}

export function note(m: Model, label: string): void {
  m.seen[label] = (m.seen[label] ?? 0) + 1;
}

export interface Real {
  m: Machine;
  procs: Process[];
  /** Per process: a faulted-in area for ioctl structs. */
  argVa: bigint[];
  /** Counters after boot, before any process. */
  baseline: Record<string, number>;
  /** BAR0 and config region offsets of each device file, by model file key. */
  regions: Map<string, { cfg: bigint; bar0: bigint }>;
  /** DMA log entries already checked. */
  dmaSeen: number;
}

export function newWorld(seed: number, kind: MachineKind = "amd"): { model: Model; real: Real } {
  const spec = kindSpec(kind, seed);
  const m = new Machine({
    memoryBytes: 512n << 20n,
    seed,
    pci: [0, 1, 2, 3].map((d) => ({ bdf: bdfOf(d), kind: "memcpy" as const, group: d })),
    ...spec.opts,
  });
  for (let d = 0; d < 4; d++) {
    const rc = m.bindDriver(bdfOf(d), "vfio-pci");
    if (rc !== 0) throw new Error(`cannot bind ${bdfOf(d)}: ${rc}`);
  }
  const baseline = m.debug.counters();
  const model: Model = {
    kind,
    spec,
    procs: [],
    files: new Map(),
    ctxs: new Map(),
    containers: new Map(),
    memfds: new Map(),
    devs: [0, 1, 2, 3].map((d) => ({ bdf: bdfOf(d), groupFiles: [] })),
    groups: new Map(spec.groupDevs.map((d) => [d, { dev: d }])),
    nextKey: 1,
    steps: 0,
    pas: [],
    seen: {},
  };
  return { model, real: { m, procs: [], argVa: [], baseline, regions: new Map(), dmaSeen: 0 } };
}

/** The lowest fd number free in the model's table (what open() must return). */
export function lowestFreeFd(p: MProc): number {
  let fd = 0;
  while (p.fds.has(fd)) fd++;
  return fd;
}

/** The lowest free object id of a context (xa_alloc with XA_FLAGS_ALLOC1). */
export function lowestFreeId(c: MCtx): number {
  let id = 1;
  while (c.objs.has(id)) id++;
  return id;
}

export function overlaps(a: bigint, alen: bigint, b: bigint, blen: bigint): boolean {
  return a < b + blen && b < a + alen;
}

/** Is [va, va+len) covered by live buffers of the process (adjacent mappings join)? */
export function backed(p: MProc | undefined, va: bigint, len: bigint): boolean {
  if (p === undefined || !p.alive) return false;
  let at = va;
  const end = va + len;
  for (;;) {
    const b = p.bufs.find((x) => at >= x.va && at < x.va + x.len);
    if (b === undefined) return false;
    at = b.va + b.len;
    if (at >= end) return true;
  }
}

// --- syscalls through the contract ------------------------------------------

export interface Ret {
  rc: number;
  out: uapi.StructValues;
}

/** ioctl with the struct in the process's argument page; `size` may differ from the struct's. */
export function sioctl(
  real: Real,
  proc: number,
  fd: number,
  req: number,
  def: uapi.StructDef,
  v: uapi.StructInput,
  sizeField: "size" | "argsz" | null = "size",
  size = def.size,
): Ret {
  const p = real.procs[proc];
  const va = real.argVa[proc];
  const bytes = uapi.encode(
    def,
    sizeField === null ? v : { [sizeField]: size, ...v },
    Math.max(size, def.size, 4),
  );
  if (p.writeMemory(va, bytes) !== 0) throw new Error("argument page write failed");
  const rc = p.ioctl(fd, req, va);
  const back = p.readMemory(va, bytes.length);
  if (typeof back === "number") throw new Error("argument page read failed");
  return { rc, out: uapi.decode(def, back) };
}

export function rawIoctl(real: Real, proc: number, fd: number, req: number, bytes: Uint8Array): number {
  const p = real.procs[proc];
  const va = real.argVa[proc];
  if (p.writeMemory(va, bytes.subarray(0, 8192)) !== 0) throw new Error("argument page write failed");
  return p.ioctl(fd, req, va);
}

export function le(v: bigint | number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = BigInt(v);
  for (let i = 0; i < n; i++) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return b;
}
