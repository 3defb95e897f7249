import { dmaSegments } from "./dma-segments.js";
import type { IommuDomain } from "./domain.js";
import type { IommuDriver } from "./driver.js";
import type { IommuGroup } from "./group.js";
import type { DmaTranslation, HwInfo, IommuCap, ResvRegion } from "./types.js";

/** Per-device facts a driver reads (platform quirks, mock device flags). */
export interface IommuDeviceFlags {
  /** The device's IOMMU unit lacks snoop control (cannot enforce coherency). */
  noEnforceCoherency?: boolean;
  /** The device's IOMMU unit lacks hardware dirty tracking (mock: MOCK_FLAGS_DEVICE_NO_DIRTY). */
  noDirty?: boolean;
  /** PASID capable (mock: MOCK_FLAGS_DEVICE_PASID). */
  pasid?: boolean;
  /** Mock: MOCK_FLAGS_DEVICE_HUGE_IOVA (older selftests): its domains also take the huge page size. */
  hugeIova?: boolean;
}

/**
 * A device behind an IOMMU (struct device with dev->iommu set): its group,
 * driver, capabilities and reserved regions, and the DMA translation the
 * device's engine uses. The attached domain is the group's.
 */
export class IommuDevice {
  /** dev_iommu_priv: the driver's own per-device state (the mock's struct mock_dev), made on first use. */
  driverPriv: object | undefined;

  constructor(
    /** PCI BDF ("0000:00:04.0") or a mock device name. */
    readonly name: string,
    readonly driver: IommuDriver,
    readonly group: IommuGroup,
    readonly flags: IommuDeviceFlags = {},
  ) {}

  get domain(): IommuDomain {
    return this.group.domain;
  }

  /** device_iommu_capable(). */
  capable(cap: IommuCap): boolean {
    return this.driver.capable(this, cap);
  }

  /** iommu_get_resv_regions(): the driver's regions for this device. */
  resvRegions(): ResvRegion[] {
    return this.driver.resvRegions(this);
  }

  /** ops->hw_info() with the requested type (0 = the driver's default). */
  hwInfo(reqType = 0): HwInfo {
    return this.driver.hwInfo(this, reqType);
  }

  maxPasidLog2(): number {
    return this.driver.maxPasidLog2(this);
  }

  /** iommu_device_claim_dma_owner(). */
  claimDmaOwner(owner: unknown): void {
    this.group.claimDmaOwnerForDevice(owner);
  }

  /** iommu_device_release_dma_owner(). */
  releaseDmaOwner(): void {
    this.group.releaseDmaOwnerForDevice();
  }

  /**
   * What the IOMMU does with a DMA of `len` bytes at `iova`: the physical
   * pieces, or the first faulting address. Paging domains are walked by
   * the hardware walker over the table bytes in simulated memory (never
   * the domain's own bookkeeping); identity passes the address through;
   * blocked faults everything.
   */
  dmaTranslate(iova: bigint, len: number, write: boolean): DmaTranslation {
    const d = this.group.domain;
    if (len <= 0) return { ok: true, segments: [] };
    if (iova < 0n || iova + BigInt(len) - 1n > 0xffff_ffff_ffff_ffffn) {
      return { ok: false, addr: iova, reason: "out-of-range" };
    }
    if (this.driver.dmaTranslate !== undefined) return this.driver.dmaTranslate(this, iova, len, write);
    if (d.type === "identity") return { ok: true, segments: [{ pa: Number(iova), len }] };
    if (d.type !== "paging" || d.pt === undefined) return { ok: false, addr: iova, reason: "blocked" };
    const pt = d.pt;
    return dmaSegments(iova, len, (cur) => pt.translate(cur, write));
  }
}
