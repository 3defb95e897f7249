import { PageIndex } from "../hw/page-index.js";
import type { ExternalSource } from "../hw/phys-mem.js";
import { EFAULT, EINVAL, ENOMEM, fail } from "../uapi/errno.js";
import { MAP_FIXED, MAP_SHARED, PAGE_SIZE as PAGE } from "../uapi/linux.js";
import type { CacheHolder, ForeignPageCache } from "./foreign-page-cache.js";
import { type MmForkOptions, MmStruct, type MmStructOptions } from "./mm-struct.js";
import { doMmapIo } from "./mmap.js";
import { doMunmap } from "./munmap.js";
import { emptyRuns, type PfnRuns, RunBuilder } from "./pfn-runs.js";
import { Vma } from "./vma.js";

/** The folio order of a host hugetlb vma's pages: 18 for 1 GiB pages (KernelPageSize in smaps), else 9; 0 when not hugetlb. */
function hostHugeOrder(v: ForeignVma): 0 | 9 | 18 {
  if (v.hugetlb !== true) return 0;
  return v.hugeShift === 30 ? 18 : 9;
}

/** x86-64 user space ends at 2^47. */
const USER_END = 2 ** 47;

/** One mapping of a real process (a line of /proc/PID/maps). */
export interface ForeignVma {
  start: number;
  end: number;
  read: boolean;
  write: boolean;
  /** VM_IO / VM_PFNMAP (device memory): nothing to pin. */
  io: boolean;
  /** hugetlb memory in 2 MiB pages: pinned as physically contiguous 2 MiB folios. */
  hugetlb?: boolean;
  /** log2 of its huge page size (21: 2 MiB, the default; 30: 1 GiB, KernelPageSize in smaps). */
  hugeShift?: number;
  /** For a MAP_SHARED mapping: what it maps (device and inode), equal in every process sharing it. */
  shared?: string;
  /** The file page at `start` (the maps line's offset / PAGE_SIZE; 0 when not given). */
  pgoff?: number;
}

/**
 * A real process's memory as the bridge reaches it (/proc/PID/mem and
 * /proc/PID/maps in src/bridge). Reads and writes are all-or-nothing.
 */
export interface ForeignMemory {
  /** The bytes, or -EFAULT when part of the range is not mapped. */
  read(va: number, len: number): Uint8Array | number;
  /** The little-endian u32 at va, or -EFAULT (a size field, read before each ioctl's struct: no copy); read's when absent. */
  readU32?(va: number): number;
  /** 0, or -EFAULT. */
  write(va: number, bytes: Uint8Array): number;
  /** The mapping holding va, if any. */
  vma(va: number): ForeignVma | undefined;
}

/**
 * The address space of a real process behind the exec bridge. Its bytes
 * stay in the process: copy_{from,to}_user go to its memory, and a page
 * pinned for DMA is a frame of simulated memory whose contents are the
 * process's page (PhysMem.external), so the device and the process see one
 * set of bytes. The frame keeps its page until the page leaves the process
 * (munmap, exit: `detach`), when the frame takes a copy of the contents and
 * lives on while pinned, as a pinned page outlives munmap in the kernel.
 * The same virtual page always gives the same frame while it is attached.
 * VMAs are the process's own, except device memory: a BAR the process maps
 * through the bridge is a model VMA (VM_IO | VM_PFNMAP, made by the model's
 * mmap at the address the shim reserved), so loads and stores reach the
 * device and pins see a PFNMAP mapping, not the placeholder behind it.
 */
export class ForeignMm extends MmStruct implements ExternalSource, CacheHolder {
  /** The process's memory; null before a forked child joins and after exit. */
  private foreignMem: ForeignMemory | null = null;
  /** Attached pages: virtual page number -> pfn (the frame holds one reference). */
  private readonly foreignPages = new PageIndex();
  private readonly foreignBase: MmStructOptions;
  /**
   * Attached pages in MAP_SHARED (non-hugetlb) mappings: virtual page ->
   * the file page. Their frames are the shared page cache's, so every
   * process mapping the page, and IOMMU_IOAS_MAP_FILE of the file, reach
   * one frame.
   */
  private readonly foreignShared = new PageIndex();
  /** The file page of each page in foreignShared (virtual page -> page offset in the file). */
  private readonly foreignSharedPgoff = new PageIndex();
  /** The files of foreignShared (ForeignVma.shared), interned: foreignShared holds the index. */
  private readonly sharedKeys: string[] = [];
  private readonly sharedIds = new Map<string, number>();
  /** MAP_HUGETLB ranges the model's pool backs (the host had no huge pages for them). */
  private emulated: EmulatedHugetlb[] = [];
  /** The processes forked from one another (they may share MAP_SHARED pages). */
  private readonly foreignFamily: Set<ForeignMm>;

  constructor(
    opts: MmStructOptions,
    mem: ForeignMemory | null,
    private readonly sharedCache: ForeignPageCache,
    family?: Set<ForeignMm>,
  ) {
    super(opts);
    this.foreignBase = opts;
    this.foreignMem = mem;
    this.foreignFamily = family ?? new Set();
    this.foreignFamily.add(this);
  }

  /** A forked child joins: its memory becomes reachable. */
  attach(mem: ForeignMemory): void {
    this.foreignMem = mem;
  }

  /** True while frames mirror pages of the process (the shim must report munmap). */
  hasAttached(): boolean {
    return this.foreignPages.size > 0;
  }

  attachedPages(): number {
    return this.foreignPages.size;
  }

  /** Pages of this process some long-term pin holds now. */
  pinnedPagesHere(): number {
    let n = 0;
    for (const pfn of this.foreignPages.values()) if (this.pages.isPinned(pfn)) n++;
    return n;
  }

  override read(vaB: bigint, len: number): Uint8Array {
    const va = this.foreignRange(vaB, len);
    if (va < 0 || this.foreignMem === null)
      return this.foreignFault(`cannot read user memory at 0x${vaB.toString(16)}`);
    if (len === 0) return new Uint8Array(0);
    const r = this.foreignMem.read(va, len);
    if (typeof r === "number")
      return this.foreignFault(`0x${vaB.toString(16)} (+${len}) is not mapped in the process`);
    return r;
  }

  override readU32(vaB: bigint): number {
    const mem = this.foreignMem;
    if (mem?.readU32 === undefined) {
      // (a memory that cannot read a u32 without a copy: read()'s path, with its fault reasons)
      const b = this.read(vaB, 4);
      return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
    }
    const va = this.foreignRange(vaB, 4);
    if (va < 0) return this.foreignFault(`cannot read user memory at 0x${vaB.toString(16)}`);
    const v = mem.readU32(va);
    if (v < 0) return this.foreignFault(`0x${vaB.toString(16)} (+4) is not mapped in the process`);
    return v;
  }

  override write(vaB: bigint, bytes: Uint8Array): number {
    const va = this.foreignRange(vaB, bytes.length);
    if (va < 0 || this.foreignMem === null)
      return this.foreignFault(`cannot write user memory at 0x${vaB.toString(16)}`);
    if (bytes.length === 0) return 0;
    if (this.foreignMem.write(va, bytes) !== 0)
      return this.foreignFault(`0x${vaB.toString(16)} (+${bytes.length}) is not mapped in the process`);
    return 0;
  }

  override translate(vaB: bigint): bigint | null {
    const va = this.foreignRange(vaB, 1);
    if (va < 0) return null;
    const vp = Math.floor(va / PAGE);
    let pfn = this.foreignPages.get(vp);
    if (pfn < 0 && this.sharedCache.size > 0 && this.foreignMem !== null) {
      // a page of a shared file someone else holds (IOAS_MAP_FILE of it, another process)
      const v = this.foreignMem.vma(va);
      const fp = v === undefined ? undefined : sharedPageOf(v, vp);
      if (fp !== undefined) pfn = this.sharedCache.lookup(fp.file, fp.pgoff);
    }
    return pfn < 0 ? null : BigInt(pfn) * BigInt(PAGE) + BigInt(va % PAGE);
  }

  /**
   * pin_user_pages(FOLL_LONGTERM): EFAULT when a page is not mapped, is
   * device memory, or lacks the permission the pin needs; ENOMEM when a
   * frame cannot be allocated or a failure is injected at `site`. All or
   * nothing.
   */
  override pinUserPages(vaB: bigint, nPages: number, write: boolean, site = "pin_user_pages"): PfnRuns {
    if (this.released || this.foreignMem === null)
      return this.foreignErr(EFAULT, "pin: the process's memory is gone");
    if (!Number.isInteger(nPages) || nPages < 0) return this.foreignErr(EINVAL, "pin: bad page count");
    if (nPages === 0) return emptyRuns();
    const va = this.foreignRange(BigInt.asUintN(64, vaB) & ~4095n, nPages * PAGE);
    if (va < 0) return this.foreignErr(EFAULT, "pin: range outside user space");
    const end = va + nPages * PAGE;
    if (this.vmas.overlapping(va, end).some((v) => v.io !== null))
      return this.foreignErr(EFAULT, "pin: device memory (VM_IO | VM_PFNMAP) has no pages to pin");
    const vmas: ForeignVma[] = [];
    for (let cur = va; cur < end; ) {
      const v = this.foreignMem.vma(cur);
      if (v === undefined) return this.foreignErr(EFAULT, `pin: 0x${cur.toString(16)} is not mapped`);
      if (v.io) return this.foreignErr(EFAULT, "pin: device memory (VM_IO | VM_PFNMAP) has no pages to pin");
      if (write && !v.write) return this.foreignErr(EFAULT, "pin: write pin of a mapping without PROT_WRITE");
      if (!write && !v.read) return this.foreignErr(EFAULT, "pin: read pin of a mapping without PROT_READ");
      vmas.push(v);
      cur = v.end;
    }
    if (this.faults.hit(site)) return this.foreignErr(ENOMEM, `pin: injected failure at ${site}`);
    const b = new RunBuilder(Math.min(nPages, 1 << 16));
    const fresh: number[] = [];
    const undo = (what: string, vp: number): never => {
      this.pages.unpinRuns(b.peek());
      const seen = new Map<ForeignMm, ForeignVma>();
      for (const p of fresh) this.foreignDetach(p, false, seen);
      return this.foreignErr(ENOMEM, `pin: cannot allocate the ${what} at 0x${(vp * PAGE).toString(16)}`);
    };
    // VMA by VMA, page by page; pins go on in runs of contiguous frames
    let runPfn = -1;
    let runLen = 0;
    let vi = 0;
    for (let vp = va / PAGE; vp < end / PAGE; ) {
      while (vmas[vi].end <= vp * PAGE) vi++;
      const v = vmas[vi];
      const stop = Math.min(end, v.end) / PAGE;
      const emu = this.emulatedHugetlb(vp * PAGE);
      // a hugetlb page is one physically contiguous folio of its size, as the kernel's is
      const order = emu !== undefined ? emu.order : hostHugeOrder(v);
      for (; vp < stop; vp++) {
        let pfn = this.foreignPages.get(vp);
        if (pfn < 0 && order !== 0) {
          const n = 2 ** order;
          const head = this.attachHuge(vp - (vp % n), order, emu, fresh);
          if (head < 0) return undo("huge page", vp);
          pfn = head + (vp % n);
        } else if (pfn < 0) {
          pfn = this.attachSmall(vp, v);
          if (pfn < 0) return undo("page", vp);
          fresh.push(vp);
        }
        if (runLen > 0 && runPfn + runLen === pfn) runLen++;
        else {
          if (runLen > 0) this.pages.pinRange(runPfn, runLen);
          runPfn = pfn;
          runLen = 1;
        }
        b.push(pfn, 1);
      }
    }
    if (runLen > 0) this.pages.pinRange(runPfn, runLen);
    return b.finish();
  }

  /**
   * The frame of a present page of the process, for /proc/PID/pagemap:
   * the attached one, else one attached now (unpinned, kept while the page
   * stays mapped, as a resident page keeps its frame; a page of a hugetlb
   * mapping brings its whole 2 MiB folio). -1 for device memory, or when no
   * frame can be had.
   */
  pagemapPfn(va: number, v: ForeignVma): number {
    const vp = Math.floor(va / PAGE);
    const had = this.foreignPages.get(vp);
    if (had >= 0) return had;
    if (this.released || this.foreignMem === null || v.io) return -1;
    if (this.vmas.overlapping(vp * PAGE, vp * PAGE + PAGE).some((m) => m.io !== null)) return -1;
    const emu = this.emulatedHugetlb(vp * PAGE);
    const order = emu !== undefined ? emu.order : hostHugeOrder(v);
    if (order !== 0) {
      const n = 2 ** order;
      const head = this.attachHuge(vp - (vp % n), order, emu, []);
      return head < 0 ? -1 : head + (vp % n);
    }
    return this.attachSmall(vp, v);
  }

  /**
   * Attach the page at virtual page `vp` of `v` (not hugetlb): a page of a
   * shared mapping is the shared page cache's frame for its file page; a
   * private one gets its own frame. The pfn, or -1 when no frame can be had.
   */
  private attachSmall(vp: number, v: ForeignVma): number {
    const fp = sharedPageOf(v, vp);
    if (fp !== undefined) return this.holdShared(vp, fp.file, fp.pgoff);
    const pfn = this.pages.allocFolio(0, "do_anonymous_page");
    if (pfn < 0) return -1;
    this.foreignPages.set(vp, pfn);
    this.phys.external.setPage(pfn, this, vp);
    return pfn;
  }

  /** This process holds the file page (file, pgoff) it maps at virtual page vp: the cache's frame, or -1. */
  private holdShared(vp: number, file: string, pgoff: number): number {
    const pfn = this.sharedCache.take(file, pgoff, this, vp, "shmem_alloc_folio");
    if (pfn < 0) return -1;
    this.foreignPages.set(vp, pfn);
    this.foreignShared.set(vp, this.sharedId(file));
    this.foreignSharedPgoff.set(vp, pgoff);
    return pfn;
  }

  /** The shared page cache reads this process's page at virtual page `vp` (CacheHolder). */
  holderRead(vp: number, off: number, len: number): Uint8Array | number {
    return this.foreignMem === null ? -EFAULT : this.foreignMem.read(vp * PAGE + off, len);
  }

  holderWrite(vp: number, off: number, bytes: Uint8Array): void {
    this.foreignMem?.write(vp * PAGE + off, bytes);
  }

  private sharedId(key: string): number {
    let id = this.sharedIds.get(key);
    if (id === undefined) {
      id = this.sharedKeys.length;
      this.sharedKeys.push(key);
      this.sharedIds.set(key, id);
    }
    return id;
  }

  /**
   * The pages of [va, va+len) leave the process (munmap, mremap,
   * MAP_FIXED, MADV_DONTNEED): each attached frame keeps a copy of its page
   * and lives on only while pinned.
   */
  detach(vaB: bigint, len: bigint): void {
    if (len <= 0n || vaB < 0n) return;
    const first = Number(vaB / BigInt(PAGE));
    const last = Number((vaB + len - 1n) / BigInt(PAGE));
    this.detachRange(first, last, true);
  }

  override release(): void {
    if (this.released) return;
    this.detachRange(0, Number.MAX_SAFE_INTEGER, true);
    for (const e of [...this.emulated]) this.unmapEmulatedHugetlb(e.start, e.end - e.start);
    this.foreignMem = null;
    this.foreignFamily.delete(this);
    super.release();
  }

  /** The process died without saying so: its memory is already gone, nothing to copy. */
  releaseLost(): void {
    if (this.released) return;
    this.detachRange(0, Number.MAX_SAFE_INTEGER, false);
    for (const e of [...this.emulated]) this.unmapEmulatedHugetlb(e.start, e.end - e.start);
    this.foreignMem = null;
    this.foreignFamily.delete(this);
    super.release();
  }

  /** fork: the child's address space is the real child's; it joins with `attach`. */
  override fork(opts: MmForkOptions): MmStruct {
    if (this.released) return this.foreignErr(EFAULT, "fork: the mm is gone");
    if (this.faults.hit("dup_mm"))
      return this.foreignErr(ENOMEM, "fork: cannot allocate the child's mm_struct");
    const child = new ForeignMm(
      { ...this.foreignBase, user: opts.user, cred: opts.cred, mmapBase: this.mmapBase },
      null,
      this.sharedCache,
      this.foreignFamily,
    );
    // the child maps the same model-backed hugetlb ranges; reservations stay the parent's
    child.emulated = this.emulated.map((e) => ({ ...e, reserved: false, consumed: new Set<number>() }));
    // the real child inherits the device mappings: so does the model's
    for (const v of this.vmas.list) {
      if (v.io === null) continue;
      const c = new Vma(child, v.start, v.end, v.prot, v.shared, v.shift, null, v.pgoff, false, v.anon);
      c.io = v.io;
      v.io.get?.();
      child.vmas.insert(c);
      this.pages.liveVmas++;
    }
    return child;
  }

  /**
   * mremap of a whole device mapping (or a piece of one) to `newVa`, same
   * size: the new VMA maps the same device memory at the same offset, the
   * old range goes. EFAULT when [oldVa, +len) is not inside one device VMA.
   */
  moveDeviceMapping(oldVa: number, len: number, newVa: number): number {
    const v = this.vmas.find(oldVa);
    if (v === undefined || v.io === null || oldVa + len > v.end || len <= 0)
      return this.foreignErr(EFAULT, "mremap: the range is not inside one device mapping");
    const r = doMmapIo(
      this,
      BigInt(newVa),
      BigInt(len),
      v.prot,
      MAP_SHARED | MAP_FIXED,
      v.io,
      BigInt(v.fileOffset(oldVa)),
    );
    if (r < 0) return r;
    return doMunmap(this, BigInt(oldVa), BigInt(len));
  }

  /**
   * Attach the pages of the hugetlb page of `order` at virtual page `vp0`
   * to one folio (one reference per attached page): a model-backed
   * mapping's reservation is consumed by it. Returns the head pfn, or -1
   * when no folio can be allocated.
   */
  private attachHuge(vp0: number, order: 9 | 18, emu: EmulatedHugetlb | undefined, fresh: number[]): number {
    const n = 2 ** order;
    const idx = emu !== undefined ? (vp0 * PAGE - emu.start) / (n * PAGE) : -1;
    const reserved = emu !== undefined && emu.reserved && !emu.consumed.has(idx);
    const head = reserved
      ? this.pages.allocReservedFolio(order)
      : this.pages.allocFolio(order, "alloc_hugetlb_folio");
    if (head < 0) return -1;
    if (reserved) emu.consumed.add(idx);
    for (let i = 0; i < n; i++) {
      if (i > 0) this.pages.get(head);
      this.foreignPages.set(vp0 + i, head + i);
      this.phys.external.setPage(head + i, this, vp0 + i);
      fresh.push(vp0 + i);
    }
    return head;
  }

  /**
   * MAP_HUGETLB memory the host has no huge pages for: the shim made an
   * ordinary mapping of [start, +len), aligned to the page size, and the
   * model's pool of `order` backs it (hugetlb_reserve_pages: the pages are
   * reserved now unless `noreserve`, ENOMEM when the pool cannot). Pins
   * take whole folios of that size, as for real hugetlb memory.
   */
  mapEmulatedHugetlb(start: number, len: number, order: 9 | 18, noreserve: boolean): number {
    const size = 2 ** order * PAGE;
    if (start % size !== 0 || len <= 0 || len % size !== 0)
      return this.foreignErr(EINVAL, "hugetlb: the range is not aligned to its page size");
    if (this.emulated.some((e) => e.start < start + len && start < e.end))
      return this.foreignErr(EINVAL, "hugetlb: the range overlaps another hugetlb mapping");
    const pages = len / size;
    if (!noreserve && !this.pages.hstate(order).reserve(pages)) {
      return this.foreignErr(
        ENOMEM,
        `hugetlb: the ${size >> 20} MiB pool cannot reserve ${pages} page(s) (hugetlb_reserve_pages)`,
      );
    }
    this.emulated.push({ start, end: start + len, order, reserved: !noreserve, consumed: new Set() });
    return 0;
  }

  /** [start, +len) of model-backed hugetlb memory left the process: unconsumed reservations go back. */
  unmapEmulatedHugetlb(start: number, len: number): void {
    const end = start + len;
    for (const e of [...this.emulated]) {
      if (e.end <= start || e.start >= end) continue;
      const size = 2 ** e.order * PAGE;
      const s = Math.max(start, e.start);
      const x = Math.min(end, e.end);
      if (e.reserved) {
        let back = 0;
        for (let i = (s - e.start) / size; i < (x - e.start) / size; i++) if (!e.consumed.delete(i)) back++;
        this.pages.hstate(e.order).unreserve(back);
      }
      this.emulated.splice(this.emulated.indexOf(e), 1);
      // the pieces outside the range stay (their reservations with them)
      const keep = (a: number, b: number) => {
        if (a >= b) return;
        const consumed = new Set<number>();
        for (const i of e.consumed) {
          const at = e.start + i * size;
          if (at >= a && at < b) consumed.add((at - a) / size);
        }
        this.emulated.push({ start: a, end: b, order: e.order, reserved: e.reserved, consumed });
      };
      keep(e.start, s);
      keep(x, e.end);
    }
  }

  private emulatedHugetlb(va: number): EmulatedHugetlb | undefined {
    if (this.emulated.length === 0) return undefined;
    return this.emulated.find((e) => va >= e.start && va < e.end);
  }

  /** A pinned frame reads and writes the process's page while it is attached (ExternalSource). */
  readAt(va: number, len: number): Uint8Array {
    const r = this.foreignMem === null ? -EFAULT : this.foreignMem.read(va, len);
    return typeof r === "number" ? new Uint8Array(len) : r;
  }

  writeAt(va: number, bytes: Uint8Array): void {
    if (this.foreignMem !== null) this.foreignMem.write(va, bytes);
  }

  /**
   * Detach every attached page in virtual pages [first, last], in order.
   * Which process of the family still maps a shared page is asked once per
   * mapping of that process, not once per page.
   */
  private detachRange(first: number, last: number, keep: boolean): void {
    const todo: number[] = [];
    this.foreignPages.forEachIn(first, last, (vp) => {
      todo.push(vp);
    });
    const seen = new Map<ForeignMm, ForeignVma>();
    for (const vp of todo) this.foreignDetach(vp, keep, seen);
  }

  private foreignDetach(vp: number, keep: boolean, seen: Map<ForeignMm, ForeignVma>): void {
    const pfn = this.foreignPages.delete(vp);
    if (pfn < 0) return;
    const fileId = this.foreignShared.delete(vp);
    if (fileId >= 0) {
      this.leaveShared(vp, this.sharedKeys[fileId], this.foreignSharedPgoff.delete(vp), keep, seen);
      return;
    }
    // only a pinned frame outlives this: an unpinned one goes with the put below, so no copy
    const live = keep && this.foreignMem !== null && this.pages.isPinned(pfn);
    const bytes = live ? this.foreignMem!.read(vp * PAGE, PAGE) : -EFAULT;
    this.phys.external.delete(pfn);
    if (typeof bytes !== "number") this.phys.write(pfn * PAGE, bytes);
    // references are the folio's (a hugetlb folio holds one per attached page)
    const head = this.pages.folioHead(pfn);
    this.pages.put(head < 0 ? pfn : head);
  }

  /**
   * A shared page leaves this process. When this was the page's last
   * holder and a pin keeps it, a process of the family that still maps the
   * same file page at the same address takes it over (a pin holds the
   * shared page, which that process keeps seeing); otherwise the cache
   * copies the page into the frame.
   */
  private leaveShared(
    vp: number,
    file: string,
    pgoff: number,
    keep: boolean,
    seen: Map<ForeignMm, ForeignVma>,
  ): void {
    const va = vp * PAGE;
    if (
      this.sharedCache.holders(file, pgoff) === 1 &&
      this.pages.isPinned(this.sharedCache.lookup(file, pgoff))
    ) {
      for (const other of this.foreignFamily) {
        if (other === this || other.released || other.foreignMem === null || other.foreignPages.has(vp))
          continue;
        // the mapping of `other` last looked at in this detach answers for its whole range
        let v = seen.get(other);
        if (v === undefined || va < v.start || va >= v.end) {
          v = other.foreignMem.vma(va);
          if (v !== undefined) seen.set(other, v);
        }
        const fp = v === undefined ? undefined : sharedPageOf(v, vp);
        if (fp === undefined || fp.file !== file || fp.pgoff !== pgoff) continue;
        if (other.holdShared(vp, file, pgoff) >= 0) break;
      }
    }
    this.sharedCache.release(file, pgoff, this, vp, keep);
  }

  /** va as a number when [va, va+len) is user space, else -1. */
  private foreignRange(vaB: bigint, len: number): number {
    // (in numbers: BigInt arithmetic allocates on every access; past 2^53 the rounding stays above USER_END)
    const va = Number(vaB);
    if (vaB < 0n || len < 0 || va + len > USER_END) return -1;
    return va;
  }

  private foreignFault(reason: string): never {
    fail(EFAULT, reason);
  }

  private foreignErr(errno: number, reason: string): never {
    fail(errno, reason);
  }
}

/** The file page a MAP_SHARED (non-hugetlb) mapping maps at virtual page vp, or undefined. */
function sharedPageOf(v: ForeignVma, vp: number): { file: string; pgoff: number } | undefined {
  if (v.shared === undefined || v.hugetlb === true) return undefined;
  return { file: v.shared, pgoff: (v.pgoff ?? 0) + vp - Math.floor(v.start / PAGE) };
}

/** A MAP_HUGETLB range of the process backed by the model's pool. */
interface EmulatedHugetlb {
  start: number;
  end: number;
  order: 9 | 18;
  /** The pool holds a reservation for each page not yet faulted (not MAP_NORESERVE). */
  reserved: boolean;
  /** Page indexes (from start) whose folio consumed its reservation. */
  consumed: Set<number>;
}
