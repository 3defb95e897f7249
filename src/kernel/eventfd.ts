import { EAGAIN, EINVAL, ESPIPE, fail } from "../uapi/errno.js";
import { EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE } from "../uapi/linux.js";
import { type FileOps, KFile } from "./file.js";

export { EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE };

const ULLONG_MAX = (1n << 64n) - 1n;

/** eventfd(2): a 64-bit counter; drivers signal it (MSI triggers), user space reads it. */
export class EventFdCtx {
  count: bigint;
  /** Total signals ever delivered (a test can see an interrupt happened). */
  signals = 0;
  /**
   * Kernel waiters polling this eventfd (virqfd: VFIO ioeventfd, irqfd),
   * woken synchronously after every counter increase; one may consume the
   * counter, as virqfd's wakeup does.
   */
  readonly waiters = new Set<(ctx: EventFdCtx) => void>();
  constructor(
    initval: bigint,
    readonly semaphore: boolean,
  ) {
    this.count = initval;
  }

  /** eventfd_signal() from a driver. */
  signal(n = 1n): void {
    this.count += n;
    if (this.count > ULLONG_MAX - 1n) this.count = ULLONG_MAX - 1n;
    this.signals++;
    this.wake();
  }

  /** wake_up_locked_poll(EPOLLIN): every waiter runs (a write of 0 wakes them too, as in eventfd_write). */
  wake(): void {
    for (const w of [...this.waiters]) w(this);
  }
}

export const eventfdOps: FileOps = {
  kind: "eventfd",
  read(file, _task, len) {
    const ctx = file.priv as EventFdCtx;
    if (len < 8) fail(EINVAL, "eventfd read needs an 8-byte buffer");
    // Nothing else runs while a process waits here, so a read that would
    // block can never be woken: report it as the O_NONBLOCK case.
    if (ctx.count === 0n)
      fail(EAGAIN, "eventfd counter is 0: the read would block forever (nothing can signal it)");
    const v = ctx.semaphore ? 1n : ctx.count;
    ctx.count -= v;
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, v, true);
    return out;
  },
  write(file, _task, bytes) {
    const ctx = file.priv as EventFdCtx;
    if (bytes.length < 8) fail(EINVAL, "eventfd write needs 8 bytes");
    const v = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (v === ULLONG_MAX) fail(EINVAL, "eventfd cannot add 0xffffffffffffffff");
    if (ULLONG_MAX - 1n - ctx.count < v)
      fail(EAGAIN, "eventfd counter would overflow: the write would block");
    ctx.count += v;
    ctx.wake();
    return 8;
  },
  pread() {
    return fail(ESPIPE, "eventfd is not seekable");
  },
  pwrite() {
    return fail(ESPIPE, "eventfd is not seekable");
  },
};

export function newEventFd(initval: number, flags: number): KFile {
  if ((flags & ~(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC)) !== 0) fail(EINVAL, "unknown eventfd flags");
  return new KFile(
    eventfdOps,
    new EventFdCtx(BigInt(initval >>> 0), (flags & EFD_SEMAPHORE) !== 0),
    "anon_inode:[eventfd]",
    flags,
  );
}
