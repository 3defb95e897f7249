import { EventFdCtx } from "../kernel/eventfd.js";
import { KFile } from "../kernel/file.js";

/** What /proc/PID/fd/N reads as for an eventfd. */
export const EVENTFD_LINK = "anon_inode:[eventfd]";

/**
 * A real eventfd of a process behind the bridge, as the model sees it when
 * a driver takes it (eventfd_ctx_fdget: SET_IRQS DATA_EVENTFD). The counter
 * that matters is the real one in the process: every signal the model
 * sends (an MSI/MSI-X vector, an ERR/REQ trigger, a DATA_NONE/BOOL
 * loopback) is handed to `onSignal`, which queues a write of 1 to the real
 * fd on the reply the process is waiting for, and the model's counter goes
 * back to 0. The model does not see the program's own writes to the fd, so
 * kernel-side waiters (VFIO_DEVICE_IOEVENTFD, irqfd) cannot be driven
 * through it.
 */
export function realEventFd(onSignal: (n: number) => void): KFile {
  const ctx = new EventFdCtx(0n, false);
  const wake = (c: EventFdCtx): void => {
    if (c.count === 0n) return; // a wakeup without a signal (a model-side write of 0)
    const n = c.count > 64n ? 64 : Number(c.count);
    c.count = 0n;
    onSignal(n);
  };
  ctx.waiters.add(wake);
  const f = new KFile(
    {
      kind: "eventfd",
      release: () => void ctx.waiters.delete(wake),
    },
    ctx,
    EVENTFD_LINK,
    0,
  );
  // no fd table holds it: the reference is whoever takes it (the trigger's eventfd_ctx_fdget)
  f.refs = 0;
  return f;
}
