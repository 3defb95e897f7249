import type { IommuKind, KernelCtx } from "../kernel/kctx.js";
import { IommuDevice, type IommuDeviceFlags } from "./device.js";
import type { IommuDomain } from "./domain.js";
import { AmdIommuDriver } from "./drivers/amd.js";
import type { DriverBase } from "./drivers/common.js";
import { IntelIommuDriver } from "./drivers/intel.js";
import { MockIommuDriver } from "./drivers/mock.js";
import { NoiommuDriver } from "./drivers/noiommu.js";
import { SpaprTceIommuDriver } from "./drivers/spapr.js";
import { IommuGroup } from "./group.js";
import { checkDomainTable } from "./invariants.js";
import type { IoPageTable } from "./io-pgtable.js";
import type { SpaprMachineOptions } from "./spapr-platform.js";
import { RESV_TYPE_NAMES } from "./types.js";

/** A PCI function as the machine describes it to the IOMMU layer at boot. */
export interface IommuPciDevice {
  bdf: string;
  /** Share an iommu_group with other devices naming the same number (used as the group id). */
  group?: number;
  /** The function sits behind no IOMMU (its DMA addresses are physical). */
  noIommu?: boolean;
  /** Platform facts the driver reads (e.g. a VT-d unit without snoop control). */
  flags?: IommuDeviceFlags;
}

/**
 * The IOMMU layer of one machine: the driver for its IOMMU kind, the
 * iommu_groups and an IommuDevice per function behind the IOMMU, their
 * sysfs nodes, leak counters and invariant checks. A machine with iommu
 * "none" (or a function marked noIommu) has no IommuDevice: its DMA is
 * physical. `noiommu` allocates the software domains of the VFIO noiommu
 * cdev mode (iommufd's noiommu ops): tables nothing walks, counted with
 * the driver's own in the leak counters and invariant checks.
 */
export class IommuSubsystem {
  readonly groups = new Map<number, IommuGroup>();
  readonly devices = new Map<string, IommuDevice>();
  /** The noiommu software domain allocator (iommufd_noiommu_ops), on every machine. */
  readonly noiommu: NoiommuDriver;
  private nextMock = 0;

  constructor(
    readonly ctx: KernelCtx,
    readonly kind: IommuKind,
    /** undefined for "none". */
    readonly driver: DriverBase | undefined,
  ) {
    this.noiommu = new NoiommuDriver(ctx);
  }

  /** The IommuDevice of a function, or undefined when it has no IOMMU (dev->iommu unset). */
  device(bdf: string): IommuDevice | undefined {
    return this.devices.get(bdf);
  }

  group(id: number): IommuGroup | undefined {
    return this.groups.get(id);
  }

  /**
   * Live domains of the driver (default DMA domains included; static
   * blocked/identity excluded) and of the noiommu software allocator.
   */
  liveDomains(): IommuDomain[] {
    const out = this.driver === undefined ? [] : [...this.driver.live];
    for (const d of this.noiommu.live) out.push(d);
    return out;
  }

  /**
   * A free iommu_group id (the core's IDA), for VFIO's fake noiommu groups:
   * iommu_group_alloc() numbers them in the same space as real groups.
   */
  allocGroupId(): number {
    let id = 0;
    while (this.groups.has(id) || this.fakeGroupIds.has(id)) id++;
    this.fakeGroupIds.add(id);
    return id;
  }

  /** iommu_group_put() of a fake group: its id is free again. */
  freeGroupId(id: number): void {
    this.fakeGroupIds.delete(id);
  }

  private readonly fakeGroupIds = new Set<number>();
  /** What each domain's table and record were when its table check last passed. */
  private readonly tableChecked = new WeakMap<
    IommuDomain,
    { pt: IoPageTable; writes: number; gen: number }
  >();

  /** Page-table frames held by every live domain. */
  /** The IOMMU layer's leak counters (m.debug.counters()): the driver's own first. */
  counters(): Record<string, number> {
    // (Object.assign, not a spread: the fuzzer reads the counters every step)
    return Object.assign({}, this.driver?.counters?.(), {
      ptFrames: this.ptFrames(),
      domains: this.liveDomains().length,
    });
  }

  ptFrames(): number {
    let n = 0;
    for (const d of this.liveDomains()) n += d.frames();
    return n;
  }

  /**
   * Add a device behind the IOMMU: joins group `groupId` (created when
   * new, with the driver's default domain) and gets sysfs nodes.
   */
  addDevice(
    name: string,
    groupId: number | undefined,
    flags: IommuDeviceFlags = {},
    pci = true,
  ): IommuDevice {
    const drv = this.driver;
    if (drv === undefined) throw new Error(`no IOMMU driver on a machine with iommu "${this.kind}"`);
    if (this.devices.has(name)) throw new Error(`device ${name} already has an IOMMU`);
    const id = groupId ?? this.freeRealGroupId();
    let g = this.groups.get(id);
    const probe = new IommuDevice(name, drv, undefined as unknown as IommuGroup, flags);
    if (g === undefined) {
      g = new IommuGroup(id, drv, this.defaultDomainFor(probe));
      this.groups.set(id, g);
      this.addGroupSysfs(g);
    } else if (g.ownerCnt > 0 && g.owner !== undefined) {
      throw new Error(`iommu_group ${id} is owned; hot-adding ${name} to it is not modelled`);
    }
    const dev = new IommuDevice(name, drv, g, flags);
    g.devices.push(dev);
    g.domain.users.add(name);
    this.devices.set(name, dev);
    if (drv instanceof IntelIommuDriver) drv.devices.push(dev);
    const vfs = this.ctx.vfs;
    const target = pci ? `../../../../devices/${pciRoot(name)}/${name}` : `../../../../devices/${name}`;
    vfs.add(`/sys/kernel/iommu_groups/${id}/devices/${name}`, { type: "link", target });
    if (pci) {
      vfs.add(`/sys/bus/pci/devices/${name}/iommu_group`, {
        type: "link",
        target: `../../../kernel/iommu_groups/${id}`,
      });
    }
    return dev;
  }

  /**
   * A selftest mock device (IOMMU_TEST_OP_MOCK_DOMAIN[_FLAGS]) on the mock
   * bus: its own group (generic_device_group). Only on a mock machine.
   */
  createMockDevice(flags: IommuDeviceFlags = {}): IommuDevice {
    if (!(this.driver instanceof MockIommuDriver)) throw new Error('mock devices need iommu: "mock"');
    return this.addDevice(`iommufd_mock${this.nextMock++}`, undefined, flags, false);
  }

  /**
   * Remove a device (mock device destroy, hot unplug). Its group must be
   * back on the default domain and unowned; the last device takes the group
   * and its default domain with it.
   */
  removeDevice(dev: IommuDevice): void {
    const g = dev.group;
    if (g.ownerCnt > 0) throw new Error(`removing ${dev.name} while its group is claimed`);
    g.devices.splice(g.devices.indexOf(dev), 1);
    g.domain.users.delete(dev.name);
    this.devices.delete(dev.name);
    if (this.driver instanceof IntelIommuDriver) {
      const l = this.driver.devices;
      l.splice(l.indexOf(dev), 1);
    }
    this.ctx.vfs.remove(`/sys/kernel/iommu_groups/${g.id}/devices/${dev.name}`);
    this.ctx.vfs.remove(`/sys/bus/pci/devices/${dev.name}/iommu_group`);
    if (g.devices.length === 0) {
      this.groups.delete(g.id);
      this.ctx.vfs.remove(`/sys/kernel/iommu_groups/${g.id}/type`);
      this.ctx.vfs.remove(`/sys/kernel/iommu_groups/${g.id}/reserved_regions`);
      if (g.defaultDomain.type === "paging") g.defaultDomain.free();
    }
  }

  /**
   * Invariant problems: every paging domain's table bytes agree with what
   * it believes it mapped. With `changedOnly`, a domain whose table saw no
   * write call and whose record did not change since it last passed is
   * not read again (the fuzzer's per-step check; a full check still reads
   * every table, and catches bytes changed behind the table's back).
   */
  checkInvariants(changedOnly = false): string[] {
    const out: string[] = [];
    for (const d of this.liveDomains()) {
      const pt = d.pt;
      const seen = pt === undefined ? undefined : this.tableChecked.get(d);
      if (
        changedOnly &&
        seen !== undefined &&
        seen.pt === pt &&
        seen.writes === pt!.writes() &&
        seen.gen === d.mapped.gen
      )
        continue;
      const found = checkDomainTable(d);
      if (found.length > 0) out.push(...found);
      else if (pt !== undefined) this.tableChecked.set(d, { pt, writes: pt.writes(), gen: d.mapped.gen });
    }
    for (const g of this.groups.values()) {
      if (g.domain.freed) out.push(`iommu_group ${g.id} is attached to freed domain ${g.domain.id}`);
      for (const dev of g.devices) {
        if (!g.domain.users.has(dev.name)) out.push(`${dev.name} missing from domain ${g.domain.id}'s users`);
      }
    }
    return out;
  }

  private defaultDomainFor(dev: IommuDevice): IommuDomain {
    const drv = this.driver!;
    const t = drv.defaultDomainType(dev);
    if (t === "blocked") return drv.blockedDomain;
    if (t === "platform" && drv.platformDomain !== undefined) return drv.platformDomain;
    if (t === "identity" && drv.identityDomain !== undefined) return drv.identityDomain;
    const d = drv.allocPaging(dev, 0);
    d.use = "dma";
    return d;
  }

  private freeRealGroupId(): number {
    let id = 0;
    while (this.groups.has(id) || this.fakeGroupIds.has(id)) id++;
    return id;
  }

  private addGroupSysfs(g: IommuGroup): void {
    const vfs = this.ctx.vfs;
    // /sys/kernel/iommu_groups/N/type: the default domain's type as the core prints it.
    vfs.add(`/sys/kernel/iommu_groups/${g.id}/type`, {
      type: "attr",
      read: () => {
        const t = g.defaultDomain.type;
        // iommu_group_show_type() has no name for PLATFORM: "unknown".
        return `${t === "paging" ? "DMA-FQ" : t === "identity" ? "identity" : t === "platform" ? "unknown" : "blocked"}\n`;
      },
    });
    // reserved_regions: "start end type" per region, 0x%016llx, merged across the group's devices.
    vfs.add(`/sys/kernel/iommu_groups/${g.id}/reserved_regions`, {
      type: "attr",
      read: () => {
        const seen = new Set<string>();
        const lines: string[] = [];
        for (const dev of g.devices) {
          for (const r of dev.resvRegions()) {
            const l = `0x${r.start.toString(16).padStart(16, "0")} 0x${r.last.toString(16).padStart(16, "0")} ${RESV_TYPE_NAMES[r.type]}`;
            if (!seen.has(l)) lines.push(l);
            seen.add(l);
          }
        }
        return lines.map((l) => `${l}\n`).join("");
      },
    });
  }
}

function pciRoot(bdf: string): string {
  // "0000:00:04.0" sits under /sys/devices/pci0000:00.
  return `pci${bdf.slice(0, 7)}`;
}

/**
 * Boot the IOMMU layer of a machine: pick the driver for `kind`, probe each
 * PCI function (groups per `group`, none for noIommu), publish counters
 * ("ptFrames", "domains") and the invariant check ("iommu").
 */
export function createIommuSubsystem(
  ctx: KernelCtx,
  kind: IommuKind,
  pciDevices: IommuPciDevice[],
  opts: { spapr?: SpaprMachineOptions } = {},
): IommuSubsystem {
  let driver: DriverBase | undefined;
  if (kind === "amd") driver = new AmdIommuDriver(ctx);
  else if (kind === "intel") driver = new IntelIommuDriver(ctx);
  else if (kind === "mock") driver = new MockIommuDriver(ctx);
  else if (kind === "spapr") driver = new SpaprTceIommuDriver(ctx, opts.spapr);
  const sub = new IommuSubsystem(ctx, kind, driver);
  if (driver !== undefined) {
    // Explicit group numbers first, so implicit ones never take them.
    const reserved = new Set(
      pciDevices.filter((d) => d.group !== undefined && !d.noIommu).map((d) => d.group!),
    );
    let next = 0;
    for (const d of pciDevices) {
      if (d.noIommu) continue;
      let id = d.group;
      if (id === undefined) {
        while (reserved.has(next) || sub.groups.has(next)) next++;
        id = next;
      }
      sub.addDevice(d.bdf, id, d.flags ?? {});
    }
  }
  return sub;
}
