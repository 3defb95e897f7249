/**
 * src/iommu: the iommu core (drivers/iommu/iommu.c) and the model's IOMMU
 * drivers. What the layer offers to iommufd and VFIO:
 *
 * Boot (the Machine): `createIommuSubsystem(ctx, kind, pciDevices)` ->
 *   `IommuSubsystem` with `device(bdf)`, `group(id)`, `groups`, `devices`,
 *   `createMockDevice(flags)` / `removeDevice(dev)` (selftest mock bus),
 *   `ptFrames()`, `liveDomains()`, `checkInvariants()`. sPAPR (iommu "spapr"):
 *   `SpaprTceIommuDriver` with `platform` (SpaprPlatform: window slots,
 *   pgsizes, createTable, getTableSize) and `tableGroup(group)` (the PE's
 *   TVEs a legacy VFIO container programs); TceTable is one window. Its `counters()`
 *   ("ptFrames", "domains", the driver's own) and `checkInvariants()` feed
 *   m.debug; it adds the sysfs nodes /sys/kernel/iommu_groups/N/{devices/<bdf>,
 *   type,reserved_regions} and /sys/bus/pci/devices/<bdf>/iommu_group.
 *   Functions with no IOMMU (iommu "none", or noIommu) get no IommuDevice.
 *
 * Devices: `IommuDevice` — `group`, `domain` (the group's), `capable(cap)`,
 *   `resvRegions()`, `hwInfo(reqType)` -> { type, data } in the driver's
 *   uapi layout, `maxPasidLog2()`, `claimDmaOwner(owner)` /
 *   `releaseDmaOwner()` (iommu_device_claim_dma_owner), and
 *   `dmaTranslate(iova, len, write)` -> physical segments or a fault,
 *   walking the attached domain's table bytes with the hardware walker.
 *
 * Groups: `IommuGroup` — `claimDmaOwner(owner)` (VFIO group: EPERM when in
 *   use), `claimDmaOwnerForDevice` (EPERM for another owner),
 *   `releaseDmaOwner*` (back to the default domain), `useDefaultDomain()`
 *   (a kernel driver binds), `attach(domain)` (EBUSY off default/blocking,
 *   EINVAL for another driver's domain or a driver refusal), `replace(domain)`,
 *   `detach()` (blocking while owned, else default).
 *
 * Domains: drivers allocate them: `dev.driver.allocPaging(dev, flags,
 *   userData?)`, `allocNested(dev, parent, flags, userData)` (mock only),
 *   `blockedDomain`, `identityDomain`, `platformDomain` (sPAPR). An `IommuDomain` has `type`,
 *   `apertures` (a list), `pgsizeBitmap` (bigint) / `pgsizesLg2` (numbers),
 *   `map(iova, paddr, size, prot)` (core splitting, rollback; throws
 *   KernelError), `unmap(iova, size)` -> bytes, `iovaToPhys`,
 *   `setDirtyTracking`, `readAndClearDirty(iova, size, noClear, record)`,
 *   `enforceCacheCoherency()`, `ptInfo()` -> { format, rootPhys, topLevel },
 *   `frames()`, `free()`, and `pt.setDirty(unit)` for IOMMU_TEST_OP_DIRTY.
 */
export { IommuDevice, type IommuDeviceFlags } from "./device.js";
export { IommuDomain } from "./domain.js";
export type { InvalidateResult, IommuDriver, IommuUserData } from "./driver.js";
export { AMD_MODEL_EFR, AMD_MODEL_EFR2, AmdIommuDriver } from "./drivers/amd.js";
export { IntelIommuDriver, VTD_MODEL_CAP, VTD_MODEL_ECAP } from "./drivers/intel.js";
export * from "./drivers/mock.js";
export { MOCK_HUGE_PAGE_LG2, MOCK_IO_PAGE_LG2, MOCK_IO_PAGE_SIZE } from "./drivers/mock-table.js";
export { isNoiommuDomain, NoiommuDriver } from "./drivers/noiommu.js";
export { SPAPR_DEFAULT_PAGING_WINDOW, SpaprTceIommuDriver } from "./drivers/spapr.js";
export { IommuGroup } from "./group.js";
export type { IoPageTable, WalkResult } from "./io-pgtable.js";
export { iommuPgsize } from "./pgsize.js";
export { type SpaprMachineOptions, SpaprPlatform, SpaprTableGroup } from "./spapr-platform.js";
export { type TceEntry, TceTable } from "./spapr-tce-table.js";
export * from "./spapr-uapi.js";
export { TceWindowSet } from "./spapr-windows.js";
export { createIommuSubsystem, type IommuPciDevice, IommuSubsystem } from "./subsystem.js";
export * from "./types.js";
