import { EBUSY, EFBIG, EINVAL, ENODEV, ENOMEM, EPERM, fail } from "../uapi/errno.js";
import {
  F_ALL_SEALS,
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MAX_LFS_FILESIZE,
  MFD_ALLOW_SEALING,
  MFD_HUGE_MASK,
  MFD_HUGE_SHIFT,
  MFD_HUGETLB,
  MFD_NOEXEC_SEAL,
  PAGE_SIZE,
} from "./mman.js";
import type { FolioOrder, PageTracker } from "./page-tracker.js";
import { emptyRuns, type PfnRuns, RunBuilder } from "./pfn-runs.js";
import { UndoLog } from "./undo.js";
import type { PageShift, Vma } from "./vma.js";

/**
 * A shmem or hugetlbfs file: a memfd, or the file behind a shared anonymous
 * (or anonymous hugetlb) mapping. Its page cache maps a folio index to the
 * folio's head pfn; a folio is one page for shmem, a whole huge page for
 * hugetlb. Pages are allocated on first touch (a fault, a pin, a pwrite),
 * and a page the cache drops (truncate, last close) lives on while pinned.
 *
 * References: one per open file description (the kernel layer's fd) and one
 * per VMA mapping it; the last put frees the page cache.
 */
export class MemFile {
  /** Page size of the page cache: 12 (shmem), 21 or 30 (hugetlbfs). */
  readonly shift: PageShift;
  private readonly order: FolioOrder;
  /** Pages of 4 KiB per folio. */
  private readonly ppf: number;
  /** i_size in bytes. */
  size = 0n;
  seals: number;
  private refs = 1;
  private readonly cache = new Map<number, number>();
  /**
   * Hugetlbfs on a limited pool: folio indices reserved by a mapping or
   * instantiated (the inode's resv_map regions). An index here and not in
   * the cache holds an unconsumed reservation on the pool.
   */
  private readonly resvIdx = new Set<number>();
  /** VMAs mapping this file (the i_mmap tree). */
  readonly mappings = new Set<Vma>();
  /** Shared writable mappings (i_mmap_writable): F_SEAL_WRITE is refused while any exists. */
  private writableShared = 0;
  released = false;

  /**
   * A new file with one reference (the caller's). `flags` are memfd_create's
   * MFD_* flags; for MFD_HUGETLB the page size comes from the MFD_HUGE_* bits
   * (0 = the default 2 MiB). Use `MemFile.create` for the checked version.
   */
  constructor(
    readonly pages: PageTracker,
    readonly name: string,
    readonly flags = 0,
  ) {
    const shift =
      (flags & MFD_HUGETLB) !== 0 ? hugeShiftFromLog((flags >>> MFD_HUGE_SHIFT) & MFD_HUGE_MASK) : 12;
    if (shift === undefined)
      throw new Error(`MemFile: unsupported huge page size in flags 0x${flags.toString(16)}`);
    this.shift = shift;
    this.order = (shift - 12) as FolioOrder;
    this.ppf = 2 ** this.order;
    // A memfd starts sealed against sealing unless MFD_ALLOW_SEALING (mm/memfd.c).
    this.seals = F_SEAL_SEAL;
    if ((flags & MFD_NOEXEC_SEAL) !== 0) this.seals = F_SEAL_EXEC;
    else if ((flags & MFD_ALLOW_SEALING) !== 0) this.seals = 0;
    pages.memFiles++;
  }

  /**
   * memfd_create's file setup: ENODEV for a huge page size the machine has
   * no hstate for (hugetlb_file_setup), ENOMEM on an allocation failure.
   */
  static create(pages: PageTracker, name: string, flags: number, site?: string): MemFile {
    const log = (flags >>> MFD_HUGE_SHIFT) & MFD_HUGE_MASK;
    if ((flags & MFD_HUGETLB) !== 0 && hugeShiftFromLog(log) === undefined) {
      fail(
        ENODEV,
        `${name}: no hugetlb pool of the MFD_HUGE_* size asked for (2^${log} bytes; hugetlb_file_setup)`,
      );
    }
    const s = site ?? ((flags & MFD_HUGETLB) !== 0 ? "hugetlb_file_setup" : "shmem_file_setup");
    if (pages.faults.hit(s)) fail(ENOMEM, `${name}: cannot allocate the file (${s})`);
    return new MemFile(pages, name, flags);
  }

  get hugetlb(): boolean {
    return this.shift !== 12;
  }

  /** Bytes per folio. */
  get folioSize(): number {
    return 2 ** this.shift;
  }

  /** 4 KiB pages up to EOF (partial last page included). */
  get nrPages(): number {
    return Number((this.size + BigInt(PAGE_SIZE - 1)) >> 12n);
  }

  /** Folios up to EOF. */
  get nrFolios(): number {
    return Number((this.size + BigInt(this.folioSize - 1)) >> BigInt(this.shift));
  }

  /** Folios in the page cache now. */
  get cachedFolios(): number {
    return this.cache.size;
  }

  get refCount(): number {
    return this.refs;
  }

  get(): this {
    if (this.released) throw new Error(`MemFile ${this.name}: get after release`);
    this.refs++;
    return this;
  }

  /** Drop a reference; the last one frees the page cache (pinned pages live on). */
  put(): void {
    if (this.refs <= 0) throw new Error(`MemFile ${this.name}: put without reference`);
    if (--this.refs > 0) return;
    this.unreserveFrom(0);
    for (const head of this.cache.values()) this.pages.put(head);
    this.cache.clear();
    this.released = true;
    this.pages.memFiles--;
  }

  /** Head pfn of folio `idx` if cached, else -1. */
  folio(idx: number): number {
    return this.cache.get(idx) ?? -1;
  }

  /**
   * Head pfn of folio `idx`, allocated (zeroed) if absent; -1 when
   * allocation fails. The caller checks EOF. With `undo`, an allocation is
   * recorded so the caller can take it back.
   */
  folioAlloc(idx: number, undo: UndoLog | null): number {
    const have = this.cache.get(idx);
    if (have !== undefined) return have;
    if (this.hugetlb && this.pages.hstate(this.order as 9 | 18).limited) return this.hugeAlloc(idx, undo);
    const head = this.pages.allocFolio(
      this.order,
      this.hugetlb ? "alloc_hugetlb_folio" : "shmem_alloc_folio",
    );
    if (head < 0) return -1;
    this.cache.set(idx, head);
    undo?.add(() => {
      this.cache.delete(idx);
      this.pages.put(head);
    });
    return head;
  }

  /**
   * folioAlloc on a limited pool: an index a mapping reserved consumes its
   * reservation (and cannot fail); any other needs a free page nobody
   * reserved or a surplus page, and joins the reserved regions once
   * instantiated, as region_add does.
   */
  private hugeAlloc(idx: number, undo: UndoLog | null): number {
    const order = this.order as 9 | 18;
    const reserved = this.resvIdx.has(idx);
    const head = reserved
      ? this.pages.allocReservedFolio(order)
      : this.pages.allocFolio(order, "alloc_hugetlb_folio");
    if (head < 0) return -1;
    this.cache.set(idx, head);
    if (!reserved) this.resvIdx.add(idx);
    undo?.add(() => {
      this.cache.delete(idx);
      if (reserved) this.pages.hstate(order).restoreReserve();
      else this.resvIdx.delete(idx);
      this.pages.put(head);
    });
    return head;
  }

  /**
   * hugetlb_reserve_pages for a shared mapping of folios [from, to): the
   * indices neither reserved nor instantiated yet are reserved on the pool.
   * False (the mmap's ENOMEM) with nothing changed when the pool cannot.
   * A no-op on shmem or an unlimited pool.
   */
  reserveShared(from: number, to: number): boolean {
    if (!this.hugetlb) return true;
    const hs = this.pages.hstate(this.order as 9 | 18);
    if (!hs.limited) return true;
    let chg = 0;
    for (let i = from; i < to; i++) if (!this.resvIdx.has(i) && !this.cache.has(i)) chg++;
    if (!hs.reserve(chg)) return false;
    for (let i = from; i < to; i++) this.resvIdx.add(i);
    return true;
  }

  /** Unconsumed reservations of this file (resv_map entries with no page). */
  get unconsumedReservations(): number {
    let n = 0;
    for (const i of this.resvIdx) if (!this.cache.has(i)) n++;
    return n;
  }

  /** hugetlb_unreserve_pages from folio `first` on (truncation, or the inode's eviction). */
  private unreserveFrom(first: number): void {
    if (this.resvIdx.size === 0) return;
    let unused = 0;
    for (const i of this.resvIdx) {
      if (i < first) continue;
      if (!this.cache.has(i)) unused++;
      this.resvIdx.delete(i);
    }
    this.pages.hstate(this.order as 9 | 18).unreserve(unused);
  }

  /** The pfn of 4 KiB page `pgoff` if present in the cache, else -1. */
  pfnAt(pgoff: number): number {
    const fi = Math.floor(pgoff / this.ppf);
    const head = this.cache.get(fi);
    return head === undefined ? -1 : head + (pgoff - fi * this.ppf);
  }

  addMapping(v: Vma): void {
    this.mappings.add(v);
    if (v.shared && v.mayWrite) this.writableShared++;
  }

  removeMapping(v: Vma): void {
    if (!this.mappings.delete(v)) throw new Error("MemFile.removeMapping: not mapped");
    if (v.shared && v.mayWrite) this.writableShared--;
  }

  /**
   * ftruncate(): 0 or -errno. Shrinking drops cached pages past the new
   * end (and private COW copies of them in private mappings, as
   * truncate_pagecache unmaps even COWed pages); pinned pages survive
   * until unpinned. The part of the last page past EOF reads as zero.
   */
  ftruncate(len: bigint): number {
    if (len < 0n) return this.err(EINVAL, "ftruncate: negative length");
    if (this.hugetlb) {
      if (len > MAX_LFS_FILESIZE) return this.err(EFBIG, "ftruncate: past the maximum file size");
      if (len % BigInt(this.folioSize) !== 0n) {
        return this.err(
          EINVAL,
          `ftruncate: hugetlbfs sizes are multiples of the huge page size (${this.folioSize})`,
        );
      }
    }
    if (len < this.size && (this.seals & F_SEAL_SHRINK) !== 0)
      return this.err(EPERM, "ftruncate: F_SEAL_SHRINK");
    if (len > this.size && (this.seals & F_SEAL_GROW) !== 0) return this.err(EPERM, "ftruncate: F_SEAL_GROW");
    if (len > MAX_LFS_FILESIZE) return this.err(EFBIG, "ftruncate: past the maximum file size");
    if (len < this.size) this.shrink(len);
    this.size = len;
    return 0;
  }

  /** Grow i_size to at least `len` (a writable hugetlbfs mmap does this). */
  growTo(len: bigint): void {
    if (len > this.size) this.size = len;
  }

  /**
   * memfd_pin_folios() for IOMMU_IOAS_MAP_FILE: pin `n` pages from page
   * `pgoff`, allocating absent ones. All-or-nothing: EINVAL past EOF,
   * ENOMEM on an allocation (or injected) failure with nothing pinned or
   * allocated. `write` does not change what is pinned (the pages are the
   * file's own; there is no COW to break).
   */
  pinPages(pgoff: number, n: number, _write: boolean, site = "memfd_pin_folios"): PfnRuns {
    if (!Number.isInteger(pgoff) || !Number.isInteger(n) || pgoff < 0 || n < 0) {
      return this.err(EINVAL, "pin: bad range");
    }
    if (n === 0) return emptyRuns();
    if (pgoff + n > this.nrPages) return this.err(EINVAL, "pin: range extends past EOF");
    if (this.pages.faults.hit(site)) return this.err(ENOMEM, `pin: injected failure at ${site}`);
    const undo = new UndoLog();
    const b = new RunBuilder();
    const end = pgoff + n;
    for (let p = pgoff; p < end; ) {
      const fi = Math.floor(p / this.ppf);
      const head = this.folioAlloc(fi, undo);
      if (head < 0) {
        this.pages.unpinRuns(b.peek());
        undo.rollback();
        return this.err(ENOMEM, `pin: cannot allocate page ${p} of memfd ${this.name}`);
      }
      const sub = p - fi * this.ppf;
      const step = Math.min(this.ppf - sub, end - p);
      this.pages.pinRange(head + sub, step);
      b.push(head + sub, step);
      p += step;
    }
    return b.finish();
  }

  unpinPages(runs: PfnRuns): void {
    this.pages.unpinRuns(runs);
  }

  /** pread(): bytes from `off` up to EOF; holes read as zero and stay holes. */
  read(off: bigint, len: number): Uint8Array {
    if (off < 0n) return this.err(EINVAL, "read: negative offset");
    if (off >= this.size) return new Uint8Array(0);
    const n = Number(off + BigInt(len) > this.size ? this.size - off : BigInt(len));
    const out = new Uint8Array(n);
    const phys = this.pages.phys;
    let pos = Number(off);
    for (let done = 0; done < n; ) {
      const pg = Math.floor(pos / PAGE_SIZE);
      const inPage = pos - pg * PAGE_SIZE;
      const step = Math.min(PAGE_SIZE - inPage, n - done);
      const pfn = this.pfnAt(pg);
      if (pfn >= 0) out.set(phys.peekU8(pfn).subarray(inPage, inPage + step), done);
      done += step;
      pos += step;
    }
    return out;
  }

  /** pwrite(): bytes written or -errno; extends the file. All-or-nothing. */
  write(off: bigint, bytes: Uint8Array): number {
    if (off < 0n) return this.err(EINVAL, "write: negative offset");
    if (this.hugetlb) return this.err(EINVAL, "write: hugetlbfs files have no write()");
    if ((this.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) !== 0)
      return this.err(EPERM, "write: F_SEAL_WRITE");
    if (bytes.length === 0) return 0;
    const endB = off + BigInt(bytes.length);
    if (endB > MAX_LFS_FILESIZE) return this.err(EFBIG, "write: past the maximum file size");
    if (endB > this.size && (this.seals & F_SEAL_GROW) !== 0) return this.err(EPERM, "write: F_SEAL_GROW");
    const undo = new UndoLog();
    const start = Number(off);
    const first = Math.floor(start / PAGE_SIZE);
    const last = Math.floor((start + bytes.length - 1) / PAGE_SIZE);
    for (let pg = first; pg <= last; pg++) {
      if (this.folioAlloc(pg, undo) < 0) {
        undo.rollback();
        return this.err(ENOMEM, `write: cannot allocate page ${pg} of memfd ${this.name}`);
      }
    }
    const phys = this.pages.phys;
    for (let done = 0; done < bytes.length; ) {
      const pos = start + done;
      const pg = Math.floor(pos / PAGE_SIZE);
      const inPage = pos - pg * PAGE_SIZE;
      const step = Math.min(PAGE_SIZE - inPage, bytes.length - done);
      phys.frameU8(this.pfnAt(pg)).set(bytes.subarray(done, done + step), inPage);
      done += step;
    }
    if (endB > this.size) this.size = endB;
    return bytes.length;
  }

  /** F_ADD_SEALS: 0 or -errno (EPERM when sealed, EBUSY for F_SEAL_WRITE while writably mapped or pinned). */
  addSeals(seals: number): number {
    if ((seals & ~F_ALL_SEALS) !== 0) return this.err(EINVAL, "add_seals: unknown seal bits");
    if ((this.seals & F_SEAL_SEAL) !== 0)
      return this.err(EPERM, "add_seals: the file is sealed against sealing");
    if ((seals & F_SEAL_WRITE) !== 0 && (this.seals & F_SEAL_WRITE) === 0) {
      if (this.writableShared > 0)
        return this.err(EBUSY, "add_seals: F_SEAL_WRITE with a shared writable mapping");
      for (const head of this.cache.values()) {
        if (this.pages.isPinned(head)) {
          return this.err(EBUSY, "add_seals: F_SEAL_WRITE while pages are pinned");
        }
      }
    }
    this.seals |= seals;
    return 0;
  }

  private shrink(len: bigint): void {
    const keepFolios = Number((len + BigInt(this.folioSize - 1)) >> BigInt(this.shift));
    this.unreserveFrom(keepFolios);
    for (const [idx, head] of this.cache) {
      if (idx >= keepFolios) {
        this.cache.delete(idx);
        this.pages.put(head);
      }
    }
    // Zero the tail of a partial last page (shmem only; hugetlbfs sizes are aligned).
    const tail = Number(len % BigInt(PAGE_SIZE));
    if (tail !== 0) {
      const pfn = this.pfnAt(Number(len >> 12n));
      if (pfn >= 0 && this.pages.phys.isResident(pfn)) this.pages.phys.frameU8(pfn).fill(0, tail);
    }
    // Unmap even COWed private copies past the new EOF (page-rounded, in 4 KiB pages).
    const firstGone = keepFolios * this.ppf;
    for (const v of this.mappings) {
      if (v.shared) continue;
      const vEndPg = v.pgoff + (v.end - v.start) / PAGE_SIZE;
      if (vEndPg <= firstGone) continue;
      const from = firstGone <= v.pgoff ? v.start : v.start + (firstGone - v.pgoff) * PAGE_SIZE;
      v.mm.zapPrivate(v, from, v.end);
    }
  }

  /** Fail with the rule that refused (KernelError, as everywhere above src/pt). */
  private err(errno: number, reason: string): never {
    fail(errno, reason);
  }
}

/** Page shift for a MAP_HUGE_* / MFD_HUGE_* log2 size: 0 = default 2 MiB; undefined when unsupported. */
export function hugeShiftFromLog(log: number): PageShift | undefined {
  if (log === 0 || log === 21) return 21;
  if (log === 30) return 30;
  return undefined;
}
