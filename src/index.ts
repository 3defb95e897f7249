/**
 * iommufd-sim: the public API.
 *
 *   import { Machine, uapi, errno } from "iommufd-sim";
 *   const m = new Machine({ iommu: "amd" });
 *   const p = m.spawn({ caps: ["CAP_SYS_RAWIO"] });
 *   const fd = p.open("/dev/iommu");
 *
 * Everything a user does is a system call on a Process (DESIGN.md, "The
 * syscall contract"); `m.debug` looks inside without changing anything.
 */

export type { DmaEvent } from "./hw/dma-log.js";
export { RLIM_INFINITY } from "./kernel/cred.js";
export type {
  Debug,
  SpaprTceDebugInfo,
  Type1DebugInfo,
  VfioContainerDebugInfo,
} from "./kernel/debug.js";
export { KCONFIG_DEFAULTS, type Kconfig } from "./kernel/kconfig.js";
export type {
  HwptDebugInfo,
  IoasDebugInfo,
  IommuKind,
  KernelProfileName,
  NoiommuRevision,
  TceWindowDebugInfo,
} from "./kernel/kctx.js";
export { Machine, type MachineOptions, type PciDeviceConfig, type SpawnOptions } from "./kernel/machine.js";
export { PARAM_DEFAULTS } from "./kernel/params.js";
export { Process } from "./kernel/process.js";
export type { LastError, TraceEvent } from "./kernel/trace.js";
export { RecordError, type RecordOptions, recordScenario } from "./scenario/record.js";
export * as errno from "./uapi/errno.js";
export { KernelError } from "./uapi/errno.js";
export * as uapi from "./uapi/index.js";
