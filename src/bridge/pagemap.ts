import { closeSync, openSync, readSync } from "node:fs";
import type { FileOps } from "../kernel/file.js";
import type { Process } from "../kernel/process.js";
import { ForeignMm, type ForeignVma } from "../mm/index.js";
import { EINVAL, fail } from "../uapi/errno.js";
import { PAGE_SIZE } from "../uapi/linux.js";
import type { ProcMemory } from "./proc-mem.js";

/** One pagemap entry per page, 8 bytes (fs/proc/task_mmu.c: PM_ENTRY_BYTES). */
const PM_ENTRY_BYTES = 8;
const PM_PRESENT = 1n << 63n;
/** Bits 0-54 are the page frame number; 55-62 flags the real kernel's entry keeps. */
const PM_PFRAME_MASK = (1n << 55n) - 1n;
/** Entries one read answers at most: a short read, as the kernel's walk may give. */
const MAX_ENTRIES = 4096;

/**
 * /proc/self/pagemap of a program behind the bridge. Whether a page is
 * present, and the soft-dirty, exclusive, file and swap bits, are the real
 * kernel's (the program's real pagemap); the page frame number of a present
 * page is the model's: the frame the model gives that page (a page of a
 * hugetlb mapping: its place in one 2 MiB folio), the one pins,
 * IOMMU_IOAS_NOIOMMU_GET_PA and the device by physical address use, kept
 * while the page stays mapped. As in the kernel, only an opener with
 * CAP_SYS_ADMIN sees frame numbers (zero otherwise), and a read is whole
 * 8-byte entries at an 8-byte aligned offset (EINVAL).
 */
export function pagemapOps(pid: number, p: Process, mem: ProcMemory): FileOps {
  const showPfn = p.task.capable("CAP_SYS_ADMIN");
  let real = -1;
  try {
    real = openSync(`/proc/${pid}/pagemap`, "r");
  } catch {
    // without the real pagemap every mapped page counts as present
  }
  return {
    kind: "pagemap",
    pread(_f, _t, len, off) {
      if (off % BigInt(PM_ENTRY_BYTES) !== 0n || len % PM_ENTRY_BYTES !== 0)
        fail(EINVAL, "pagemap: a read must be whole 8-byte entries at an offset that is a multiple of 8");
      const n = Math.min(len / PM_ENTRY_BYTES, MAX_ENTRIES);
      const out = new Uint8Array(n * PM_ENTRY_BYTES);
      const dv = new DataView(out.buffer);
      const first = Number(off / BigInt(PM_ENTRY_BYTES));
      const realBytes = Buffer.alloc(out.length);
      const got = real >= 0 ? readReal(real, realBytes, off) : -1;
      const mm = p.task.mm;
      let vma: ForeignVma | undefined;
      for (let i = 0; i < n; i++) {
        const va = (first + i) * PAGE_SIZE;
        if (vma === undefined || va < vma.start || va >= vma.end) vma = mem.vma(va);
        if (vma === undefined) continue; // not mapped: all zero
        let e = got >= (i + 1) * PM_ENTRY_BYTES ? realBytes.readBigUInt64LE(i * PM_ENTRY_BYTES) : PM_PRESENT;
        if ((e & PM_PRESENT) !== 0n) {
          e &= ~PM_PFRAME_MASK;
          const pfn = mm instanceof ForeignMm ? mm.pagemapPfn(va, vma) : -1;
          if (showPfn && pfn > 0) e |= BigInt(pfn);
        }
        dv.setBigUint64(i * PM_ENTRY_BYTES, e, true);
      }
      return out;
    },
    release() {
      if (real >= 0) closeSync(real);
      real = -1;
    },
  };
}

/** Bytes read from the real pagemap at `off` (short at the end of user space), or -1. */
function readReal(fd: number, buf: Buffer, off: bigint): number {
  try {
    return readSync(fd, buf, 0, buf.length, off);
  } catch {
    return -1;
  }
}
