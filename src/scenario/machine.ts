import { Machine, type MachineOptions, type PciDeviceConfig, type Process } from "../index.js";
import { CAP_NAMES } from "../uapi/linux.js";
import { ScenarioError } from "./error.js";
import type { MachineSpec, ProcessSpec } from "./types.js";
import { toBig } from "./values.js";

/** The machine options a scenario's `machine:` block stands for. */
export function machineOptions(spec: MachineSpec, trace: boolean): MachineOptions {
  const none = new Map<string, bigint>();
  const o: MachineOptions = { trace };
  if (spec.iommu !== undefined) o.iommu = spec.iommu as MachineOptions["iommu"];
  if (spec.memory !== undefined) o.memoryBytes = toBig(spec.memory, none, "machine.memory");
  if (spec.pci !== undefined) o.pci = spec.pci as PciDeviceConfig[];
  if (spec.kconfig !== undefined) o.kconfig = spec.kconfig;
  if (spec.params !== undefined) o.params = spec.params as MachineOptions["params"];
  if (spec.kernel !== undefined) o.kernel = spec.kernel as MachineOptions["kernel"];
  if (spec.noiommuRevision !== undefined)
    o.noiommuRevision = spec.noiommuRevision as MachineOptions["noiommuRevision"];
  if (spec.seed !== undefined) o.seed = spec.seed;
  if (spec.spapr !== undefined) o.spapr = spec.spapr as MachineOptions["spapr"];
  if (spec.hugepages !== undefined) o.hugepages = spec.hugepages as MachineOptions["hugepages"];
  return o;
}

/** Boot the machine; a bad option is a scenario mistake, reported as such. */
export function bootMachine(spec: MachineSpec, trace: boolean): Machine {
  try {
    return new Machine(machineOptions(spec, trace));
  } catch (e) {
    if (e instanceof ScenarioError) throw e;
    throw new ScenarioError(`machine: ${(e as Error).message}`);
  }
}

export function spawnProcesses(m: Machine, specs: ProcessSpec[]): Map<string, Process> {
  const out = new Map<string, Process>();
  const none = new Map<string, bigint>();
  for (const s of specs) {
    for (const c of s.caps ?? []) {
      if (!Object.hasOwn(CAP_NAMES, c)) {
        throw new ScenarioError(
          `process ${s.name}: unknown capability ${c} (known: ${Object.keys(CAP_NAMES).join(", ")})`,
        );
      }
    }
    const opts: Parameters<Machine["spawn"]>[0] = {};
    if (s.uid !== undefined) opts.uid = s.uid;
    if (s.caps !== undefined) opts.caps = s.caps;
    if (s.rlimitMemlock !== undefined) {
      opts.rlimitMemlock =
        s.rlimitMemlock === "unlimited" || s.rlimitMemlock === "infinity"
          ? (1n << 64n) - 1n
          : toBig(s.rlimitMemlock, none, `process ${s.name}.rlimitMemlock`);
    }
    try {
      out.set(s.name, m.spawn(opts));
    } catch (e) {
      throw new ScenarioError(`process ${s.name}: ${(e as Error).message}`);
    }
  }
  return out;
}
