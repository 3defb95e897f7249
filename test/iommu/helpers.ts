import { DmaLog } from "../../src/hw/dma-log.js";
import { FaultInject } from "../../src/hw/fault-inject.js";
import { FrameAllocator } from "../../src/hw/frame-alloc.js";
import { PhysMem } from "../../src/hw/phys-mem.js";
import { createIommuSubsystem, type IommuPciDevice, type IommuSubsystem } from "../../src/iommu/index.js";
import { resolveKconfig } from "../../src/kernel/kconfig.js";
import type { IommuKind, KernelCtx } from "../../src/kernel/kctx.js";
import { PARAM_DEFAULTS, type ParamName, type ParamValue } from "../../src/kernel/params.js";
import { KernelLog } from "../../src/kernel/printk.js";
import { Vfs } from "../../src/kernel/vfs.js";
import { KernelError } from "../../src/uapi/errno.js";

/** A kernel context with 1 GiB of RAM and nothing else booted. */
export function testCtx(seed = 1): KernelCtx {
  const phys = new PhysMem(1n << 30n, [[0, (1 << 30) / 4096]]);
  const faults = new FaultInject();
  return {
    phys,
    frames: new FrameAllocator(phys, seed, faults),
    faults,
    vfs: new Vfs(),
    klog: new KernelLog(),
    kconfig: resolveKconfig({}, false),
    params: { ...PARAM_DEFAULTS } as Record<ParamName, ParamValue>,
    profile: "latest",
    noiommuRevision: "v9",
    iommuKind: "amd",
    seed,
    dmaLog: new DmaLog(),
    domainIds: { next: 1 },
  };
}

export function boot(
  kind: IommuKind,
  pci: IommuPciDevice[] = [{ bdf: "0000:00:04.0" }],
): { ctx: KernelCtx; sub: IommuSubsystem } {
  const ctx = testCtx();
  return { ctx, sub: createIommuSubsystem(ctx, kind, pci) };
}

/** The errno a call fails with (0 when it does not throw a KernelError). */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 0;
}

export const KiB = 1024n;
export const MiB = 1024n * KiB;
export const GiB = 1024n * MiB;
