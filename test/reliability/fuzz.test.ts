// CI-sized model-based fuzzing (docs/reliability.md): a few hundred random
// syscall sequences per machine kind, each checked step by step against the
// reference model and the machine invariants, then every process exits and
// the counters must be back at boot. The platforms with their own paths
// (mock selftest, noiommu, sPAPR) are in fuzz-platforms.test.ts so vitest
// runs the two files side by side.
import { fuzzMachine } from "./fuzz-run.js";

fuzzMachine("amd", 20260101, 250, [
  "dma ok",
  "dma fault",
  "map pinned",
  "replace",
  "unmap",
  "copy",
  "map file",
  "memfd shrink",
  "hwpt alloc dirty",
  "dirty bits read",
  "type1 map",
  "dma ok container",
  "dma ok compat",
  "msi read",
  "mmap MAP_LOCKED",
  "exit with a device open",
  "rlimit mode set",
]);
fuzzMachine("intel", 7, 150, ["dma ok", "dirty bits read", "dma ok container", "attach same"]);
fuzzMachine("k612", 612, 150, ["dma ok", "dma ok container", "dma ok compat"]);
fuzzMachine("compat", 31, 200, [
  "dma ok compat",
  "set iommu compat 1",
  "compat unmap",
  "group device via iommufd",
]);
