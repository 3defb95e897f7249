import { EFAULT } from "../uapi/errno.js";
import { F_NOHUGE, F_OOM, F_SIGBUS, F_ZERO, faultWhy, handleFault } from "./fault.js";
import type { MmStruct } from "./mm-struct.js";
import { PAGE_SIZE, TASK_SIZE } from "./mman.js";
import { UndoLog } from "./undo.js";

/**
 * A process reading and writing its own memory (the CPU side of access_process_vm), and
 * translate: what a VA maps now.
 */

/** A load or store wholly inside one device-memory VMA; undefined when [va, va+len) is not. */
export function ioAccess(
  mm: MmStruct,
  va: number,
  len: number,
  bytes: Uint8Array | null,
): Uint8Array | 0 | undefined {
  const v = mm.vmas.find(va);
  // (the common case first: all of it inside one ordinary VMA)
  if (v !== undefined && v.io === null && va + len <= v.end) return undefined;
  if (v === undefined || v.io === null) {
    const last = mm.vmas.find(va + len - 1);
    if (last?.io != null || mm.vmas.overlapping(va, va + len).some((x) => x.io !== null)) {
      return mm.err(EFAULT, "access spans device memory and other mappings");
    }
    return undefined;
  }
  if (va + len > v.end) return mm.err(EFAULT, "access runs past the end of a device-memory mapping");
  const off = v.fileOffset(va);
  if (bytes === null) {
    if (!v.cpuReadable) return mm.err(EFAULT, `read: 0x${va.toString(16)} is not readable`);
    const r = v.io.read(off, len);
    return typeof r === "number"
      ? mm.err(EFAULT, `read: device memory at 0x${va.toString(16)} faulted (SIGBUS)`)
      : r;
  }
  if (!v.mayWrite) return mm.err(EFAULT, `write: 0x${va.toString(16)} is not writable`);
  const w = v.io.write(off, bytes);
  return w < 0 ? mm.err(EFAULT, `write: device memory at 0x${va.toString(16)} faulted (SIGBUS)`) : 0;
}

/** The process reading its own memory: the bytes; EFAULT when unmapped, not readable, past EOF. */
export function accessRead(mm: MmStruct, vaB: bigint, len: number): Uint8Array {
  mm.checkLive();
  if (len === 0) return new Uint8Array(0);
  const va = mm.userRange(vaB, len);
  if (va < 0) return mm.err(EFAULT, "read: range outside user space");
  const io = ioAccess(mm, va, len, null);
  if (io !== undefined) return io as Uint8Array;
  const out = new Uint8Array(len);
  // a single fault either succeeds or changes nothing: only a multi-page access has work to undo
  const undo = onePage(va, len) ? null : new UndoLog();
  for (let done = 0; done < len; ) {
    const cur = va + done;
    const inPage = cur % PAGE_SIZE;
    const step = Math.min(PAGE_SIZE - inPage, len - done);
    const v = mm.vmas.find(cur);
    if (v === undefined || !v.cpuReadable) {
      undo?.rollback();
      return mm.err(
        EFAULT,
        `read: 0x${cur.toString(16)} is ${v === undefined ? "not mapped" : "not readable"}`,
      );
    }
    const pfn = handleFault(mm, v, cur, false, false, undo);
    if (pfn === F_SIGBUS || pfn === F_OOM || pfn === F_NOHUGE) {
      undo?.rollback();
      return mm.err(EFAULT, `read: fault at 0x${cur.toString(16)} (${faultWhy(pfn)})`);
    }
    const src = pfn === F_ZERO ? ZERO_PAGE : mm.phys.peekU8(pfn);
    out.set(src.subarray(inPage, inPage + step), done);
    done += step;
  }
  return out;
}

/**
 * A u32 load by the kernel from user memory (get_user): the value; EFAULT
 * as accessRead. The ioctl entry reads every struct's size this way, so
 * the common case (one ordinary VMA, one page) allocates nothing.
 */
export function accessReadU32(mm: MmStruct, vaB: bigint): number {
  mm.checkLive();
  const va = mm.userRange(vaB, 4);
  const v = va < 0 ? undefined : mm.vmas.find(va);
  if (
    v !== undefined &&
    v.io === null &&
    v.cpuReadable &&
    va + 4 <= v.end &&
    va % PAGE_SIZE <= PAGE_SIZE - 4
  ) {
    const pfn = handleFault(mm, v, va, false, false, null);
    if (pfn === F_ZERO) return 0;
    if (pfn >= 0) {
      const b = mm.phys.peekU8(pfn);
      const o = va % PAGE_SIZE;
      return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
    }
  }
  // everything else (and every failure, with its reason) as a 4-byte read
  const b = accessRead(mm, vaB, 4);
  return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
}

/** The process writing its own memory: 0; EFAULT with nothing written. */
export function accessWrite(mm: MmStruct, vaB: bigint, bytes: Uint8Array): number {
  mm.checkLive();
  const len = bytes.length;
  if (len === 0) return 0;
  const va = mm.userRange(vaB, len);
  if (va < 0) return mm.err(EFAULT, "write: range outside user space");
  const io = ioAccess(mm, va, len, bytes);
  if (io !== undefined) return io as number;
  const undo = onePage(va, len) ? null : new UndoLog();
  const first = Math.floor(va / PAGE_SIZE);
  const last = Math.floor((va + len - 1) / PAGE_SIZE);
  const pfns = new Float64Array(last - first + 1);
  for (let pg = first; pg <= last; pg++) {
    const cur = pg * PAGE_SIZE;
    const v = mm.vmas.find(cur);
    if (v === undefined || !v.mayWrite) {
      undo?.rollback();
      return mm.err(
        EFAULT,
        `write: 0x${cur.toString(16)} is ${v === undefined ? "not mapped" : "not writable"}`,
      );
    }
    const pfn = handleFault(mm, v, cur, true, false, undo);
    if (pfn < 0) {
      undo?.rollback();
      return mm.err(EFAULT, `write: fault at 0x${cur.toString(16)} (${faultWhy(pfn)})`);
    }
    pfns[pg - first] = pfn;
  }
  for (let done = 0; done < len; ) {
    const cur = va + done;
    const inPage = cur % PAGE_SIZE;
    const step = Math.min(PAGE_SIZE - inPage, len - done);
    const pfn = pfns[Math.floor(cur / PAGE_SIZE) - first];
    mm.phys.frameU8(pfn).set(bytes.subarray(done, done + step), inPage);
    done += step;
  }
  return 0;
}

/** The physical address va maps now, or null (unmapped, or not populated). Never faults. */
export function translateVa(mm: MmStruct, vaB: bigint): bigint | null {
  if (vaB < 0n || vaB >= BigInt(TASK_SIZE)) return null;
  const va = Number(vaB);
  const v = mm.vmas.find(va);
  if (v === undefined || v.io !== null) return null;
  const size = v.pageSize;
  const key = Math.floor(va / size);
  const sub = Math.floor((va - key * size) / PAGE_SIZE);
  let pfn = -1;
  if (!v.shared) {
    const have = mm.privMap(v.shift).get(key);
    if (have >= 0) pfn = have + sub;
  }
  if (pfn < 0 && v.file !== null) {
    const foff = v.fileOffset(Math.floor(va / PAGE_SIZE) * PAGE_SIZE);
    if (BigInt(foff) < v.file.size) pfn = v.file.pfnAt(foff / PAGE_SIZE);
  }
  if (pfn < 0) return null;
  return BigInt(pfn) * BigInt(PAGE_SIZE) + BigInt(va % PAGE_SIZE);
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

/** [va, va + len) lies in one 4 KiB page. */
function onePage(va: number, len: number): boolean {
  return Math.floor(va / PAGE_SIZE) === Math.floor((va + len - 1) / PAGE_SIZE);
}
