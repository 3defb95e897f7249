import type { KernelCtx } from "../../kernel/kctx.js";
import { EOPNOTSUPP, fail } from "../../uapi/errno.js";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
} from "../../uapi/iommufd.js";
import type { IommuDevice } from "../device.js";
import { IommuDomain } from "../domain.js";
import type { IommuDriver, IommuUserData } from "../driver.js";
import type { IoPageTable } from "../io-pgtable.js";
import type { HwInfo, IommuCap, ResvRegion } from "../types.js";
import { IOMMU_RESV_MSI } from "../types.js";

/** The x86 interrupt window (MSI_RANGE_START..END on AMD, IOAPIC_RANGE on VT-d). */
export const X86_MSI_START = 0xfee0_0000n;
export const X86_MSI_LAST = 0xfeef_ffffn;

export function x86MsiRegion(): ResvRegion {
  return { start: X86_MSI_START, last: X86_MSI_LAST, prot: 0, type: IOMMU_RESV_MSI };
}

/**
 * What every model driver shares: the context, the static blocked and
 * identity domains, and the set of live domains (for counters and the
 * invariant check).
 */
export abstract class DriverBase implements IommuDriver {
  abstract readonly name: "amd" | "intel" | "mock" | "spapr" | "noiommu";
  readonly blockedDomain: IommuDomain;
  readonly identityDomain: IommuDomain | undefined;
  readonly platformDomain?: IommuDomain;
  /** Every allocated domain not yet freed (static ones excluded). */
  readonly live = new Set<IommuDomain>();

  constructor(
    readonly ctx: KernelCtx,
    hasIdentity: boolean,
  ) {
    this.blockedDomain = new IommuDomain({ driver: this, type: "blocked" });
    this.identityDomain = hasIdentity ? new IommuDomain({ driver: this, type: "identity" }) : undefined;
  }

  abstract capable(dev: IommuDevice, cap: IommuCap): boolean;
  abstract resvRegions(dev: IommuDevice): ResvRegion[];
  abstract hwInfo(dev: IommuDevice, reqType: number): HwInfo;
  abstract allocPaging(dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain;
  abstract defaultDomainType(dev: IommuDevice): "dma" | "identity" | "blocked" | "platform";
  abstract attachDev(domain: IommuDomain, dev: IommuDevice): void;
  abstract enforceCacheCoherency(domain: IommuDomain): boolean;

  /** Leak counters of the driver's own beyond its domains (m.debug.counters()). */
  counters?(): Record<string, number>;

  maxPasidLog2(_dev: IommuDevice): number {
    return 0;
  }

  allocNested(
    _dev: IommuDevice,
    _parent: IommuDomain,
    _flags: number,
    _userData: IommuUserData,
  ): IommuDomain {
    return fail(EOPNOTSUPP, `the ${this.name} driver model has no nested (stage-1) domains`);
  }

  setDirtyTracking(domain: IommuDomain, enable: boolean): void {
    domain.dirtyTracking = enable;
    const pt = domain.pt as { dirtyTracking?: boolean } | undefined;
    if (pt !== undefined && "dirtyTracking" in pt) pt.dirtyTracking = enable;
  }

  protected track(d: IommuDomain): IommuDomain {
    this.live.add(d);
    return d;
  }

  /** The HWPT_ALLOC flags a hardware driver's paging domain takes (EOPNOTSUPP otherwise, and for any driver data). */
  protected checkPagingFlags(flags: number, userData: IommuUserData | undefined): void {
    const supported = IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_ALLOC_NEST_PARENT;
    if ((flags & ~supported) !== 0 || userData !== undefined) {
      fail(EOPNOTSUPP, `${this.name}: unsupported HWPT flags or driver data for a paging domain`);
    }
  }

  /** A live paging domain over pt, its dirty ops and nest-parent role as the HWPT_ALLOC flags ask. */
  protected trackPaging(pt: IoPageTable, flags: number): IommuDomain {
    return this.track(
      new IommuDomain({
        driver: this,
        type: "paging",
        pt,
        dirtyOps: (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0,
        nestParent: (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0,
      }),
    );
  }

  domainFreed(domain: IommuDomain): void {
    this.live.delete(domain);
  }
}
