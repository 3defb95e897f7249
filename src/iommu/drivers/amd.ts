import type { KernelCtx } from "../../kernel/kctx.js";
import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import {
  IOMMU_HW_INFO_TYPE_AMD,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_hw_info_amd,
} from "../../uapi/iommufd.js";
import { encode } from "../../uapi/struct.js";
import type { IommuDevice } from "../device.js";
import type { IommuDomain } from "../domain.js";
import type { IommuUserData } from "../driver.js";
import { newPtTable } from "../pt-table.js";
import type { HwInfo, IommuCap, ResvRegion } from "../types.js";
import { IOMMU_RESV_RESERVED } from "../types.js";
import { DriverBase, x86MsiRegion } from "./common.js";

// Extended Feature Register bits (amd_iommu_types.h FEATURE_*).
const EFR = {
  PREF: 1n << 0n,
  PPR: 1n << 1n,
  XT: 1n << 2n,
  NX: 1n << 3n,
  GT: 1n << 4n,
  IA: 1n << 6n,
  GA: 1n << 7n,
  HE: 1n << 8n,
  PC: 1n << 9n,
  /** HATS [11:10]: host page-table levels - 4. */
  HATS_6LEVEL: 2n << 10n,
  /** GATS [13:12]: 1 = 5-level guest (v2) tables. */
  GATS_5LEVEL: 1n << 12n,
  GAM_VAPIC: 1n << 21n,
  /** PASMAX [36:32]: PASID width - 1. */
  PASMAX_16: 15n << 32n,
  GIOSUP: 1n << 48n,
  HASUP: 1n << 49n,
  EPHSUP: 1n << 50n,
  HDSUP: 1n << 52n,
} as const;

/**
 * The model's AMD IOMMU (documented as ours, shaped like a Zen 3/4 part):
 * 6-level host tables, guest translation with 5-level v2 tables, 16-bit
 * PASIDs, hardware access and dirty bits. EFR2 = 0: no HT-range-ignore,
 * so the HyperTransport window stays reserved as in the driver.
 */
export const AMD_MODEL_EFR = Object.values(EFR).reduce((a, b) => a | b, 0n);
export const AMD_MODEL_EFR2 = 0n;
const AMD_HPT_LEVEL = 6;

/** HT_RANGE_START..HT_RANGE_END (amd_iommu_types.h). */
const HT_START = 0xfd_0000_0000n;
const HT_LAST = 0xff_ffff_ffffn;

/**
 * drivers/iommu/amd: v1 (AMDv1 format) paging domains, blocked and identity
 * domains, and the driver's capability, reserved-region and hw_info rules.
 */
export class AmdIommuDriver extends DriverBase {
  readonly name = "amd" as const;

  constructor(ctx: KernelCtx) {
    super(ctx, true);
  }

  private get hdSupport(): boolean {
    // amd_iommu_hd_support(): v1 page tables and EFR.HDSUP.
    return (AMD_MODEL_EFR & EFR.HDSUP) !== 0n;
  }

  capable(dev: IommuDevice, cap: IommuCap): boolean {
    switch (cap) {
      case "CACHE_COHERENCY":
      case "ENFORCE_CACHE_COHERENCY": // IOMMU_PTE_FC is always set
      case "DEFERRED_FLUSH":
        return true;
      case "DIRTY_TRACKING":
        return this.hdSupport && !dev.flags.noDirty;
      default:
        return false;
    }
  }

  /** amd_iommu_get_resv_regions(): IVMD unity maps (none modelled), the MSI window, the HT window. */
  resvRegions(_dev: IommuDevice): ResvRegion[] {
    const out = [x86MsiRegion()];
    if ((AMD_MODEL_EFR2 & (1n << 11n)) === 0n) {
      out.push({ start: HT_START, last: HT_LAST, prot: 0, type: IOMMU_RESV_RESERVED });
    }
    return out;
  }

  /** amd_iommufd_hw_info(): struct iommu_hw_info_amd { efr, efr2 }. */
  hwInfo(_dev: IommuDevice, reqType: number): HwInfo {
    if (reqType !== IOMMU_HW_INFO_TYPE_DEFAULT && reqType !== IOMMU_HW_INFO_TYPE_AMD) {
      fail(EOPNOTSUPP, `the AMD IOMMU reports only IOMMU_HW_INFO_TYPE_AMD (asked for type ${reqType})`);
    }
    return {
      type: IOMMU_HW_INFO_TYPE_AMD,
      data: encode(iommu_hw_info_amd, { efr: AMD_MODEL_EFR, efr2: AMD_MODEL_EFR2 }),
    };
  }

  override maxPasidLog2(dev: IommuDevice): number {
    return dev.flags.pasid ? 16 : 0;
  }

  /**
   * amd_iommu_domain_alloc_paging_flags(): v1 tables (DYNAMIC_TOP,
   * ENCRYPT_TABLES, FORCE_COHERENCE, starting level 2). Unknown flags or
   * user data, or DIRTY_TRACKING without HDSUP: EOPNOTSUPP. PASID domains
   * (v2 tables) are not modelled: EOPNOTSUPP.
   */
  allocPaging(dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain {
    this.checkPagingFlags(flags, userData);
    if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !(this.hdSupport && !dev?.flags.noDirty)) {
      fail(EOPNOTSUPP, "amd: DIRTY_TRACKING needs EFR.HDSUP (amd_iommu_hd_support)");
    }
    if (flags & IOMMU_HWPT_ALLOC_PASID) {
      fail(EOPNOTSUPP, "amd: PASID-capable (v2 page table) domains are not modelled");
    }
    const pt = newPtTable(this.ctx.phys, this.ctx.frames, "amdv1", {
      features: ["DYNAMIC_TOP", "AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE", "FLUSH_RANGE"],
      hwMaxVaszLg2: Math.min(64, (AMD_HPT_LEVEL - 1) * 9 + 21),
      hwMaxOaszLg2: 52,
      startingLevel: 2,
    });
    return this.trackPaging(pt, flags);
  }

  /** amd_iommu_def_domain_type(): 0 (the kernel default, a DMA domain) for a non-PASID device. */
  defaultDomainType(_dev: IommuDevice): "dma" | "identity" | "blocked" {
    return "dma";
  }

  /** amd_iommu_attach_device(): a dirty-tracking domain needs HDSUP on the device's IOMMU. */
  attachDev(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.dirtyOps && !this.capable(dev, "DIRTY_TRACKING")) {
      fail(
        EINVAL,
        `amd: ${dev.name}'s IOMMU has no hardware dirty tracking (EFR.HDSUP) for a dirty-tracking domain`,
      );
    }
  }

  enforceCacheCoherency(_domain: IommuDomain): boolean {
    return true;
  }
}
