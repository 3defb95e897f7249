import type { KernelCtx } from "../../kernel/kctx.js";
import { NOIOMMU_AMDV1_CONFIG } from "../../pt/index.js";
import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import type { IommuDevice } from "../device.js";
import { IommuDomain } from "../domain.js";
import type { IommuUserData } from "../driver.js";
import { newPtTable } from "../pt-table.js";
import type { HwInfo, IommuCap, ResvRegion } from "../types.js";
import { DriverBase } from "./common.js";

/**
 * The noiommu software domain of the cdev series (iommufd_noiommu_ops in
 * hwpt_noiommu.c): no hardware, no devices, only paging domains whose
 * AMDv1 table is filled by IOAS_MAP and read back by
 * IOMMU_IOAS_NOIOMMU_GET_PA. Nothing ever walks it for DMA: a noiommu
 * device's DMA addresses are physical.
 *
 * The table uses exactly the seed's configuration (64-bit VA, 52-bit OA,
 * starting level 2, the three features AMDv1 force-enables, which is why
 * ENCRYPT_TABLES is requested although nothing is encrypted: pt_init
 * refuses a request that leaves out a forced feature). The pgsize bitmap is
 * the format's full one, as the seed does not narrow it.
 */
export class NoiommuDriver extends DriverBase {
  readonly name = "noiommu" as const;

  constructor(ctx: KernelCtx) {
    super(ctx, false);
  }

  /** dev->iommu is NULL: device_iommu_capable() is false for every cap. */
  capable(_dev: IommuDevice, _cap: IommuCap): boolean {
    return false;
  }

  /** A device with no IOMMU has no reserved regions to enforce. */
  resvRegions(_dev: IommuDevice): ResvRegion[] {
    return [];
  }

  hwInfo(_dev: IommuDevice, _reqType: number): HwInfo {
    return fail(EOPNOTSUPP, "a noiommu device has no IOMMU hardware to describe");
  }

  /** noiommu_alloc_paging_flags(): any flag or driver data is EOPNOTSUPP. */
  allocPaging(_dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain {
    if (flags !== 0 || userData !== undefined) {
      fail(EOPNOTSUPP, "the noiommu software domain takes no HWPT flags and no driver data");
    }
    const pt = newPtTable(this.ctx.phys, this.ctx.frames, "amdv1", {
      ...NOIOMMU_AMDV1_CONFIG,
      features: [...NOIOMMU_AMDV1_CONFIG.features],
    });
    return this.track(new IommuDomain({ driver: this, type: "paging", pt }));
  }

  defaultDomainType(_dev: IommuDevice): "blocked" {
    return "blocked";
  }

  /** Never reached: iommufd skips the attach for a noiommu device; a real device gets EINVAL from the core. */
  attachDev(_domain: IommuDomain, dev: IommuDevice): void {
    fail(EINVAL, `${dev.name} has an IOMMU; the noiommu software domain serves only devices without one`);
  }

  /** The ops have no enforce_cache_coherency. */
  enforceCacheCoherency(_domain: IommuDomain): boolean {
    return false;
  }
}

/** True for a domain of the noiommu software driver (domain->owner == &iommufd_noiommu_ops). */
export function isNoiommuDomain(d: IommuDomain | undefined): boolean {
  return d !== undefined && d.driver instanceof NoiommuDriver;
}
