import { FaultInject } from "../../src/hw/fault-inject.js";
import { FrameAllocator } from "../../src/hw/frame-alloc.js";
import { PhysMem } from "../../src/hw/phys-mem.js";
import { MemFile, type MmCred, MmStruct, PageTracker, UserTable } from "../../src/mm/index.js";
import { KernelError } from "../../src/uapi/errno.js";

export const P = 4096n;
export const M2 = 2n << 20n;
export const G1 = 1n << 30n;
export const RW = 3;

/** A small machine: memory, allocator, fault injection, page tracker, users. */
export function machine(memBytes = 256n << 20n, seed = 1) {
  const phys = new PhysMem(memBytes, [[0, Number(memBytes >> 12n)]]);
  const faults = new FaultInject();
  const frames = new FrameAllocator(phys, seed, faults);
  const pages = new PageTracker(phys, frames, faults);
  const users = new UserTable();
  const newMm = (o: { uid?: number; cred?: MmCred; seed?: number } = {}) =>
    syscalls(
      new MmStruct({
        phys,
        frames,
        faults,
        pages,
        user: users.get(o.uid ?? 1000),
        cred: o.cred ?? { caps: new Set(), rlimitMemlock: 8n << 20n },
        seed: o.seed,
      }),
    );
  /** What must come back to where it was once everything is released and unpinned. */
  const snapshot = () => ({
    usedFrames: frames.counters().usedFrames,
    resident: phys.residentFrames,
    pinned: pages.totalPinnedPages(),
    owned: pages.counters().ownedFrames,
    memFiles: pages.counters().memFiles,
    vmas: pages.counters().vmas,
  });
  return { phys, faults, frames, pages, users, newMm, snapshot };
}

export function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24 || 1;
  }
  return b;
}

/**
 * src/mm fails by throwing a KernelError (errno and reason), as every layer
 * above src/pt does; Process turns that into -errno. These mm tests call mm
 * directly and assert exact errnos, so they see mm through the same
 * boundary: each method returns -errno (a negative bigint from mmap) on a
 * KernelError and keeps its reason in `lastReason`. Anything else thrown
 * (a model bug) still throws. Results that are an MmStruct or MemFile come
 * back wrapped the same way.
 */
export type Syscalls<T> = T & { lastReason: string };

export function syscalls<T extends object>(target: T): Syscalls<T> {
  const state = { lastReason: "" };
  return new Proxy(target, {
    get(t, prop) {
      if (prop === "lastReason") return state.lastReason;
      const v = Reflect.get(t, prop, t);
      if (typeof v !== "function" || prop === "constructor") return v;
      return (...args: unknown[]) => {
        try {
          const r = (v as (...a: unknown[]) => unknown).apply(t, args);
          return r instanceof MmStruct || r instanceof MemFile ? syscalls(r) : r;
        } catch (e) {
          if (!(e instanceof KernelError)) throw e;
          state.lastReason = e.reason;
          return prop === "mmap" ? -BigInt(e.errno) : -e.errno;
        }
      };
    },
  }) as Syscalls<T>;
}

/** MemFile.create seen through `syscalls`: the file, or -errno. */
export function memfdCreate(pages: PageTracker, name: string, flags: number): Syscalls<MemFile> | number {
  try {
    return syscalls(MemFile.create(pages, name, flags));
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    return -e.errno;
  }
}
