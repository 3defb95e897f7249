import type { MsiMessage, PciFunction } from "../../hw/pci-dev.js";
import {
  MSI_ADDR_BASE,
  PCI_CAP_ID_MSI,
  PCI_CAP_ID_MSIX,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSIX_ENTRY_CTRL_MASKBIT,
  PCI_MSIX_ENTRY_DATA,
  PCI_MSIX_ENTRY_LOWER_ADDR,
  PCI_MSIX_ENTRY_SIZE,
  PCI_MSIX_ENTRY_VECTOR_CTRL,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
} from "../../hw/pci-regs.js";
import type { EventFdCtx } from "../../kernel/eventfd.js";
import type { KFile } from "../../kernel/file.js";
import type { Task } from "../../kernel/task.js";
import { EINVAL, ENOTTY, fail } from "../../uapi/errno.js";
import {
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
} from "../../uapi/vfio.js";
import { s32Array } from "../uaccess.js";

/** An eventfd a trigger holds (eventfd_ctx_fdget keeps the file). */
export interface Trigger {
  file: KFile;
  ctx: EventFdCtx;
}

/**
 * The host's MSI data for vector v is HOST_VECTOR_BASE + v, at MSI_ADDR_BASE:
 * the interrupt the host set up for that vector (its remapping entry).
 */
const HOST_VECTOR_BASE = 0x40;

/**
 * vfio_pci_intrs.c for the functions the model has: MSI and MSI-X with
 * eventfd triggers (loopback with DATA_NONE/DATA_BOOL), ERR and REQ
 * single triggers. INTx is never offered (the memcpy device has no pin),
 * so its index has 0 vectors and the core validation rejects it.
 */
export class VfioPciIrqs {
  /** VFIO_PCI_NUM_IRQS means none (vdev->irq_type). */
  irqType = VFIO_PCI_NUM_IRQS;
  private ctx: (Trigger | null)[] = [];
  errTrigger: Trigger | null = null;
  reqTrigger: Trigger | null = null;

  constructor(private readonly fn: PciFunction) {}

  /** vfio_pci_get_irq_count(). */
  count(index: number, isPcie: boolean): number {
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        return this.fn.configRead(0x3d, 1) !== 0 ? 1 : 0;
      case VFIO_PCI_MSI_IRQ_INDEX:
        return this.fn.msiCapable();
      case VFIO_PCI_MSIX_IRQ_INDEX:
        return this.fn.msixCapable();
      case VFIO_PCI_ERR_IRQ_INDEX:
        return isPcie ? 1 : 0;
      case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
      default:
        return 0;
    }
  }

  /** vfio_pci_set_irqs_ioctl(): pick the handler by index and action; ENOTTY when none. */
  set(task: Task, flags: number, index: number, start: number, count: number, data: Uint8Array): number {
    const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    if (index === VFIO_PCI_MSI_IRQ_INDEX || index === VFIO_PCI_MSIX_IRQ_INDEX) {
      if (action === VFIO_IRQ_SET_ACTION_TRIGGER)
        return this.setMsiTrigger(task, index, start, count, flags, data);
      if (action === VFIO_IRQ_SET_ACTION_MASK || action === VFIO_IRQ_SET_ACTION_UNMASK) {
        fail(ENOTTY, "vfio-pci has no MSI/MSI-X masking through SET_IRQS");
      }
    }
    if (
      (index === VFIO_PCI_ERR_IRQ_INDEX || index === VFIO_PCI_REQ_IRQ_INDEX) &&
      action === VFIO_IRQ_SET_ACTION_TRIGGER
    ) {
      if (start !== 0 || count > 1) fail(EINVAL, "SET_IRQS: ERR/REQ have one vector (start 0, count <= 1)");
      const slot = index === VFIO_PCI_ERR_IRQ_INDEX ? "errTrigger" : "reqTrigger";
      this[slot] = this.setSingle(task, this[slot], count, flags, data);
      return 0;
    }
    return fail(ENOTTY, `SET_IRQS: no handler for index ${index} with action 0x${action.toString(16)}`);
  }

  /** Disable whatever is enabled (vfio_pci_core_disable's DATA_NONE|TRIGGER with count 0). */
  disableAll(): void {
    if (this.irqType === VFIO_PCI_MSI_IRQ_INDEX || this.irqType === VFIO_PCI_MSIX_IRQ_INDEX)
      this.msiDisable();
    if (this.errTrigger !== null) this.errTrigger.file.put();
    if (this.reqTrigger !== null) this.reqTrigger.file.put();
    this.errTrigger = this.reqTrigger = null;
  }

  /** Triggers held (eventfd files kept open by the device). */
  heldTriggers(): number {
    return this.ctx.filter((t) => t !== null).length + (this.errTrigger ? 1 : 0) + (this.reqTrigger ? 1 : 0);
  }

  /** Where a blocked message is reported (dmesg); set with the device's environment. */
  log: ((msg: string) => void) | null = null;

  /**
   * The interrupt layer: a message lands on the eventfd of the vector whose
   * address and data the host programmed, found by the message itself (as
   * interrupt remapping looks up its entry), not by the table slot that
   * sent it. So an entry the user rewrote through the MSI-X BAR mapping
   * sends a message the host never set up: remapping blocks it, and it is
   * lost (a line in dmesg); an entry made a copy of another vector's
   * message fires that vector.
   */
  deliver(msg: MsiMessage): void {
    const want = msg.kind === "msix" ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
    if (this.irqType !== want) return;
    const v = msg.data - HOST_VECTOR_BASE;
    if (msg.addr !== BigInt(MSI_ADDR_BASE) || v < 0 || v >= this.ctx.length) {
      this.log?.(
        `DMAR: [INTR-REMAP] ${this.fn.bdf}: ${msg.kind === "msix" ? "MSI-X" : "MSI"} vector ${msg.vector} ` +
          `sent addr 0x${msg.addr.toString(16)} data 0x${msg.data.toString(16)}, no interrupt the host set up: blocked`,
      );
      return;
    }
    this.ctx[v]?.ctx.signal(1n);
  }

  private setMsiTrigger(
    task: Task,
    index: number,
    start: number,
    count: number,
    flags: number,
    data: Uint8Array,
  ): number {
    if (this.irqType === index && count === 0 && (flags & VFIO_IRQ_SET_DATA_NONE) !== 0) {
      this.msiDisable();
      return 0;
    }
    if (this.irqType !== index && this.irqType !== VFIO_PCI_NUM_IRQS) {
      fail(EINVAL, `SET_IRQS: another interrupt type (index ${this.irqType}) is enabled; disable it first`);
    }
    if ((flags & VFIO_IRQ_SET_DATA_EVENTFD) !== 0) {
      const fds = s32Array(data, count);
      // Resolve every fd before changing anything, so a bad one changes nothing.
      const triggers: (Trigger | null)[] = [];
      try {
        for (const fd of fds) triggers.push(fd < 0 ? null : eventfdGet(task, fd));
      } catch (e) {
        for (const t of triggers) t?.file.put();
        throw e;
      }
      if (this.irqType === index) {
        if (start + count > this.ctx.length) {
          for (const t of triggers) t?.file.put();
          fail(
            EINVAL,
            `SET_IRQS: vectors [${start}, ${start + count}) beyond the ${this.ctx.length} enabled`,
          );
        }
      } else {
        this.msiEnable(index, start + count);
      }
      for (let i = 0; i < count; i++) {
        const old = this.ctx[start + i];
        if (old !== null) old.file.put();
        this.ctx[start + i] = triggers[i];
      }
      return 0;
    }
    if (this.irqType !== index || start + count > this.ctx.length) {
      fail(EINVAL, "SET_IRQS: loopback trigger of vectors that are not enabled");
    }
    for (let i = start; i < start + count; i++) {
      const t = this.ctx[i];
      if (t === null) continue;
      if (
        (flags & VFIO_IRQ_SET_DATA_NONE) !== 0 ||
        ((flags & VFIO_IRQ_SET_DATA_BOOL) !== 0 && data[i - start] !== 0)
      ) {
        t.ctx.signal(1n);
      }
    }
    return 0;
  }

  /** vfio_pci_set_ctx_trigger_single(). */
  private setSingle(
    task: Task,
    cur: Trigger | null,
    count: number,
    flags: number,
    data: Uint8Array,
  ): Trigger | null {
    if ((flags & VFIO_IRQ_SET_DATA_NONE) !== 0) {
      if (cur !== null) {
        if (count !== 0) {
          cur.ctx.signal(1n);
          return cur;
        }
        cur.file.put();
        return null;
      }
      return cur;
    }
    if ((flags & VFIO_IRQ_SET_DATA_BOOL) !== 0) {
      if (count === 0) fail(EINVAL, "SET_IRQS: DATA_BOOL with count 0");
      if (data[0] !== 0 && cur !== null) cur.ctx.signal(1n);
      return cur;
    }
    if (count === 0) fail(EINVAL, "SET_IRQS: DATA_EVENTFD with count 0");
    const [fd] = s32Array(data, 1);
    if (fd === -1) {
      cur?.file.put();
      return null;
    }
    if (fd < 0) return cur;
    const t = eventfdGet(task, fd);
    cur?.file.put();
    return t;
  }

  /**
   * vfio_msi_enable(): the host allocates `nvec` vectors and programs the
   * function's real capability (vconfig stays what the user wrote).
   */
  private msiEnable(index: number, nvec: number): void {
    const fn = this.fn;
    const cmd = fn.configRead(PCI_COMMAND, 2);
    // vfio_pci_memory_lock_and_enable: the MSI-X table is in a BAR.
    fn.configWrite(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY);
    if (index === VFIO_PCI_MSI_IRQ_INDEX) {
      const pos = fn.config.findCap(PCI_CAP_ID_MSI);
      const mme = Math.ceil(Math.log2(nvec));
      fn.configWrite(pos + PCI_MSI_ADDRESS_LO, 4, MSI_ADDR_BASE);
      fn.configWrite(pos + PCI_MSI_ADDRESS_HI, 4, 0);
      fn.configWrite(pos + PCI_MSI_DATA_64, 2, HOST_VECTOR_BASE);
      fn.configWrite(pos + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | (mme << 4));
    } else {
      const pos = fn.config.findCap(PCI_CAP_ID_MSIX);
      const m = fn.msix!;
      for (let v = 0; v < nvec; v++) {
        const e = new Uint8Array(PCI_MSIX_ENTRY_SIZE);
        const dv = new DataView(e.buffer);
        dv.setUint32(PCI_MSIX_ENTRY_LOWER_ADDR, MSI_ADDR_BASE, true);
        dv.setUint32(PCI_MSIX_ENTRY_DATA, HOST_VECTOR_BASE + v, true);
        fn.mmioWrite(m.bar, m.tableOffset + PCI_MSIX_ENTRY_SIZE * v, e);
      }
      fn.configWrite(pos + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
    }
    fn.configWrite(PCI_COMMAND, 2, cmd);
    this.irqType = index;
    this.ctx = new Array(nvec).fill(null);
  }

  private msiDisable(): void {
    const fn = this.fn;
    for (const t of this.ctx) t?.file.put();
    this.ctx = [];
    const msi = fn.config.findCap(PCI_CAP_ID_MSI);
    if (msi !== 0) fn.configWrite(msi + PCI_MSI_FLAGS, 2, 0);
    const msix = fn.config.findCap(PCI_CAP_ID_MSIX);
    if (msix !== 0) {
      const cmd = fn.configRead(PCI_COMMAND, 2);
      fn.configWrite(PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY);
      const m = fn.msix!;
      for (let v = 0; v < m.vectors; v++)
        fn.mmioWrite(
          m.bar,
          m.tableOffset + PCI_MSIX_ENTRY_SIZE * v + PCI_MSIX_ENTRY_VECTOR_CTRL,
          new Uint8Array([PCI_MSIX_ENTRY_CTRL_MASKBIT, 0, 0, 0]),
        );
      fn.configWrite(msix + PCI_MSIX_FLAGS, 2, 0);
      fn.configWrite(PCI_COMMAND, 2, cmd);
    }
    this.irqType = VFIO_PCI_NUM_IRQS;
  }
}

/** eventfd_ctx_fdget(): EBADF for a closed fd, EINVAL for a file that is not an eventfd. */
export function eventfdGet(task: Task, fd: number): Trigger {
  const f = task.fdget(fd);
  if (f.kind !== "eventfd") fail(EINVAL, `fd ${fd} is a ${f.kind}, not an eventfd`);
  f.get();
  return { file: f, ctx: f.priv as EventFdCtx };
}
