import type { Process } from "../kernel/process.js";
import { ForeignMm } from "../mm/index.js";
import { EACCES, EINVAL, ENXIO, KernelError } from "../uapi/errno.js";
import { MAP_FIXED, MAP_FIXED_NOREPLACE } from "../uapi/linux.js";
import { HUGETLB_NORESERVE, HUGETLB_UNMAP, MMIO_SIGBUS, MMIO_WRITE, type Request } from "./protocol.js";

/**
 * Device memory (BAR mmaps) for a real process behind the bridge. The shim
 * reserves the address range (a PROT_NONE placeholder the CPU faults on);
 * the model maps the device at the same address in the process's model mm
 * (a VM_IO | VM_PFNMAP VMA, through the device's own mmap and its checks);
 * every trapped load and store comes here and goes to that VMA's device
 * memory, the path the kernel's page tables would give the CPU.
 */

/** OP.MMAP: the device's mmap at the va the shim reserved (payload: u64 va). 0 or -errno. */
export function bridgeMmap(p: Process, q: Request): number {
  if (q.payload.length < 8) return -EINVAL;
  const va = Buffer.from(q.payload.buffer, q.payload.byteOffset, 8).readBigUInt64LE(0);
  const prot = Number(q.c & 0xffffffffn);
  const flags = Number(q.c >> 32n) >>> 0;
  const r = p.mmap(va, q.a, prot, (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, q.fd, q.b);
  return r < 0n ? Number(r) : 0;
}

/** OP.MUNMAP: the process unmapped (part of) a device mapping. */
export function bridgeMunmap(p: Process, q: Request): number {
  return p.munmap(q.a, q.b);
}

/** OP.MREMAP: a device mapping moved (same size) from a to c. */
export function bridgeMremap(p: Process, q: Request): number {
  const mm = p.task.mm;
  if (!(mm instanceof ForeignMm)) return -EINVAL;
  try {
    return mm.moveDeviceMapping(Number(q.a), Number(q.b), Number(q.c));
  } catch (e) {
    if (e instanceof KernelError) return -e.errno;
    throw e;
  }
}

/**
 * OP.MMIO: one trapped load or store of 1, 2, 4 or 8 bytes at va. -ENXIO
 * when va is not device memory and -EACCES when the mapping's protection
 * forbids the access (the kernel's SIGSEGV); MMIO_SIGBUS when the device
 * refuses it (memory decode off, low power: vfio's fault handler gives
 * SIGBUS). A load's bytes are the reply's payload.
 */
export function bridgeMmio(p: Process, q: Request): number | { ret: number; payload: Uint8Array } {
  const va = Number(q.a);
  const len = Number(q.b);
  if (len !== 1 && len !== 2 && len !== 4 && len !== 8) return -EINVAL;
  const v = p.task.mm.vmas.find(va);
  if (v === undefined || v.io === null || va + len > v.end) return -ENXIO;
  const off = v.fileOffset(va);
  if ((q.flags & MMIO_WRITE) !== 0) {
    if (!v.mayWrite) return -EACCES;
    const b = new Uint8Array(len);
    let x = q.c;
    for (let i = 0; i < len; i++, x >>= 8n) b[i] = Number(x & 0xffn);
    return v.io.write(off, b) < 0 ? MMIO_SIGBUS : 0;
  }
  if (!v.cpuReadable) return -EACCES;
  const r = v.io.read(off, len);
  return typeof r === "number" ? MMIO_SIGBUS : { ret: 0, payload: r };
}

/**
 * OP.HUGETLB: MAP_HUGETLB memory the host has no huge pages for, backed by
 * the model's pool (the shim made an aligned ordinary mapping at a): the
 * pool reserves the pages (ENOMEM when it cannot), pins take whole folios.
 * With HUGETLB_UNMAP the range left the process.
 */
export function bridgeHugetlb(p: Process, q: Request): number {
  const mm = p.task.mm;
  if (!(mm instanceof ForeignMm)) return -EINVAL;
  const start = Number(q.a);
  const len = Number(q.b);
  try {
    if ((q.flags & HUGETLB_UNMAP) !== 0) {
      mm.unmapEmulatedHugetlb(start, len);
      return 0;
    }
    const shift = Number(q.c & 0xffn);
    if (shift !== 21 && shift !== 30) return -EINVAL;
    return mm.mapEmulatedHugetlb(start, len, shift === 21 ? 9 : 18, (Number(q.c) & HUGETLB_NORESERVE) !== 0);
  } catch (e) {
    if (e instanceof KernelError) return -e.errno;
    throw e;
  }
}
