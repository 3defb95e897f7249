/**
 * A scenario: a machine, its processes, and a list of steps with
 * expectations (docs/scenario-format.md). Values inside steps stay as
 * written (numbers, "2M", "$var + 4K", flag lists) and are read when the
 * step runs, because they may use variables captured by earlier steps.
 */
export interface Scenario {
  name: string;
  description?: string;
  file?: string;
  machine: MachineSpec;
  processes: ProcessSpec[];
  steps: Step[];
}

export interface MachineSpec {
  iommu?: string;
  memory?: unknown;
  pci?: PciSpec[];
  kconfig?: Record<string, boolean>;
  params?: Record<string, boolean | number | string>;
  kernel?: string;
  noiommuRevision?: string;
  seed?: number;
  /** PPC64: platform flavour and TCE page sizes (MachineOptions.spapr). */
  spapr?: { platform?: string; pgsizes?: number[] };
  /** Hugetlb pools allocated at boot: { "2M": n, "1G": n } (MachineOptions.hugepages). */
  hugepages?: Record<string, number>;
}

export interface PciSpec {
  bdf: string;
  kind: string;
  group?: number;
  noIommu?: boolean;
  /** What the device's IOMMU driver reads: { pasid, noDirty, noEnforceCoherency, hugeIova }. */
  flags?: Record<string, boolean>;
}

export interface ProcessSpec {
  name: string;
  uid?: number;
  caps?: string[];
  rlimitMemlock?: unknown;
}

export interface Step {
  /** 1-based position in the file's step list (repeat bodies count inside their parent). */
  index: number;
  /** Line in the scenario file, when parsed from YAML. */
  line?: number;
  kind: StepKind;
  /** The value under the kind key (`ioctl: IOMMU_IOAS_MAP` → "IOMMU_IOAS_MAP"). */
  body: unknown;
  /** Every other key of the step as written (fd, arg, len, ...). */
  args: Record<string, unknown>;
  process?: string;
  /** Capture the step's main result into a variable. */
  as?: string;
  /** Capture named output fields: { var: field }. */
  capture?: Record<string, string>;
  expect?: Record<string, unknown>;
  /** One or a few lines saying what the step shows (demos print it). */
  note?: string;
  /** Nested steps (repeat). */
  steps?: Step[];
}

/** System calls, typed helpers that expand into system calls, machine operations and checks. */
export const SYSCALL_KINDS = [
  "open",
  "close",
  "ioctl",
  "mmap",
  "munmap",
  "memfd_create",
  "ftruncate",
  "pread",
  "pwrite",
  "read",
  "write",
  "eventfd",
  "dup",
  "exit",
] as const;

export const HELPER_KINDS = [
  "ioas_alloc",
  "ioas_map",
  "ioas_unmap",
  "destroy",
  "bind_iommufd",
  "attach_pt",
  "device_dma",
] as const;

export const MACHINE_KINDS = [
  "bind_driver",
  "unbind_driver",
  "set_param",
  "read_memory",
  "write_memory",
  "read_phys",
  "list_dir",
  "read_file",
  "fail_nth",
] as const;

export const CHECK_KINDS = [
  "check_dma",
  "check_counters",
  "check_invariants",
  "check_taint",
  "say",
  "repeat",
] as const;

export type StepKind =
  | (typeof SYSCALL_KINDS)[number]
  | (typeof HELPER_KINDS)[number]
  | (typeof MACHINE_KINDS)[number]
  | (typeof CHECK_KINDS)[number];

export const STEP_KINDS: readonly StepKind[] = [
  ...SYSCALL_KINDS,
  ...HELPER_KINDS,
  ...MACHINE_KINDS,
  ...CHECK_KINDS,
];

/** Keys any step may carry besides its kind key and its own arguments. */
export const COMMON_KEYS = ["process", "as", "capture", "expect", "note"] as const;

/** The arguments each step kind accepts (besides the kind key and COMMON_KEYS). */
export const STEP_ARGS: Record<StepKind, readonly string[]> = {
  open: ["flags"],
  close: [],
  ioctl: ["fd", "arg", "argsz", "raw"],
  mmap: ["addr", "len", "prot", "flags", "fd", "off"],
  munmap: ["len"],
  memfd_create: ["flags"],
  ftruncate: ["len"],
  pread: ["len", "off"],
  pwrite: ["off", "data"],
  read: ["len"],
  write: ["data"],
  eventfd: ["flags"],
  dup: [],
  exit: [],
  ioas_alloc: [],
  ioas_map: ["ioas", "va", "length", "iova", "flags"],
  ioas_unmap: ["ioas", "iova", "length"],
  destroy: ["id"],
  bind_iommufd: ["iommufd"],
  attach_pt: ["pt"],
  device_dma: ["src", "dst", "len", "bus_master"],
  bind_driver: ["driver"],
  unbind_driver: [],
  set_param: ["value"],
  read_memory: ["len"],
  write_memory: ["data"],
  read_phys: ["len"],
  list_dir: [],
  read_file: [],
  fail_nth: [],
  check_dma: [],
  check_counters: [],
  check_invariants: [],
  check_taint: [],
  say: [],
  repeat: ["steps", "var"],
};

/** The expectation keys (docs/scenario-format.md, "Expectations"). */
export const EXPECT_KEYS = [
  "rc",
  "errno",
  "reason",
  "out",
  "data",
  "entries",
  "contains",
  "absent",
  "text",
  "any",
] as const;
