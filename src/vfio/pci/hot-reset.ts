import type { PciFunction } from "../../hw/pci-dev.js";
import type { IommufdCtx } from "../../iommufd/ctx.js";
import type { KFile } from "../../kernel/file.js";
import type { Task } from "../../kernel/task.js";
import { EINVAL, ENODEV, ENOENT, ENOSPC, EPERM, fail } from "../../uapi/errno.js";
import { offsetOfEnd, structView } from "../../uapi/struct.js";
import {
  VFIO_PCI_DEVID_NOT_OWNED,
  VFIO_PCI_DEVID_OWNED,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
  vfio_pci_dependent_device,
  vfio_pci_hot_reset,
  vfio_pci_hot_reset_info,
} from "../../uapi/vfio.js";
import type { VfioDevice } from "../device.js";
import type { VfioGroup } from "../group.js";
import { vfioIommufdCtxHasGroup } from "../iommufd.js";
import { s32Array, vfioCopyIn, vfioCopyInStruct, vfioStructOut } from "../uaccess.js";

/** offsetofend(struct vfio_pci_hot_reset_info / vfio_pci_hot_reset, count): the arrays follow. */
const HDR_SIZE = offsetOfEnd(vfio_pci_hot_reset_info, "count");
const DEP_SIZE = vfio_pci_dependent_device.size;

/** What vfio-pci sees of the PCI topology and of the other VFIO devices. */
export interface VfioPciEnv {
  /** The VFIO device this vfio-pci instance drives. */
  readonly self: VfioDevice;
  /** Every PCI function of the machine. */
  pciFunctions(): readonly PciFunction[];
  /** The vfio-pci device registered for a BDF, if any. */
  vfioDevice(bdf: string): VfioDevice | undefined;
  /** iommu_group_get(): the function's iommu_group id (the fake one of a noiommu group), if any. */
  iommuGroupId(bdf: string): number | undefined;
  /** vfio_file_is_group(): the VFIO group a file is for, or null. */
  groupOfFile(file: KFile): VfioGroup | null;
  /** printk: what the host kernel logs (a blocked interrupt message). */
  printk?(msg: string): void;
}

/** Segment, bus and devfn of "dddd:bb:dd.f". */
export function bdfParts(bdf: string): { segment: number; bus: number; devfn: number } {
  const [seg, bus, df] = bdf.split(":");
  const [dev, fn] = df.split(".");
  return {
    segment: Number.parseInt(seg, 16),
    bus: Number.parseInt(bus, 16),
    devfn: (Number.parseInt(dev, 16) << 3) | Number.parseInt(fn, 16),
  };
}

/**
 * The hot (secondary bus) reset of vfio-pci (vfio_pci_core.c:
 * vfio_pci_ioctl_get_pci_hot_reset_info, vfio_pci_ioctl_pci_hot_reset,
 * vfio_pci_dev_set_hot_reset) over the model's topology: a function on
 * bus 0 sits on the root bus, which has no bridge to reset
 * (pci_probe_reset_bus fails: ENODEV, and such a device gets a dev_set of
 * its own); every function on another bus is behind one bridge whose
 * secondary bus reset resets them all. There are no hotplug slots, so the
 * slot reset is never available. The dev_set of a device on a non-root
 * bus is every vfio-pci device on that bus.
 */
export class VfioPciHotReset {
  constructor(private readonly env: VfioPciEnv) {}

  private get parts() {
    return bdfParts(this.env.self.bdf);
  }

  /** pci_walk_bus(pdev->bus): the functions the reset reaches, in devfn order. */
  private affected(): PciFunction[] {
    const { segment, bus } = this.parts;
    return this.env
      .pciFunctions()
      .filter((f) => {
        const p = bdfParts(f.bdf);
        return p.segment === segment && p.bus === bus;
      })
      .sort((a, b) => bdfParts(a.bdf).devfn - bdfParts(b.bdf).devfn);
  }

  /** The dev_set: every vfio-pci device on the bus (the device alone on the root bus). */
  private devSet(): VfioDevice[] {
    if (this.parts.bus === 0) return [this.env.self];
    return this.affected()
      .map((f) => this.env.vfioDevice(f.bdf))
      .filter((d): d is VfioDevice => d !== undefined);
  }

  private probe(what: string): void {
    if (this.parts.bus === 0) {
      fail(
        ENODEV,
        `${what}: ${this.env.self.bdf} is on the root bus: no slot or bus reset (pci_probe_reset_slot/bus fail)`,
      );
    }
  }

  /** vfio_iommufd_get_dev_id(): the bound device id, -ENOENT when the ctx owns its group, else -ENODEV. */
  private devId(vdev: VfioDevice, ictx: IommufdCtx): number {
    const b = vdev.iommufd;
    if (b !== null && b.ictx === ictx) return b.idev.id;
    const group = vdev.iommuDev?.group;
    if (group === undefined) return -ENODEV;
    return vfioIommufdCtxHasGroup(ictx, group) ? -ENOENT : -ENODEV;
  }

  /** VFIO_DEVICE_GET_PCI_HOT_RESET_INFO. */
  info(task: Task, arg: bigint): number {
    const { argsz } = vfioCopyIn(task, arg, HDR_SIZE, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO");
    const { s: hdr, buf: hdrBytes } = vfioStructOut(vfio_pci_hot_reset_info);
    hdr.argsz = argsz;
    this.probe("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO");
    const fns = this.affected();
    if (fns.length > Math.floor((argsz - HDR_SIZE) / DEP_SIZE)) {
      // The header still goes back: flags 0 and the count needed.
      hdr.count = fns.length;
      task.copyToUser(arg, hdrBytes);
      fail(
        ENOSPC,
        `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: ${fns.length} dependent devices do not fit argsz ${argsz}`,
      );
    }
    const self = this.env.self;
    let flags = self.cdevOpened ? VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED : 0;
    const ictx = self.iommufd?.ictx ?? null;
    const inSet = new Set(this.devSet());
    const out = new Uint8Array(fns.length * DEP_SIZE);
    fns.forEach((f, i) => {
      const dep = structView(vfio_pci_dependent_device, out.subarray(i * DEP_SIZE, (i + 1) * DEP_SIZE));
      const p = bdfParts(f.bdf);
      dep.segment = p.segment;
      dep.bus = p.bus;
      dep.devfn = p.devfn;
      if (flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID) {
        const vdev = this.env.vfioDevice(f.bdf);
        let devid = VFIO_PCI_DEVID_NOT_OWNED;
        if (vdev !== undefined && inSet.has(vdev) && ictx !== null) {
          const id = this.devId(vdev, ictx);
          devid = id > 0 ? id : id === -ENOENT ? VFIO_PCI_DEVID_OWNED : VFIO_PCI_DEVID_NOT_OWNED;
        }
        if (devid === VFIO_PCI_DEVID_NOT_OWNED) flags &= ~VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
        dep.devid = devid;
      } else {
        const gid = this.env.iommuGroupId(f.bdf);
        if (gid === undefined)
          fail(
            EPERM,
            `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: ${f.bdf} has no iommu_group (cannot reset non-isolated devices)`,
          );
        dep.group_id = gid;
      }
    });
    task.copyToUser(arg + BigInt(HDR_SIZE), out);
    hdr.flags = flags;
    hdr.count = fns.length;
    task.copyToUser(arg, hdrBytes);
    return 0;
  }

  /** VFIO_DEVICE_PCI_HOT_RESET: group fds on the group path, a zero-length array on a cdev. */
  reset(task: Task, arg: bigint): number {
    const { s: hdr } = vfioCopyInStruct(task, arg, vfio_pci_hot_reset, HDR_SIZE, "VFIO_DEVICE_PCI_HOT_RESET");
    const { flags, count } = hdr;
    if (flags !== 0) fail(EINVAL, `VFIO_DEVICE_PCI_HOT_RESET: flags must be 0 (0x${flags.toString(16)})`);
    const self = this.env.self;
    if ((count !== 0) === self.cdevOpened) {
      fail(
        EINVAL,
        self.cdevOpened
          ? "VFIO_DEVICE_PCI_HOT_RESET: a cdev-opened device passes a zero-length group array (ownership comes from its iommufd)"
          : "VFIO_DEVICE_PCI_HOT_RESET: a group-opened device passes the group fds of every affected device",
      );
    }
    this.probe("VFIO_DEVICE_PCI_HOT_RESET");
    let groups: VfioGroup[] | null = null;
    if (count !== 0) {
      if (count > this.affected().length)
        fail(
          EINVAL,
          `VFIO_DEVICE_PCI_HOT_RESET: ${count} group fds for ${this.affected().length} affected devices`,
        );
      const fds = s32Array(task.copyFromUser(arg + BigInt(HDR_SIZE), count * 4), count);
      groups = [];
      for (const fd of fds) {
        const g = this.env.groupOfFile(task.fdget(fd));
        if (g === null) fail(EINVAL, `VFIO_DEVICE_PCI_HOT_RESET: fd ${fd} is not a VFIO group`);
        groups.push(g);
      }
    }
    const ictx = groups === null ? (self.iommufd?.ictx ?? null) : null;
    // vfio_pci_dev_set_resettable: every function the reset reaches must be a vfio-pci device of the set.
    const set = this.devSet();
    for (const f of this.affected()) {
      const d = this.env.vfioDevice(f.bdf);
      if (d === undefined || !set.includes(d))
        fail(EINVAL, `VFIO_DEVICE_PCI_HOT_RESET: ${f.bdf} on the same bus is not bound to vfio-pci`);
    }
    for (const d of set) {
      let owned: boolean;
      if (ictx !== null) {
        const id = this.devId(d, ictx);
        owned = id > 0 || id === -ENOENT;
      } else owned = groups?.includes(d.group) ?? false;
      if (!owned) {
        fail(
          EINVAL,
          ictx !== null
            ? `VFIO_DEVICE_PCI_HOT_RESET: ${d.bdf} is not bound to this iommufd and its iommu_group is not owned by it`
            : `VFIO_DEVICE_PCI_HOT_RESET: the group of ${d.bdf} (${d.group.id}) is not among the group fds`,
        );
      }
    }
    // pci_reset_bus: a secondary bus reset with config state saved and restored around it.
    for (const f of this.affected()) f.resetFunction();
    return 0;
  }
}
