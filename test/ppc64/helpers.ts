import type { SpaprTceIommuDriver } from "../../src/iommu/drivers/spapr.js";
import { createIommuSubsystem, type IommuSubsystem } from "../../src/iommu/index.js";
import type { SpaprMachineOptions } from "../../src/iommu/spapr-platform.js";
import {
  IOMMU_HWPT_DATA_SPAPR_TCE,
  iommu_hwpt_spapr_tce,
  type SpaprWindowSpec,
} from "../../src/iommu/spapr-uapi.js";
import type { KernelCtx } from "../../src/kernel/kctx.js";
import { encode, type StructInput } from "../../src/uapi/struct.js";
import { testCtx } from "../iommu/helpers.js";

export const BDF = "0000:00:04.0";
export const GIB = 1n << 30n;
export const DDW_POWERNV = 1n << 59n;

/** An sPAPR IOMMU layer over 1 GiB of RAM with one device (group 0). */
export function bootSpapr(opts: SpaprMachineOptions = {}): {
  ctx: KernelCtx;
  sub: IommuSubsystem;
  drv: SpaprTceIommuDriver;
} {
  const ctx = testCtx();
  const sub = createIommuSubsystem(ctx, "spapr", [{ bdf: BDF }], { spapr: opts });
  return { ctx, sub, drv: sub.driver as SpaprTceIommuDriver };
}

/** struct iommu_hwpt_spapr_tce bytes for these windows (extra fields override). */
export function windowsData(windows: SpaprWindowSpec[], extra: StructInput = {}): Uint8Array {
  const v: StructInput = { num_windows: windows.length };
  windows.forEach((w, i) => {
    v[`windows[${i}].start_addr`] = w.startAddr;
    v[`windows[${i}].window_size`] = w.windowSize;
    v[`windows[${i}].page_shift`] = w.pageShift;
    v[`windows[${i}].levels`] = w.levels;
  });
  return encode(iommu_hwpt_spapr_tce, { ...v, ...extra });
}

export function userData(windows: SpaprWindowSpec[], extra: StructInput = {}) {
  return { type: IOMMU_HWPT_DATA_SPAPR_TCE, bytes: windowsData(windows, extra) };
}

/** The two-window domain of the tests: 1 GiB of 4 KiB TCEs at 0, 64 GiB of 64 KiB TCEs at 1<<59 (2 levels). */
export const TWO_WINDOWS: SpaprWindowSpec[] = [
  { startAddr: 0n, windowSize: GIB, pageShift: 12, levels: 1 },
  { startAddr: DDW_POWERNV, windowSize: 64n * GIB, pageShift: 16, levels: 2 },
];

/** The big-endian u64 at a physical address. */
export function be64(ctx: KernelCtx, pa: bigint): bigint {
  const b = ctx.phys.read(Number(pa), 8);
  let x = 0n;
  for (const v of b) x = (x << 8n) | BigInt(v);
  return x;
}
