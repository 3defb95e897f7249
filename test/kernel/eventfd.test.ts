import { describe, expect, it } from "vitest";
import { EFD_SEMAPHORE, type EventFdCtx, eventfdOps, newEventFd } from "../../src/kernel/eventfd.js";
import { Machine } from "../../src/kernel/machine.js";
import { EAGAIN, EINVAL, KernelError } from "../../src/uapi/errno.js";

const task = new Machine().spawn().task;
const u64 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 0;
}

describe("eventfd", () => {
  it("counts signals and resets on read", () => {
    const f = newEventFd(0, 0);
    const ctx = f.priv as EventFdCtx;
    expect(errnoOf(() => eventfdOps.read!(f, task, 8))).toBe(EAGAIN);
    ctx.signal();
    ctx.signal();
    expect(u64(eventfdOps.read!(f, task, 8))).toBe(2n);
    expect(ctx.count).toBe(0n);
    expect(ctx.signals).toBe(2);
  });

  it("semaphore mode reads one at a time", () => {
    const f = newEventFd(3, EFD_SEMAPHORE);
    expect(u64(eventfdOps.read!(f, task, 8))).toBe(1n);
    expect((f.priv as EventFdCtx).count).toBe(2n);
  });

  it("rejects short buffers and unknown flags", () => {
    const f = newEventFd(1, 0);
    expect(errnoOf(() => eventfdOps.read!(f, task, 4))).toBe(EINVAL);
    expect(errnoOf(() => newEventFd(0, 0x40))).toBe(EINVAL);
    const b = new Uint8Array(8).fill(0xff);
    expect(errnoOf(() => eventfdOps.write!(f, task, b))).toBe(EINVAL);
  });
});
