import type { PciFunction } from "../../hw/pci-dev.js";
import {
  PCI_CAP_ID_EXP,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_MSIX_ENTRY_SIZE,
} from "../../hw/pci-regs.js";
import { PAGE_SIZE } from "../../hw/phys-mem.js";
import type { KFile } from "../../kernel/file.js";
import type { Task } from "../../kernel/task.js";
import type { IoMem } from "../../mm/io-mem.js";
import { EFAULT, EINVAL, EIO, ENOTTY, fail } from "../../uapi/errno.js";
import { offsetOfEnd, structView } from "../../uapi/struct.js";
import {
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_OFFSET_SHIFT,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  vfio_device_info,
  vfio_irq_info,
  vfio_irq_set,
  vfio_region_info,
} from "../../uapi/vfio.js";
import type { VfioDeviceOps } from "../device.js";
import { vfioCheckFeature } from "../device-feature.js";
import { VFIO_IRQ_SET_MINSZ, vfioSetIrqsValidate } from "../irq-set.js";
import { vfioCopyIn, vfioCopyInStruct, vfioStructOut, writeCaps } from "../uaccess.js";
import { VfioPciConfig } from "./config.js";
import { type VfioPciEnv, VfioPciHotReset } from "./hot-reset.js";
import { VfioPciIrqs } from "./intrs.js";
import { VfioPciIoeventfds } from "./ioeventfd.js";
import { VfioPciLowPower } from "./low-power.js";
import { matchTokenUuid, type VfioPciSriov, type VfToken, vfioPciMatch } from "./sriov.js";

const OFFSET_MASK = (1n << BigInt(VFIO_PCI_OFFSET_SHIFT)) - 1n;
/** The handlers' minsz: offsetofend(vfio_device_info, num_irqs), (vfio_region_info, offset), (vfio_irq_info, count). */
const INFO_MINSZ = offsetOfEnd(vfio_device_info, "num_irqs");
const REGION_INFO_MINSZ = offsetOfEnd(vfio_region_info, "offset");
const IRQ_INFO_MINSZ = offsetOfEnd(vfio_irq_info, "count");

/**
 * vfio-pci (drivers/vfio/pci/vfio_pci_core.c) over a model PCI function:
 * open enables the function (memory decode on, bus mastering off, a
 * function reset when it has FLR); region access by pread/pwrite at
 * index << 40; BAR mmap; INFO ioctls; SET_IRQS; RESET; the hot reset
 * ioctls; IOEVENTFD; the low-power device features.
 */
export class VfioPciCore implements VfioDeviceOps, VfioPciSriov {
  readonly name = "vfio-pci";
  /** vdev->vf_token: a PF's VF token (vfio_pci_vf_init; see ./sriov.ts). */
  vfToken: VfToken | null = null;
  /** vdev->sriov_pf_core_dev: a VF's vfio-pci PF. */
  sriovPf: VfioPciCore | null = null;
  /** vdev->reset_works: the function reset at open succeeded. */
  resetWorks = false;
  private cfg: VfioPciConfig | null = null;
  readonly irqs: VfioPciIrqs;
  private readonly msixBar: number;
  private readonly isPcie: boolean;
  readonly lowPower = new VfioPciLowPower();
  readonly ioeventfds: VfioPciIoeventfds;
  private hotReset: VfioPciHotReset | null = null;

  get bdf(): string {
    return this.fn.bdf;
  }

  get isVirtfn(): boolean {
    return this.fn.physfn !== null;
  }

  /** vfio_pci_core_match: the group path's device name, with an optional "vf_token=<uuid>". */
  match(name: string): boolean {
    return vfioPciMatch(this, name);
  }

  /** vfio_pci_core_match_token_uuid: the cdev path's token check at BIND_IOMMUFD. */
  matchTokenUuid(uuid: Uint8Array | null): void {
    matchTokenUuid(this, uuid);
  }

  constructor(readonly fn: PciFunction) {
    this.irqs = new VfioPciIrqs(fn);
    this.msixBar = fn.msix?.bar ?? 0xff;
    this.isPcie = fn.config.findCap(PCI_CAP_ID_EXP) !== 0;
    this.ioeventfds = new VfioPciIoeventfds(fn, this.msixBar);
  }

  /** The topology and the other VFIO devices, for the hot reset (set at registration). */
  setEnv(env: VfioPciEnv): void {
    this.hotReset = new VfioPciHotReset(env);
    this.irqs.log = env.printk ? (m) => env.printk?.(m) : null;
  }

  pmRuntimeGet(): void {
    this.lowPower.resume();
  }

  // --- open/close (vfio_pci_core_enable / vfio_pci_core_disable) ------------

  openDevice(): void {
    const fn = this.fn;
    // Don't let the saved state include bus mastering; enable decode.
    const cmd = fn.configRead(PCI_COMMAND, 2);
    fn.configWrite(PCI_COMMAND, 2, (cmd & ~PCI_COMMAND_MASTER) | PCI_COMMAND_MEMORY);
    this.resetWorks = fn.hasFlr();
    if (this.resetWorks) fn.resetFunction();
    this.cfg = new VfioPciConfig(fn, () => this.reset());
    fn.msiSink = (_f, msg) => this.irqs.deliver(msg);
    // vfio_pci_core_finish_enable(): an open VF counts as a user of its PF's token
    const pfTok = this.sriovPf?.vfToken;
    if (pfTok) pfTok.users++;
  }

  closeDevice(): void {
    const fn = this.fn;
    const pfTok = this.sriovPf?.vfToken;
    if (pfTok) {
      if (pfTok.users === 0) throw new Error(`${fn.bdf}: VF token users underflow`);
      pfTok.users--;
    }
    this.lowPower.exit();
    this.ioeventfds.disableAll();
    fn.configWrite(PCI_COMMAND, 2, fn.configRead(PCI_COMMAND, 2) & ~PCI_COMMAND_MASTER);
    this.irqs.disableAll();
    if (this.resetWorks) fn.resetFunction();
    fn.msiSink = null;
    this.cfg = null;
  }

  // --- ioctls ---------------------------------------------------------------

  ioctl(task: Task, cmd: number, arg: bigint): number {
    switch (cmd) {
      case VFIO_DEVICE_GET_INFO:
        return this.getInfo(task, arg);
      case VFIO_DEVICE_GET_REGION_INFO:
        return this.getRegionInfo(task, arg);
      case VFIO_DEVICE_GET_IRQ_INFO:
        return this.getIrqInfo(task, arg);
      case VFIO_DEVICE_SET_IRQS:
        return this.setIrqs(task, arg);
      case VFIO_DEVICE_RESET:
        if (!this.resetWorks) fail(EINVAL, "VFIO_DEVICE_RESET: the device has no working function reset");
        this.reset();
        return 0;
      case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
        if (this.hotReset === null) return fail(ENOTTY, "vfio-pci: no PCI topology for a hot reset");
        return this.hotReset.info(task, arg);
      case VFIO_DEVICE_PCI_HOT_RESET:
        if (this.hotReset === null) return fail(ENOTTY, "vfio-pci: no PCI topology for a hot reset");
        return this.hotReset.reset(task, arg);
      case VFIO_DEVICE_IOEVENTFD:
        return this.ioeventfds.ioctl(task, arg);
      default:
        return fail(ENOTTY, `vfio-pci does not handle ioctl 0x${(cmd >>> 0).toString(16)}`);
    }
  }

  /**
   * vfio_pci_core_ioctl_feature: the low-power features; PCI_VF_TOKEN is
   * ENOTTY without SR-IOV (vdev->vf_token unset), like everything else.
   */
  feature(task: Task, flags: number, arg: bigint, argsz: number): number {
    switch (flags & VFIO_DEVICE_FEATURE_MASK) {
      case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
        return this.lowPower.entry(flags, argsz);
      case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP:
        return this.lowPower.entryWithWakeup(task, flags, arg, argsz);
      case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
        return this.lowPower.exitFeature(flags, argsz);
      case VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:
        return this.featureToken(task, flags, arg, argsz);
      default:
        return fail(ENOTTY, `vfio-pci: device feature ${flags & 0xffff} is not supported by this device`);
    }
  }

  /**
   * vfio_pci_core_feature_token: only a PF has a token (ENOTTY otherwise);
   * SET only (GET would reveal a previous user's token: EINVAL), a 16-byte
   * UUID. The PF's user may replace the token at any time, VFs open or not.
   */
  private featureToken(task: Task, flags: number, arg: bigint, argsz: number): number {
    const tok = this.vfToken;
    if (tok === null)
      return fail(
        ENOTTY,
        `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN: ${this.fn.bdf} is not an SR-IOV PF (no VF token)`,
      );
    if (vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 16, "VFIO_DEVICE_FEATURE_PCI_VF_TOKEN") !== 1)
      return 0;
    tok.uuid = task.copyFromUser(arg, 16).slice();
    return 0;
  }

  /**
   * vfio_pci_ioctl_get_info: minsz 16; the reply is a zeroed struct
   * vfio_device_info copied for min(argsz, 24) bytes (so cap_offset and pad
   * are written as 0 when they fit). No capability applies (no zPCI, the
   * function has no AtomicOps completer bits).
   */
  private getInfo(task: Task, arg: bigint): number {
    const { argsz } = vfioCopyIn(task, arg, INFO_MINSZ, "VFIO_DEVICE_GET_INFO");
    const { s: info, buf } = vfioStructOut(vfio_device_info);
    info.argsz = argsz;
    info.flags = VFIO_DEVICE_FLAGS_PCI | (this.resetWorks ? VFIO_DEVICE_FLAGS_RESET : 0);
    info.num_regions = VFIO_PCI_NUM_REGIONS;
    info.num_irqs = VFIO_PCI_NUM_IRQS;
    task.copyToUser(arg, buf.subarray(0, Math.min(argsz, vfio_device_info.size)));
    return 0;
  }

  /** vfio_pci_ioctl_get_region_info: minsz 32, offset = index << 40, MSIX_MAPPABLE on the MSI-X BAR. */
  private getRegionInfo(task: Task, arg: bigint): number {
    const {
      s: info,
      buf,
      argsz,
    } = vfioCopyInStruct(task, arg, vfio_region_info, REGION_INFO_MINSZ, "VFIO_DEVICE_GET_REGION_INFO");
    const index = info.index;
    let flags = 0;
    let size = 0n;
    const caps: { id: number; version: number; payload: Uint8Array }[] = [];
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) {
      size = BigInt(this.fn.config.size);
      flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    } else if (index < VFIO_PCI_ROM_REGION_INDEX) {
      size = BigInt(this.fn.barSize(index));
      if (size !== 0n) {
        flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if (this.barMmapSupported(index)) {
          flags |= VFIO_REGION_INFO_FLAG_MMAP;
          if (index === this.msixBar)
            caps.push({ id: VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, version: 1, payload: new Uint8Array(0) });
        }
      }
    } else if (index === VFIO_PCI_ROM_REGION_INDEX) {
      size = 0n; // no expansion ROM: size 0, flags 0
    } else if (index === VFIO_PCI_VGA_REGION_INDEX) {
      fail(EINVAL, "VFIO_DEVICE_GET_REGION_INFO: the device has no VGA region");
    } else {
      fail(EINVAL, `VFIO_DEVICE_GET_REGION_INFO: index ${index} past the ${VFIO_PCI_NUM_REGIONS} regions`);
    }
    info.flags = flags;
    info.size = size;
    info.offset = BigInt(index) << BigInt(VFIO_PCI_OFFSET_SHIFT);
    info.cap_offset = 0;
    if (caps.length > 0) {
      info.flags = flags | VFIO_REGION_INFO_FLAG_CAPS;
      const r = writeCaps(task, arg, argsz, vfio_region_info.size, caps);
      info.argsz = r.argsz;
      info.cap_offset = r.capOffset;
    }
    task.copyToUser(arg, buf.subarray(0, REGION_INFO_MINSZ));
    return 0;
  }

  /** vfio_pci_ioctl_get_irq_info: minsz 16; ERR only on PCIe; index >= 5 EINVAL. */
  private getIrqInfo(task: Task, arg: bigint): number {
    const { s: info, buf } = vfioCopyInStruct(
      task,
      arg,
      vfio_irq_info,
      IRQ_INFO_MINSZ,
      "VFIO_DEVICE_GET_IRQ_INFO",
    );
    const index = info.index;
    if (index >= VFIO_PCI_NUM_IRQS)
      fail(EINVAL, `VFIO_DEVICE_GET_IRQ_INFO: index ${index} past the 5 IRQ types`);
    if (index === VFIO_PCI_ERR_IRQ_INDEX && !this.isPcie)
      fail(EINVAL, "the ERR IRQ exists only on PCI Express devices");
    let flags = VFIO_IRQ_INFO_EVENTFD;
    flags |=
      index === VFIO_PCI_INTX_IRQ_INDEX
        ? VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
        : VFIO_IRQ_INFO_NORESIZE;
    info.flags = flags;
    info.count = this.irqs.count(index, this.isPcie);
    task.copyToUser(arg, buf.subarray(0, IRQ_INFO_MINSZ));
    return 0;
  }

  /** vfio_pci_ioctl_set_irqs: the core validation, then the per-index handler. */
  private setIrqs(task: Task, arg: bigint): number {
    const hdr = structView(vfio_irq_set, task.copyFromUser(arg, VFIO_IRQ_SET_MINSZ));
    const max = this.irqs.count(hdr.index, this.isPcie);
    const dataSize = vfioSetIrqsValidate(hdr, max, VFIO_PCI_NUM_IRQS);
    const data =
      dataSize > 0 ? task.copyFromUser(arg + BigInt(VFIO_IRQ_SET_MINSZ), dataSize) : new Uint8Array(0);
    return this.irqs.set(task, hdr.flags, hdr.index, hdr.start, hdr.count, data);
  }

  /** pci_try_reset_function(): device state cleared, config saved and restored around the FLR. */
  private reset(): void {
    this.fn.resetFunction();
  }

  // --- region access (vfio_pci_rw) ------------------------------------------

  read(_task: Task, len: number, off: bigint): Uint8Array {
    if (len === 0) return new Uint8Array(0);
    const { index, pos } = this.split(off);
    this.lowPower.resume(); // vfio_pci_rw: pm_runtime_resume_and_get
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return this.configRw(pos, len, null) as Uint8Array;
    if (index === VFIO_PCI_ROM_REGION_INDEX || index >= VFIO_PCI_ROM_REGION_INDEX) {
      fail(EINVAL, `region ${index} has nothing to read (no ROM, no VGA)`);
    }
    return this.barRw(index, pos, len, null) as Uint8Array;
  }

  write(_task: Task, bytes: Uint8Array, off: bigint): number {
    if (bytes.length === 0) return 0;
    const { index, pos } = this.split(off);
    this.lowPower.resume(); // vfio_pci_rw: pm_runtime_resume_and_get
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return this.configRw(pos, bytes.length, bytes) as number;
    if (index >= VFIO_PCI_ROM_REGION_INDEX) fail(EINVAL, `region ${index} is not writable (no ROM, no VGA)`);
    return this.barRw(index, pos, bytes.length, bytes) as number;
  }

  private split(off: bigint): { index: number; pos: number } {
    const index = Number(off >> BigInt(VFIO_PCI_OFFSET_SHIFT));
    if (index >= VFIO_PCI_NUM_REGIONS)
      fail(EINVAL, `offset 0x${off.toString(16)} is in region ${index}, past the last one`);
    return { index, pos: Number(off & OFFSET_MASK) };
  }

  /** vfio_pci_config_rw: aligned 4/2/1-byte pieces; outside config space is EFAULT. */
  private configRw(pos: number, count: number, bytes: Uint8Array | null): Uint8Array | number {
    const cfg = this.cfg!;
    if (pos + count > cfg.size) {
      fail(
        EFAULT,
        `config access [0x${pos.toString(16)}, +${count}) runs past the ${cfg.size}-byte config space`,
      );
    }
    const out = new Uint8Array(count);
    for (let done = 0; done < count; ) {
      const p = pos + done;
      const left = count - done;
      const n: 1 | 2 | 4 = left >= 4 && p % 4 === 0 ? 4 : left >= 2 && p % 2 === 0 ? 2 : 1;
      if (bytes === null) {
        const v = cfg.read(p, n);
        for (let i = 0; i < n; i++) out[done + i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
      } else {
        let v = 0;
        for (let i = n - 1; i >= 0; i--) v = v * 256 + bytes[done + i];
        cfg.write(p, n, v);
      }
      done += n;
    }
    return bytes === null ? out : count;
  }

  /**
   * vfio_pci_bar_rw: EINVAL for an unimplemented BAR or an offset past its
   * end (the count is clipped to the BAR), EIO with memory decode off; the
   * MSI-X table reads as ones and ignores writes (the host owns it).
   */
  private barRw(bar: number, pos: number, count: number, bytes: Uint8Array | null): Uint8Array | number {
    const end = this.fn.barSize(bar);
    if (end === 0) fail(EINVAL, `BAR ${bar} is not implemented`);
    if (pos >= end)
      fail(EINVAL, `offset 0x${pos.toString(16)} is past the end of BAR ${bar} (0x${end.toString(16)})`);
    const n = Math.min(count, end - pos);
    // __vfio_pci_memory_enabled(): the command register's memory bit (a VF has none: its PF's VF MSE)
    if (!this.fn.memoryDecode()) {
      fail(EIO, "BAR access with memory decode disabled in the command register");
    }
    let xs = 0;
    let xe = 0;
    if (bar === this.msixBar && this.fn.msix !== null) {
      xs = this.fn.msix.tableOffset;
      xe = xs + this.fn.msix.vectors * PCI_MSIX_ENTRY_SIZE;
    }
    if (bytes === null) {
      const out = this.fn.mmioRead(bar, pos, n);
      for (let i = 0; i < n; i++) if (pos + i >= xs && pos + i < xe) out[i] = 0xff;
      return out;
    }
    // Writes skip the excluded table bytes.
    let i = 0;
    while (i < n) {
      if (pos + i >= xs && pos + i < xe) {
        i++;
        continue;
      }
      let j = i;
      while (j < n && !(pos + j >= xs && pos + j < xe)) j++;
      this.fn.mmioWrite(bar, pos + i, bytes.subarray(i, j));
      i = j;
    }
    return n;
  }

  // --- mmap (vfio_pci_core_mmap) --------------------------------------------

  private barMmapSupported(bar: number): boolean {
    return this.fn.barSize(bar) >= PAGE_SIZE;
  }

  mmap(file: KFile, _task: Task, len: bigint, off: bigint, _prot: number): IoMem {
    const index = Number(off >> BigInt(VFIO_PCI_OFFSET_SHIFT));
    if (index >= VFIO_PCI_NUM_REGIONS) fail(EINVAL, `mmap: region ${index} does not exist`);
    if (index >= VFIO_PCI_ROM_REGION_INDEX)
      fail(EINVAL, `mmap: region ${index} (ROM/config/VGA) cannot be mapped`);
    if (!this.barMmapSupported(index))
      fail(EINVAL, `mmap: BAR ${index} cannot be mapped (absent or smaller than a page)`);
    const physLen = BigInt(Math.ceil(this.fn.barSize(index) / PAGE_SIZE) * PAGE_SIZE);
    const reqLen = (len + BigInt(PAGE_SIZE - 1)) & ~BigInt(PAGE_SIZE - 1);
    const reqStart = off & OFFSET_MASK;
    if (reqStart + reqLen > physLen)
      fail(
        EINVAL,
        `mmap: [0x${reqStart.toString(16)}, +0x${reqLen.toString(16)}) is past the end of BAR ${index}`,
      );
    const fn = this.fn;
    const pm = this.lowPower;
    const at = (o: number) => ({
      bar: Number(BigInt(o) >> BigInt(VFIO_PCI_OFFSET_SHIFT)),
      pos: Number(BigInt(o) & OFFSET_MASK),
    });
    return {
      kind: "io",
      read(o, n) {
        const { bar, pos } = at(o);
        // With memory decode off or in runtime low power, vfio's fault handler gives SIGBUS.
        if (!fn.memoryDecode() || pm.engaged) return -EFAULT;
        return fn.mmioRead(bar, pos, n);
      },
      write(o, b) {
        const { bar, pos } = at(o);
        if (!fn.memoryDecode() || pm.engaged) return -EFAULT;
        fn.mmioWrite(bar, pos, b);
        return 0;
      },
      // vm_pgoff is the BAR's bus address in pages: the PTE maps the BAR itself
      pfn(o) {
        const { bar, pos } = at(o);
        if (!fn.memoryDecode() || pm.engaged) return -1;
        return Number((fn.barAddress(bar) + BigInt(pos)) >> 12n);
      },
      get: () => void file.get(),
      put: () => void file.put(),
    };
  }
}

export { VFIO_PCI_REQ_IRQ_INDEX };
