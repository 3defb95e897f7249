import { KERNEL_PROFILES, NOIOMMU_REVISIONS } from "../uapi/profiles.js";
import { IOMMU_KINDS } from "./kctx.js";
import type { MachineOptions } from "./machine.js";

/**
 * How one Machine option is reached by a user: its key in a scenario's
 * `machine:` block and its exec/serve command-line flag. A form that does
 * not exist says why. The example is a value in each form and the option
 * it must give: test/architecture/one-fact.test.ts feeds each through the
 * scenario parser and the flag parser and fails when one does not arrive.
 */
export interface MachineOptionDecl {
  /** The scenario key (docs/scenario-format.md), or null. */
  readonly scenario: string | null;
  /** The exec/serve flag (iommufd-sim exec --help), or null. */
  readonly flag: `--${string}` | null;
  /** Why a form is absent. */
  readonly why?: string;
  /** The allowed values, for an enumeration (the Machine, the parsers and the help text check against these). */
  readonly values?: readonly string[];
  /** The default when the option is not given. */
  readonly default: string;
  readonly example: {
    /** YAML text of the value under the scenario key. */
    readonly scenario?: string;
    /** The flag's arguments (a repeatable flag may be given more than once). */
    readonly flag?: readonly string[];
    /** The MachineOptions value both must produce. */
    readonly expect: unknown;
    /** What the flag gives, when it differs (text the Machine parses later). */
    readonly flagExpect?: unknown;
  };
}

/**
 * Every Machine option, declared once. `satisfies` makes the compiler
 * refuse an option of MachineOptions that is missing here, and a row here
 * that MachineOptions lacks.
 */
export const MACHINE_OPTIONS = {
  iommu: {
    scenario: "iommu",
    flag: "--iommu",
    values: IOMMU_KINDS,
    default: "amd",
    example: { scenario: "intel", flag: ["intel"], expect: "intel" },
  },
  memoryBytes: {
    scenario: "memory",
    flag: "--memory",
    default: "4G",
    example: { scenario: "8G", flag: ["8G"], expect: 8n << 30n },
  },
  pci: {
    scenario: "pci",
    flag: "--pci",
    default: "one memcpy device at 0000:00:04.0",
    example: {
      scenario: "[{ bdf: 0000:00:05.0, kind: memcpy }]",
      flag: ["0000:00:05.0=memcpy"],
      expect: [{ bdf: "0000:00:05.0", kind: "memcpy" }],
    },
  },
  kconfig: {
    scenario: "kconfig",
    flag: "--kconfig",
    default: "the model's defaults (docs/kconfig.md)",
    example: { scenario: "{ IOMMUFD_TEST: true }", flag: ["IOMMUFD_TEST=y"], expect: { IOMMUFD_TEST: true } },
  },
  params: {
    scenario: "params",
    flag: "--param",
    default: "the modules' defaults",
    example: {
      scenario: '{ "vfio.enable_unsafe_noiommu_mode": true }',
      flag: ["vfio.enable_unsafe_noiommu_mode=1"],
      expect: { "vfio.enable_unsafe_noiommu_mode": true },
      // a flag's value is text; the Machine parses it as the parameter's type
      flagExpect: { "vfio.enable_unsafe_noiommu_mode": "1" },
    },
  },
  kernel: {
    scenario: "kernel",
    flag: "--kernel",
    values: KERNEL_PROFILES,
    default: "latest",
    example: { scenario: "6.12", flag: ["6.12"], expect: "6.12" },
  },
  noiommuRevision: {
    scenario: "noiommuRevision",
    flag: "--noiommu-revision",
    values: NOIOMMU_REVISIONS,
    default: "v9",
    example: { scenario: "v4", flag: ["v4"], expect: "v4" },
  },
  seed: {
    scenario: "seed",
    flag: "--seed",
    default: "1",
    example: { scenario: "7", flag: ["7"], expect: 7 },
  },
  trace: {
    scenario: null,
    flag: "--trace",
    why: "a scenario does not choose tracing: the command does (iommufd-sim trace, run --trace)",
    default: "off",
    example: { flag: ["/tmp/iommufd-sim.trace"], expect: true },
  },
  spapr: {
    scenario: "spapr",
    flag: "--spapr",
    default: "powernv, TCE sizes 4K, 64K, 16M",
    example: {
      scenario: "{ platform: pseries, pgsizes: [12, 16] }",
      flag: ["platform=pseries", "pgsizes=12,16"],
      expect: { platform: "pseries", pgsizes: [12, 16] },
    },
  },
  hugepages: {
    scenario: "hugepages",
    flag: "--hugepages",
    default: "both pools unlimited",
    example: { scenario: '{ "2M": 4, "1G": 1 }', flag: ["2M=4,1G=1"], expect: { "2M": 4, "1G": 1 } },
  },
} as const satisfies { readonly [K in keyof Required<MachineOptions>]: MachineOptionDecl };

export type MachineOptionName = keyof typeof MACHINE_OPTIONS;

/** The scenario keys of a `machine:` block. */
export const MACHINE_SCENARIO_KEYS: readonly string[] = Object.values(MACHINE_OPTIONS).flatMap((d) =>
  d.scenario === null ? [] : [d.scenario],
);

/** The exec/serve flags that set Machine options (each takes a value). */
export const MACHINE_FLAGS: readonly string[] = Object.values(MACHINE_OPTIONS).flatMap((d) =>
  d.flag === null ? [] : [d.flag],
);

/** Whether v is one of an enumerated option's values. */
export function isOptionValue<N extends MachineOptionName>(
  name: N,
  v: unknown,
): v is NonNullable<MachineOptions[N]> {
  const d: MachineOptionDecl = MACHINE_OPTIONS[name];
  return d.values === undefined || (typeof v === "string" && d.values.includes(v));
}

/** "unknown X "v" (a, b, c)" for an enumerated option. */
export function badValue(name: MachineOptionName, what: string, v: unknown): string {
  const d: MachineOptionDecl = MACHINE_OPTIONS[name];
  return `unknown ${what} ${JSON.stringify(v)} (${(d.values ?? []).join(", ")})`;
}

/** A byte size on the command line: a number with an optional K, M, G or T suffix; undefined if malformed. */
export function parseSizeArg(v: string): bigint | undefined {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(v.trim());
  if (m === null) return undefined;
  const shift = { "": 0n, K: 10n, M: 20n, G: 30n, T: 40n }[m[2].toUpperCase() as "" | "K" | "M" | "G" | "T"];
  return BigInt(m[1]) << shift;
}

/**
 * The flags exec and serve take for --memory and --spapr: apply one to
 * `machine`. Returns an
 * error message, or undefined when applied.
 */
export function applyMachineFlag(machine: MachineOptions, flag: string, v: string): string | undefined {
  switch (flag) {
    case "--memory": {
      const n = parseSizeArg(v);
      if (n === undefined) return `--memory takes a size (e.g. 8G), not "${v}"`;
      machine.memoryBytes = n;
      return undefined;
    }
    case "--spapr": {
      const m = /^(platform|pgsizes)=(.+)$/.exec(v);
      if (m === null) return `--spapr takes platform=powernv|pseries or pgsizes=12,16,24, not "${v}"`;
      const sp = { ...machine.spapr };
      if (m[1] === "platform") {
        if (m[2] !== "powernv" && m[2] !== "pseries")
          return `--spapr: unknown platform "${m[2]}" (powernv, pseries)`;
        sp.platform = m[2];
      } else {
        const sizes = m[2].split(",").map(Number);
        if (sizes.some((n) => !Number.isInteger(n) || n < 12 || n > 40))
          return `--spapr pgsizes takes log2 page sizes (e.g. 12,16,24), not "${m[2]}"`;
        sp.pgsizes = sizes;
      }
      machine.spapr = sp;
      return undefined;
    }
  }
  return `${flag}: not a machine flag`;
}
