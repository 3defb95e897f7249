import type { KernelCtx } from "../../kernel/kctx.js";
import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import {
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_hw_info_vtd,
} from "../../uapi/iommufd.js";
import { encode } from "../../uapi/struct.js";
import type { IommuDevice } from "../device.js";
import type { IommuDomain } from "../domain.js";
import type { IommuUserData } from "../driver.js";
import { newPtTable } from "../pt-table.js";
import type { HwInfo, IommuCap, ResvRegion } from "../types.js";
import { DriverBase, x86MsiRegion } from "./common.js";

const b = (n: number) => 1n << BigInt(n);
const field = (v: number, lsb: number) => BigInt(v) << BigInt(lsb);

/**
 * The model's VT-d unit (documented as ours, shaped like a current Xeon):
 * CAP_REG (VT-d spec 11.4.2): 64K domain ids, 4-level second stage (48-bit
 * AGAW), 2M and 1G second-stage pages, page-selective invalidation, 8
 * fault-recording registers at 0x400, posted interrupts, 1G first-stage pages.
 */
export const VTD_MODEL_CAP =
  field(6, 0) | // ND: 64K domains
  b(5) | // PLMR
  b(6) | // PHMR
  field(0b00100, 8) | // SAGAW: 4-level (48-bit)
  field(47, 16) | // MGAW: 48 bits (value + 1)
  b(22) | // ZLR
  field(0x40, 24) | // FRO: fault recording at 0x400 (16-byte units)
  field(0b0011, 34) | // SLLPS: 2M, 1G
  b(39) | // PSI
  field(7, 40) | // NFR: 8 fault-recording registers
  field(0x12, 48) | // MAMV
  b(54) | // DWD
  b(55) | // DRD
  b(56) | // FL1GP
  b(59); // PI

/**
 * ECAP_REG (11.4.3): coherent walks, queued invalidation, device TLBs,
 * interrupt remapping (x2APIC), pass-through, snoop control, IOTLB
 * registers at 0x500, nesting, page requests, PASIDs (20 bits), scalable
 * mode, second-stage A/D (SLADS), first and second stage translation.
 */
export const VTD_MODEL_ECAP =
  b(0) | // C
  b(1) | // QI
  b(2) | // DT
  b(3) | // IR
  b(4) | // EIM
  b(6) | // PT
  b(7) | // SC: snoop control (enforce coherency)
  field(0x50, 8) | // IRO: IOTLB registers at 0x500
  field(0xf, 20) | // MHMV
  b(26) | // NEST
  b(29) | // PRS
  b(34) | // EAFS
  field(19, 35) | // PSS: 20-bit PASID
  b(40) | // PASID
  b(41) | // DIT
  b(42) | // PDS
  b(43) | // SMTS: scalable mode
  b(45) | // SLADS: second-stage accessed/dirty
  b(46) | // SLTS
  b(47) | // FLTS
  b(48); // SMPWC

/**
 * drivers/iommu/intel: second-stage (VT-d SS format) paging domains and the
 * driver's rules. Devices may sit on a unit without snoop control or
 * without SLADS (device flags), which is what makes attaches incompatible.
 */
export class IntelIommuDriver extends DriverBase {
  readonly name = "intel" as const;

  constructor(ctx: KernelCtx) {
    super(ctx, true);
  }

  private sc(dev: IommuDevice): boolean {
    return (VTD_MODEL_ECAP & b(7)) !== 0n && !dev.flags.noEnforceCoherency;
  }

  /** ssads_supported(): scalable mode and ECAP.SLADS. */
  private ssads(dev: IommuDevice): boolean {
    return (VTD_MODEL_ECAP & b(43)) !== 0n && (VTD_MODEL_ECAP & b(45)) !== 0n && !dev.flags.noDirty;
  }

  capable(dev: IommuDevice, cap: IommuCap): boolean {
    switch (cap) {
      case "CACHE_COHERENCY":
        return true;
      case "ENFORCE_CACHE_COHERENCY":
        return this.sc(dev);
      case "DIRTY_TRACKING":
        return this.ssads(dev);
      case "DEFERRED_FLUSH":
        return true;
      default:
        return false;
    }
  }

  /** intel_iommu_get_resv_regions(): RMRRs (none modelled) and the IOAPIC/MSI window. */
  resvRegions(_dev: IommuDevice): ResvRegion[] {
    return [x86MsiRegion()];
  }

  /** intel_iommu_hw_info(): struct iommu_hw_info_vtd { flags, __reserved, cap_reg, ecap_reg }. */
  hwInfo(_dev: IommuDevice, reqType: number): HwInfo {
    if (reqType !== IOMMU_HW_INFO_TYPE_DEFAULT && reqType !== IOMMU_HW_INFO_TYPE_INTEL_VTD) {
      fail(EOPNOTSUPP, `VT-d reports only IOMMU_HW_INFO_TYPE_INTEL_VTD (asked for type ${reqType})`);
    }
    return {
      type: IOMMU_HW_INFO_TYPE_INTEL_VTD,
      data: encode(iommu_hw_info_vtd, { flags: 0n, cap_reg: VTD_MODEL_CAP, ecap_reg: VTD_MODEL_ECAP }),
    };
  }

  override maxPasidLog2(dev: IommuDevice): number {
    return dev.flags.pasid ? 20 : 0;
  }

  /**
   * intel_iommu_domain_alloc_paging_flags() for a second-stage domain:
   * unknown flags or user data EOPNOTSUPP; DIRTY_TRACKING needs SLADS
   * (EOPNOTSUPP). First-stage (PASID) domains are not modelled.
   */
  allocPaging(dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain {
    this.checkPagingFlags(flags, userData);
    if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && dev !== undefined && !this.ssads(dev)) {
      fail(EOPNOTSUPP, "intel: DIRTY_TRACKING needs second-stage A/D support (ECAP.SLADS)");
    }
    if (flags & IOMMU_HWPT_ALLOC_PASID) {
      fail(EOPNOTSUPP, "intel: PASID-capable (first-stage) domains are not modelled");
    }
    const pt = newPtTable(this.ctx.phys, this.ctx.frames, "vtdss", {
      features: ["FLUSH_RANGE"],
      hwMaxVaszLg2: 48,
      hwMaxOaszLg2: 52,
    });
    return this.trackPaging(pt, flags);
  }

  defaultDomainType(_dev: IommuDevice): "dma" | "identity" | "blocked" {
    return "dma";
  }

  /**
   * paging_domain_compatible() for second stage: a dirty-tracking domain
   * needs SLADS, a snooping-enforced domain needs snoop control (EINVAL).
   */
  attachDev(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.type !== "paging") return;
    if (domain.dirtyOps && !this.ssads(dev)) {
      fail(EINVAL, `intel: ${dev.name}'s VT-d unit lacks SLADS for a dirty-tracking domain`);
    }
    if (domain.enforcingCoherency && !this.sc(dev)) {
      fail(
        EINVAL,
        `intel: domain ${domain.id} enforces cache coherency (force_snooping) but ${dev.name}'s VT-d unit has no snoop control`,
      );
    }
  }

  /**
   * intel_iommu_enforce_cache_coherency(): only when every attached device's
   * unit has snoop control. (The SNP bit of entries written before is not
   * rewritten: src/pt fixes FORCE_COHERENCE at table init.)
   */
  enforceCacheCoherency(domain: IommuDomain): boolean {
    for (const grp of this.attachedDevices(domain)) if (!this.sc(grp)) return false;
    return true;
  }

  private attachedDevices(domain: IommuDomain): IommuDevice[] {
    return this.devices.filter((d) => d.domain === domain);
  }

  /** Devices the registry put behind this driver (for the coherency rule). */
  readonly devices: IommuDevice[] = [];
}
