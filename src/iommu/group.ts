import { EBUSY, EINVAL, EPERM, fail } from "../uapi/errno.js";
import type { IommuDevice } from "./device.js";
import type { IommuDomain } from "./domain.js";
import type { IommuDriver } from "./driver.js";

/**
 * struct iommu_group: the unit of isolation. Every device in it sees the
 * same domain; DMA ownership is claimed for the whole group
 * (drivers/iommu/iommu.c, "DMA ownership").
 *
 * owner / ownerCnt follow the core: kernel DMA-API users count in ownerCnt
 * with no owner; a user-space owner (VFIO group, iommufd context) sets an
 * owner cookie and gets the group moved to the blocking domain.
 */
export class IommuGroup {
  readonly devices: IommuDevice[] = [];
  /** The domain every device of the group is attached to now. */
  domain: IommuDomain;
  /** Set when an owner cookie holds the group (user-space DMA). */
  owner: unknown = undefined;
  ownerCnt = 0;

  constructor(
    readonly id: number,
    readonly driver: IommuDriver,
    /** group->default_domain (absent only when the driver gives none). */
    readonly defaultDomain: IommuDomain,
  ) {
    this.domain = defaultDomain;
  }

  get blockingDomain(): IommuDomain {
    return this.driver.blockedDomain;
  }

  /** iommu_group_dma_owner_claimed(). */
  get dmaOwnerClaimed(): boolean {
    return this.ownerCnt > 0;
  }

  /**
   * iommu_group_claim_dma_owner() (VFIO group path): EPERM when anyone
   * (kernel driver or another owner) already uses the group.
   */
  claimDmaOwner(owner: unknown): void {
    if (owner === undefined || owner === null)
      fail(EINVAL, "iommu_group_claim_dma_owner needs an owner cookie");
    if (this.ownerCnt > 0) {
      fail(EPERM, `iommu_group ${this.id} is already in use (DMA owner claimed or a kernel driver bound)`);
    }
    this.takeOwnership(owner);
  }

  /** iommu_group_release_dma_owner(). */
  releaseDmaOwner(): void {
    if (this.ownerCnt === 0 || this.owner === undefined)
      throw new Error(`group ${this.id}: release without claim`);
    this.ownerCnt = 0;
    this.owner = undefined;
    this.setDomainNofail(this.defaultDomain);
  }

  /**
   * iommu_device_claim_dma_owner() for one device: the same owner may claim
   * several devices of the group (counted); a different owner, or kernel
   * DMA-API users (no owner), give EPERM, as the group claim does.
   */
  claimDmaOwnerForDevice(owner: unknown): void {
    if (owner === undefined || owner === null)
      fail(EINVAL, "iommu_device_claim_dma_owner needs an owner cookie");
    if (this.ownerCnt > 0) {
      if (this.owner !== owner) {
        fail(
          EPERM,
          this.owner === undefined
            ? `iommu_group ${this.id} is used by a kernel driver through the DMA API`
            : `iommu_group ${this.id} is owned by another user (VFIO container or iommufd context)`,
        );
      }
      this.ownerCnt++;
      return;
    }
    this.takeOwnership(owner);
  }

  /** iommu_device_release_dma_owner(). */
  releaseDmaOwnerForDevice(): void {
    if (this.ownerCnt > 1) {
      this.ownerCnt--;
      return;
    }
    this.releaseDmaOwner();
  }

  /**
   * iommu_device_use_default_domain(): a kernel driver binding to a device
   * of the group. EBUSY while a user owns the group or it is off its
   * default domain.
   */
  useDefaultDomain(): void {
    if (this.ownerCnt > 0 && (this.owner !== undefined || this.domain !== this.defaultDomain)) {
      fail(EBUSY, `iommu_group ${this.id} is owned for user-space DMA`);
    }
    this.ownerCnt++;
  }

  /** iommu_device_unuse_default_domain(). */
  unuseDefaultDomain(): void {
    if (this.ownerCnt > 0) this.ownerCnt--;
  }

  /**
   * iommu_attach_group(): the group must sit on its default or blocking
   * domain (EBUSY otherwise), the domain must come from the group's driver
   * (EINVAL), and the driver must accept every device (EINVAL; nothing changes).
   */
  attach(domain: IommuDomain): void {
    if (this.domain !== this.defaultDomain && this.domain !== this.blockingDomain) {
      fail(
        EBUSY,
        `iommu_group ${this.id} is already attached to domain ${this.domain.id}; replace it instead`,
      );
    }
    this.setDomain(domain);
  }

  /**
   * iommu_group_replace_domain(): switch the group to `domain` from
   * whatever it is on (no EBUSY, no ownership check: the core leaves that
   * to its caller, iommufd, which always owns the group); a driver refusal
   * leaves the old domain in place.
   */
  replace(domain: IommuDomain): void {
    this.setDomain(domain);
  }

  /** iommu_detach_group(): back to the blocking domain while owned, else the default one. */
  detach(): void {
    this.setDomainNofail(this.owner !== undefined ? this.blockingDomain : this.defaultDomain);
  }

  /** __iommu_group_set_domain(): all devices or none. */
  setDomain(domain: IommuDomain): void {
    if (domain === this.domain) return;
    if (domain.freed) throw new Error(`attach of freed domain ${domain.id}`);
    if (domain.driver !== this.driver) {
      fail(
        EINVAL,
        `domain ${domain.id} belongs to the ${domain.driver.name} IOMMU driver, the group's devices to ${this.driver.name}`,
      );
    }
    // Drivers check every device before any is switched (the core's
    // test-then-attach); the model's attach itself cannot fail afterwards.
    for (const dev of this.devices) domain.driver.attachDev(domain, dev);
    this.setDomainNofail(domain);
  }

  /** Move every device's user from the current domain to `domain` (nothing left to refuse). */
  private setDomainNofail(domain: IommuDomain): void {
    if (domain === this.domain) return;
    const old = this.domain;
    for (const dev of this.devices) {
      old.users.delete(dev.name);
      domain.users.add(dev.name);
    }
    this.domain = domain;
  }

  /** __iommu_take_dma_ownership(): the group moves to the blocking domain. */
  private takeOwnership(owner: unknown): void {
    if (this.domain !== this.defaultDomain && this.domain !== this.blockingDomain) {
      fail(EBUSY, `iommu_group ${this.id} is attached to a non-default domain`);
    }
    this.setDomain(this.blockingDomain);
    this.owner = owner;
    this.ownerCnt = 1;
  }
}
