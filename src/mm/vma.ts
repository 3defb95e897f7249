import type { PrivResv } from "./hugetlb-pool.js";
import type { IoMem } from "./io-mem.js";
import type { MemFile } from "./memfd.js";
import { PROT_READ, PROT_WRITE } from "./mman.js";

/** Page size of a mapping: 4 KiB, or a 2 MiB / 1 GiB hugetlb page. */
export type PageShift = 12 | 21 | 30;

/** What a VMA needs from its address space when its file is truncated. */
export interface VmaOwner {
  /** Drop private (COW) pages of `vma` in [start, end). */
  zapPrivate(vma: Vma, start: number, end: number): void;
}

/**
 * struct vm_area_struct: [start, end) of one mapping, byte addresses as
 * numbers (user VAs are below 2^47). A private mapping's own pages live in
 * its mm's private page tables keyed by address; a file-backed (or shared
 * anonymous, whose file is an internal shmem/hugetlb MemFile) mapping reads
 * the file's page cache at `pgoff` (in 4 KiB pages) for `start`.
 */
export class Vma {
  /** Device memory (VM_IO | VM_PFNMAP): loads and stores go to it; never faulted, never pinned. */
  io: IoMem | null = null;
  /** A private hugetlb mapping's reservations (null: none, e.g. MAP_NORESERVE or an unlimited pool). */
  resv: PrivResv | null = null;

  constructor(
    readonly mm: VmaOwner,
    public start: number,
    public end: number,
    readonly prot: number,
    /** MAP_SHARED (VM_SHARED): writes go to the file. */
    readonly shared: boolean,
    readonly shift: PageShift,
    readonly file: MemFile | null,
    public pgoff: number,
    /** VM_LOCKED, charged to mm->locked_vm. */
    readonly locked: boolean,
    /** Created with MAP_ANONYMOUS (its file, if any, is internal). */
    readonly anon: boolean,
  ) {}

  get pageSize(): number {
    // not 2 ** shift: V8 calls pow() for that, on every fault
    return this.shift === 12 ? 4096 : this.shift === 21 ? 2097152 : 1073741824;
  }

  /** VM_READ. */
  get mayRead(): boolean {
    return (this.prot & PROT_READ) !== 0;
  }

  /** VM_WRITE. */
  get mayWrite(): boolean {
    return (this.prot & PROT_WRITE) !== 0;
  }

  /** The CPU may read: x86 page tables cannot express write-only, so PROT_WRITE reads too. */
  get cpuReadable(): boolean {
    return (this.prot & (PROT_READ | PROT_WRITE)) !== 0;
  }

  /** File offset in bytes of address va (va inside the VMA). */
  fileOffset(va: number): number {
    return this.pgoff * 4096 + (va - this.start);
  }
}

/** VMAs of one mm, sorted by start and never overlapping (the maple tree's role). */
export class VmaList {
  readonly list: Vma[] = [];

  get length(): number {
    return this.list.length;
  }

  /** Index of the first VMA whose end is above va (find_vma), or list.length. */
  indexAfter(va: number): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.list[mid].end > va) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The VMA containing va, or undefined. */
  find(va: number): Vma | undefined {
    const v = this.list[this.indexAfter(va)];
    return v !== undefined && v.start <= va ? v : undefined;
  }

  /** VMAs intersecting [start, end), in address order. */
  overlapping(start: number, end: number): Vma[] {
    const out: Vma[] = [];
    for (let i = this.indexAfter(start); i < this.list.length && this.list[i].start < end; i++) {
      out.push(this.list[i]);
    }
    return out;
  }

  insert(v: Vma): void {
    const i = this.indexAfter(v.start);
    this.list.splice(i, 0, v);
  }

  remove(v: Vma): void {
    const i = this.indexAfter(v.start);
    if (this.list[i] !== v) throw new Error("VmaList.remove: not present");
    this.list.splice(i, 1);
  }
}
