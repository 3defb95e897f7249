/**
 * The web view's model: what the page shows at each step of a run, built
 * from the public API and m.debug only (no private fields). Plain data, so
 * the DOM code only renders and the unit tests check it without a browser.
 */

import type { TceWindowDebugInfo } from "../../index.js";

/** One system call of a step, strace-style, with what `explain` says when it failed. */
export interface CallView {
  seq: number;
  pid: number;
  /** `ioctl(4, IOMMU_IOAS_MAP, {...}) = 0`, structs decoded. */
  text: string;
  /** For a pread/pwrite on a VFIO device fd: the region, register and value ("BAR0 + 0x90 (CHAINADDR) ← 0x100000"). */
  note?: string;
  ok: boolean;
  errno?: string;
  /** The rule that produced the errno (the model's reason). */
  reason?: string;
  /** What the errno generally means on these interfaces (explain's table). */
  meaning?: string;
  /** The step asked for this errno. */
  expected?: boolean;
}

export interface AreaView {
  sig: string;
  iova: bigint;
  last: bigint;
  /** "rw", "r-", ... (IOMMU_READ / IOMMU_WRITE). */
  perms: string;
  /** "user VA 0x7f..." or "file offset 0x0". */
  source: string;
  /** Pages this mapping pinned; undefined when it pins nothing itself (sPAPR v2: pre-registered memory). */
  pinnedPages?: number;
  /** The pinned pfns behind it, as runs (m.debug.ioas()). */
  runs: { pfn: number; n: number }[];
}

export interface RangeView {
  start: bigint;
  last: bigint;
  label: string;
}

/**
 * An IOVA space drawn as an address line: an iommufd IOAS, or a legacy
 * VFIO container's own (type1: its DMA mappings; sPAPR: its DMA windows
 * and the TCEs in them).
 */
export interface IoasView {
  key: string;
  kind: "ioas" | "type1" | "spapr";
  /** A DOM-safe id for this space. */
  anchor: string;
  pid: number;
  fd: number;
  /** IOAS id (0 for a container). */
  id: number;
  /** One line under the heading: what this space is. */
  about: string;
  areas: AreaView[];
  reserved: RangeView[];
  /** IOAS: IOAS_ALLOW_IOVAS ranges; type1: the usable IOVA ranges; sPAPR: the DMA windows. */
  allowed: RangeView[];
  /** What the allowed ranges are, for the legend and the table. */
  allowedName: string;
  /** sPAPR v2: the pre-registered memory (pinned up front; TCEs only point into it). */
  prereg?: { sig: string; ua: bigint; size: bigint; tces: number; runs: { pfn: number; n: number }[] }[];
}

/** One DMA window of an sPAPR TCE table: m.debug's window facts, its entries as a tree. */
export interface WindowView
  extends Pick<
    TceWindowDebugInfo,
    "slot" | "start" | "last" | "pageShift" | "levels" | "itOffset" | "itSize" | "levelSize" | "rootPhys"
  > {
  /** The window's top-level entries (their IOVAs are bus addresses). */
  roots: PteView[];
}

/** One page-table entry, decoded from the dump's raw bytes and text. */
export interface PteView {
  sig: string;
  level: number;
  index: number;
  tablePhys: bigint;
  raw: bigint;
  text: string;
  kind: "table" | "leaf" | "other";
  /** Leaf: output address; table: the next table's address. */
  pa?: bigint;
  /** Leaf size ("4K", "2M"). */
  size?: string;
  /** "read", "write", "read write", or "none". */
  perms: string;
  flags: string[];
  /** The IOVA range the entry covers (from its position in the tree). */
  iovaStart: bigint;
  iovaLast: bigint;
  children: PteView[];
}

/** An IOMMU page table: an iommufd HWPT, a type1 container's domain, or an sPAPR container's TCE tables. */
export interface HwptView {
  key: string;
  kind: "hwpt" | "type1" | "spapr";
  anchor: string;
  pid: number;
  fd: number;
  id: number;
  /** One line under the heading: whose table this is and who is attached. */
  about: string;
  /** The bytes of an entry as memory holds them: TCEs are big-endian. */
  bigEndian: boolean;
  format?: string;
  rootPhys?: bigint;
  topLevel?: number;
  /** Top-level entries (all windows' for sPAPR, ascending). */
  roots: PteView[];
  /** sPAPR: the table per DMA window. */
  windows?: WindowView[];
  entryCount: number;
  error?: string;
}

/** A run of pinned frames with the same pin count and owners. */
export interface PinView {
  sig: string;
  pfn: number;
  count: number;
  pins: number;
  /** Folio order (0: 4 KiB pages, 9: 2 MiB, 18: 1 GiB). */
  order: number;
  owners: string[];
}

export interface VmaView {
  sig: string;
  start: bigint;
  end: bigint;
  /** "rw-p", like /proc/pid/maps. */
  perms: string;
  pageSize: number;
  file: string | null;
  locked: boolean;
}

export interface ProcView {
  pid: number;
  name: string;
  vmas: VmaView[];
}

export interface DeviceView {
  bdf: string;
  /** What the device is: "memcpy" (the model's test device), "ioat" (an Intel IOAT DMA channel), ... */
  kind: string;
  behindIommu: boolean;
  /** iommufd bindings: "pid 100 fd 4: dev 1 -> HWPT 3". */
  bindings: string[];
}

export interface DmaView {
  /** Position in m.debug.dmaLog(). */
  n: number;
  /** The step (StepView.n) whose calls made it. */
  step: number;
  device: string;
  op: "read" | "write";
  addr: bigint;
  len: number;
  result: "ok" | "fault";
  fault?: string;
  finding?: string;
}

export interface StepView {
  /** Position in the run: 0 is the machine as booted (before any step), then the scenario's steps. */
  n: number;
  where: string;
  label: string;
  /** A few words after the label in the step list (the register a pread/pwrite touched). */
  detail?: string;
  kind: string;
  line?: number;
  note?: string;
  calls: CallView[];
  /** What the step returned (entries, text, bytes, device registers, captured variables). */
  result: string[];
  /** The expectation that did not hold at this step. */
  failure?: string;
  ioas: IoasView[];
  hwpts: HwptView[];
  pins: PinView[];
  procs: ProcView[];
  devices: DeviceView[];
  /** Every DMA so far; those with step === n are this step's. */
  dma: DmaView[];
  counters: Record<string, number>;
  /** sigs of things that are new or different since the previous step. */
  changed: Set<string>;
  /** What the previous step had that this one lost, in words. */
  removed: string[];
}

export interface ScenarioProblem {
  line?: number;
  message: string;
}

export interface RunView {
  file: string;
  name: string;
  description?: string;
  /** "amd, 4G, 1 PCI device". */
  machine: string;
  ok: boolean;
  /** The scenario did not parse: nothing ran. */
  problems: ScenarioProblem[];
  /** Why the run stopped early (failed expectation, scenario mistake, missing subsystem). */
  failure?: string;
  steps: StepView[];
}
