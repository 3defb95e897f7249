import type { PciFunction } from "../../hw/pci-dev.js";
import { PCI_MSIX_ENTRY_SIZE } from "../../hw/pci-regs.js";
import type { EventFdCtx } from "../../kernel/eventfd.js";
import type { KFile } from "../../kernel/file.js";
import type { Task } from "../../kernel/task.js";
import { EEXIST, EINVAL, ENODEV, ENOSPC, fail } from "../../uapi/errno.js";
import { offsetOfEnd, structView } from "../../uapi/struct.js";
import {
  VFIO_DEVICE_IOEVENTFD_SIZE_MASK,
  VFIO_PCI_BAR5_REGION_INDEX,
  VFIO_PCI_OFFSET_SHIFT,
  vfio_device_ioeventfd,
} from "../../uapi/vfio.js";
import { vfioCopyIn } from "../uaccess.js";
import { eventfdGet } from "./intrs.js";

/** VFIO_PCI_IOEVENTFD_MAX (vfio_pci_priv.h). */
export const VFIO_PCI_IOEVENTFD_MAX = 1000;
const IOEVENTFD_MINSZ = offsetOfEnd(vfio_device_ioeventfd, "fd");

/** struct vfio_pci_ioeventfd: a BAR write the eventfd triggers. */
interface Ioeventfd {
  bar: number;
  pos: number;
  data: bigint;
  count: number;
  file: KFile;
  ctx: EventFdCtx;
  waiter: (ctx: EventFdCtx) => void;
}

/**
 * VFIO_DEVICE_IOEVENTFD (drivers/vfio/pci/vfio_pci_rdwr.c vfio_pci_ioeventfd
 * over virqfd.c): an eventfd whose signal writes `data` to a BAR offset.
 * The kernel runs the write from the eventfd's wakeup (or a worker); the
 * model is synchronous, so the write happens inside the write(2) (or the
 * eventfd_signal) that raised the counter, and the counter is consumed
 * as virqfd's wakeup does. Like the kernel's handler, a write with memory
 * decode off is dropped. A wakeup raised while the same ioeventfd is
 * already writing (the device signalling that eventfd back) is not
 * re-entered: in the kernel it would be a later, separate write.
 */
export class VfioPciIoeventfds {
  private readonly list: Ioeventfd[] = [];

  constructor(
    private readonly fn: PciFunction,
    private readonly msixBar: number,
  ) {}

  get count(): number {
    return this.list.length;
  }

  /** vfio_pci_ioctl_ioeventfd + vfio_pci_ioeventfd. */
  ioctl(task: Task, arg: bigint): number {
    // (the whole struct's room, so the typed view fits; past minsz it stays zero, as the kernel never reads it)
    const { buf } = vfioCopyIn(
      task,
      arg,
      IOEVENTFD_MINSZ,
      "VFIO_DEVICE_IOEVENTFD",
      vfio_device_ioeventfd.size,
    );
    const a = structView(vfio_device_ioeventfd, buf);
    const flags = a.flags;
    if ((flags & ~VFIO_DEVICE_IOEVENTFD_SIZE_MASK) !== 0)
      fail(EINVAL, `VFIO_DEVICE_IOEVENTFD: unknown flags 0x${flags.toString(16)}`);
    const count = flags & VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
    const fd = a.fd;
    if ((count & (count - 1)) !== 0 || count === 0 || fd < -1)
      fail(EINVAL, "VFIO_DEVICE_IOEVENTFD: exactly one size flag (8/16/32/64), and fd >= -1");
    const offset = a.offset;
    const data = a.data;
    const bar = Number(offset >> BigInt(VFIO_PCI_OFFSET_SHIFT));
    const pos = Number(offset & ((1n << BigInt(VFIO_PCI_OFFSET_SHIFT)) - 1n));
    if (bar > VFIO_PCI_BAR5_REGION_INDEX)
      fail(EINVAL, "VFIO_DEVICE_IOEVENTFD: only BAR regions take ioeventfds");
    if (pos + count > this.fn.barSize(bar))
      fail(EINVAL, `VFIO_DEVICE_IOEVENTFD: [0x${pos.toString(16)}, +${count}) is past the end of BAR ${bar}`);
    const msix = this.fn.msix;
    if (bar === this.msixBar && msix !== null) {
      const xs = msix.tableOffset;
      const xe = xs + msix.vectors * PCI_MSIX_ENTRY_SIZE;
      if (!(pos + count <= xs || pos >= xe))
        fail(EINVAL, "VFIO_DEVICE_IOEVENTFD: the MSI-X table cannot be written through an ioeventfd");
    }
    // Refused before anything else even where iowrite64 exists (the current vfio_pci_rdwr.c).
    if (count === 8) fail(EINVAL, "VFIO_DEVICE_IOEVENTFD: 8-byte ioeventfds are refused by vfio-pci");
    const i = this.list.findIndex(
      (e) => e.pos === pos && e.bar === bar && e.data === data && e.count === count,
    );
    if (i >= 0) {
      if (fd !== -1)
        fail(EEXIST, "VFIO_DEVICE_IOEVENTFD: the same BAR offset, size and data already has an eventfd");
      this.remove(i);
      return 0;
    }
    if (fd < 0) fail(ENODEV, "VFIO_DEVICE_IOEVENTFD: fd -1 removes an ioeventfd, and none matches");
    if (this.list.length >= VFIO_PCI_IOEVENTFD_MAX)
      fail(ENOSPC, `VFIO_DEVICE_IOEVENTFD: ${VFIO_PCI_IOEVENTFD_MAX} ioeventfds per device`);
    const t = eventfdGet(task, fd);
    let busy = false;
    const e: Ioeventfd = {
      bar,
      pos,
      data,
      count,
      file: t.file,
      ctx: t.ctx,
      waiter: (ctx) => {
        if (busy) return;
        busy = true;
        try {
          // eventfd_ctx_do_read in virqfd_wakeup consumes the counter (one in semaphore mode).
          ctx.count -= ctx.semaphore && ctx.count > 0n ? 1n : ctx.count;
          this.doWrite(e);
        } finally {
          busy = false;
        }
      },
    };
    this.list.push(e);
    t.ctx.waiters.add(e.waiter);
    // vfio_virqfd_enable polls once: an eventfd already signalled triggers at once.
    if (t.ctx.count !== 0n) e.waiter(t.ctx);
    return 0;
  }

  /** vfio_pci_core_disable: every ioeventfd goes when the device closes. */
  disableAll(): void {
    while (this.list.length > 0) this.remove(this.list.length - 1);
  }

  private remove(i: number): void {
    const e = this.list[i];
    e.ctx.waiters.delete(e.waiter);
    e.file.put();
    this.list.splice(i, 1);
  }

  /** vfio_pci_ioeventfd_handler: a little-endian write of `count` bytes, dropped with memory decode off. */
  private doWrite(e: Ioeventfd): void {
    if (!this.fn.memoryDecode()) return;
    const b = new Uint8Array(e.count);
    let v = e.data;
    for (let i = 0; i < e.count; i++) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.fn.mmioWrite(e.bar, e.pos, b);
  }
}
