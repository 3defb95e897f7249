import type { FaultInject } from "../hw/fault-inject.js";
import type { IommuDomain } from "../iommu/domain.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import {
  EADDRINUSE,
  EBUSY,
  EDEADLK,
  EEXIST,
  EINVAL,
  ENOENT,
  ENOMEM,
  EOVERFLOW,
  EPERM,
  fail,
} from "../uapi/errno.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from "../uapi/iommufd.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import { IntervalTree, type ItNode } from "./interval-tree.js";
import { allocIova, hex, U64_MAX } from "./iova-alloc.js";
import { type IoptPages, PAGE_SIZE, type PinUser } from "./pages.js";

/** What owns a reserved IOVA range (iopt_reserved.owner). */
export type ReservedOwner =
  | { kind: "domain"; domain: IommuDomain }
  | { kind: "device"; dev: object }
  | { kind: "test" }
  | { kind: "hw_queue"; obj: object };

/** An in-kernel access (emulated device) as the io_pagetable sees it. */
export interface IoptAccessHook {
  /** PAGE_SIZE when the access pins pages, else 1. */
  readonly iovaAlignment: bigint;
  /** ops->unmap: the driver must drop every pin inside the range before returning. */
  notifyUnmap(iova: bigint, length: bigint): void;
}

/**
 * struct iopt_area: one mapped IOVA interval backed by a slice of an
 * iopt_pages. Areas are never split by IOMMU_IOAS_UNMAP (only by the VFIO
 * type1 compat cut).
 */
export class IoptArea {
  node!: ItNode<IoptArea>;
  /** Held while the area is filled into the IOAS's domains. */
  domainsUser: PinUser | undefined;
  /** Pins by accesses inside this area. */
  numAccesses = 0;
  /** Set while an unmap waits for accesses to drop their pins (new pins get EINVAL). */
  preventAccess = false;
  /** Objects (HW queues) that lock the area against unmap. */
  numLocks = 0;
  constructor(
    readonly iova: bigint,
    readonly last: bigint,
    readonly pages: IoptPages,
    /** Byte offset of the area's first byte from the start of page 0 of `pages`. */
    readonly startByte: bigint,
    /** IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE. */
    readonly iommuProt: number,
  ) {}

  get length(): bigint {
    return this.last - this.iova + 1n;
  }
  /** First and last page index of `pages` this area uses. */
  get pagesFirst(): number {
    return Number(this.startByte / PAGE);
  }
  get pagesLast(): number {
    return Number((this.startByte + this.length - 1n) / PAGE);
  }
  /** Byte offset of the area's first byte within its first page. */
  get pageOffset(): number {
    return Number(this.startByte % PAGE);
  }
}

/** A slice of a pages object to map (MAP: all of it; COPY: pieces of source areas). */
export interface PagesSlice {
  pages: IoptPages;
  /** Byte offset from the start of the pages object's page 0. */
  startByte: bigint;
  length: bigint;
}

/**
 * struct io_pagetable: the IOAS's IOVA space. Areas, reserved ranges and
 * allowed ranges are interval trees; every attached paging domain is kept
 * filled with every area; pages are pinned only while a domain or an
 * access needs them (lazy pinning).
 */
export class IoPagetable {
  readonly areas = new IntervalTree<IoptArea>();
  readonly reserved = new IntervalTree<ReservedOwner>();
  readonly allowed = new IntervalTree<null>();
  readonly domains: IommuDomain[] = [];
  readonly accesses = new Set<IoptAccessHook>();
  iovaAlignment = 1n;
  disableLargePages = false;

  constructor(private readonly faults: FaultInject) {}

  // --- checks and allocation ------------------------------------------------

  /** iopt_check_iova(): a FIXED_IOVA request. */
  checkIova(iova: bigint, length: bigint): void {
    if (iova % this.iovaAlignment !== 0n) {
      fail(EINVAL, `IOVA ${hex(iova)} is not a multiple of the IOAS alignment ${hex(this.iovaAlignment)}`);
    }
    const last = iova + length - 1n;
    if (last > U64_MAX) fail(EOVERFLOW, `IOVA ${hex(iova)} + length ${hex(length)} - 1 overflows`);
    const r = this.reserved.firstIntersecting(iova, last);
    if (r !== null) {
      fail(
        EINVAL,
        `[${hex(iova)}, ${hex(last)}] intersects reserved range [${hex(r.start)}, ${hex(r.last)}] (${ownerName(r.value)})`,
      );
    }
    const a = this.areas.firstIntersecting(iova, last);
    if (a !== null)
      fail(EEXIST, `[${hex(iova)}, ${hex(last)}] overlaps area [${hex(a.start)}, ${hex(a.last)}]`);
  }

  allocIova(length: bigint, addr: bigint): bigint {
    return allocIova({
      length,
      addr,
      iovaAlignment: this.iovaAlignment,
      allowed: this.allowed,
      reserved: this.reserved,
      areas: this.areas,
    });
  }

  // --- map / unmap ----------------------------------------------------------

  /**
   * iopt_map_common(): place the slices at a fixed or allocated IOVA,
   * create the areas, and fill every domain. All-or-nothing. Takes a
   * reference on each slice's pages for its area. Returns the IOVA.
   */
  mapSlices(slices: PagesSlice[], iova: bigint, flags: number): bigint {
    let length = 0n;
    for (const s of slices) length += s.length;
    if (length === 0n || length % this.iovaAlignment !== 0n) {
      fail(
        EINVAL,
        `length ${hex(length)} is 0 or not a multiple of the IOAS alignment ${hex(this.iovaAlignment)}`,
      );
    }
    if ((flags & IOMMU_IOAS_MAP_FIXED_IOVA) !== 0) this.checkIova(iova, length);
    else {
      const first = slices[0];
      // The allocator aligns against the backing address of the first byte.
      iova = this.allocIova(length, first.pages.baseAddr + first.startByte);
    }
    let prot = IOMMU_CACHE;
    if (flags & IOMMU_IOAS_MAP_WRITEABLE) prot |= IOMMU_WRITE;
    if (flags & IOMMU_IOAS_MAP_READABLE) prot |= IOMMU_READ;
    for (const s of slices) {
      if ((prot & IOMMU_WRITE) !== 0 && !s.pages.writable) {
        fail(EPERM, "WRITEABLE requested but the source pages were mapped read-only");
      }
      if ((s.startByte % PAGE) % this.iovaAlignment !== 0n) {
        fail(
          EINVAL,
          `the backing memory's in-page offset ${hex(s.startByte % PAGE)} is not a multiple of the IOAS alignment ${hex(this.iovaAlignment)}`,
        );
      }
    }
    const made: IoptArea[] = [];
    let cur = iova;
    try {
      for (const s of slices) {
        if (this.faults.hit("iopt_alloc_area")) fail(ENOMEM, "cannot allocate the iopt_area");
        const area = new IoptArea(cur, cur + s.length - 1n, s.pages, s.startByte, prot);
        area.node = this.areas.insert(area.iova, area.last, area);
        s.pages.get();
        made.push(area);
        cur += s.length;
      }
      for (const a of made) this.fillArea(a);
    } catch (e) {
      for (const a of made.reverse()) this.destroyArea(a);
      throw e;
    }
    return iova;
  }

  /**
   * iopt_unmap_iova_range(): remove every area inside [start, last]. An area
   * sticking out of the range is ENOENT (never split); areas handled before
   * an error stay unmapped. Returns the bytes unmapped (0 when nothing);
   * `progress`, when given, holds the count so far even when it throws
   * (the type1 compat unmap reports it on failure too).
   */
  unmapRange(start: bigint, last: bigint, progress?: { unmapped: bigint }): bigint {
    let unmapped = 0n;
    let rounds = 0;
    for (;;) {
      const n = this.areas.firstIntersecting(start, last);
      if (n === null) break;
      const area = n.value;
      if (area.numLocks > 0) {
        fail(EBUSY, `area [${hex(area.iova)}, ${hex(area.last)}] is locked by a HW queue`);
      }
      if (area.iova < start || area.last > last) {
        fail(
          ENOENT,
          `area [${hex(area.iova)}, ${hex(area.last)}] is only partly inside [${hex(start)}, ${hex(last)}]; areas are never split`,
        );
      }
      // The kernel counts notification rounds per area: a new area starts afresh.
      if (area.iova !== start) rounds = 0;
      if (area.numAccesses > 0) {
        start = area.iova;
        if (++rounds > 100) {
          fail(
            EDEADLK,
            `accesses keep pins in [${hex(area.iova)}, ${hex(area.last)}] after 100 unmap notifications`,
          );
        }
        area.preventAccess = true;
        for (const acc of [...this.accesses]) acc.notifyUnmap(area.iova, area.length);
        continue;
      }
      unmapped += area.length;
      if (progress !== undefined) progress.unmapped = unmapped;
      this.destroyArea(area);
    }
    return unmapped;
  }

  unmapAll(): bigint {
    return this.unmapRange(0n, U64_MAX);
  }

  /**
   * iopt_get_pages(): the slices backing [iova, iova+length), which must be
   * covered by areas with no gap (it may start and end inside areas).
   */
  getPages(iova: bigint, length: bigint): PagesSlice[] {
    const last = iova + length - 1n;
    const out: PagesSlice[] = [];
    let cur = iova;
    for (const n of this.areas.intersecting(iova, last)) {
      const a = n.value;
      if (a.iova > cur) break;
      const end = a.last < last ? a.last : last;
      out.push({ pages: a.pages, startByte: a.startByte + (cur - a.iova), length: end - cur + 1n });
      cur = end + 1n;
      if (cur > last) return out;
    }
    return fail(
      ENOENT,
      `[${hex(iova)}, ${hex(last)}] is not fully covered by mapped areas (gap at ${hex(cur)})`,
    );
  }

  // --- reserved and allowed ranges -------------------------------------------

  /** iopt_reserve_iova(): EADDRINUSE when an allowed range or an area is in the way. */
  reserve(start: bigint, last: bigint, owner: ReservedOwner): ItNode<ReservedOwner> {
    const al = this.allowed.firstIntersecting(start, last);
    if (al !== null) {
      fail(
        EADDRINUSE,
        `reserving [${hex(start)}, ${hex(last)}] (${ownerName(owner)}) intersects allowed range [${hex(al.start)}, ${hex(al.last)}]`,
      );
    }
    const a = this.areas.firstIntersecting(start, last);
    if (a !== null) {
      fail(
        EADDRINUSE,
        `reserving [${hex(start)}, ${hex(last)}] (${ownerName(owner)}) intersects area [${hex(a.start)}, ${hex(a.last)}]`,
      );
    }
    if (this.faults.hit("iopt_reserve_iova")) fail(ENOMEM, "injected failure reserving an IOVA range");
    return this.reserved.insert(start, last, owner);
  }

  /** iopt_remove_reserved_iova(): drop every range with this owner. */
  removeReserved(match: (o: ReservedOwner) => boolean): void {
    for (const n of [...this.reserved.all()]) if (match(n.value)) this.reserved.remove(n);
  }

  /** iopt_set_allow_iova(): replace the allowed list; EADDRINUSE when one hits a reserved range. */
  setAllowed(ranges: [bigint, bigint][]): void {
    for (const [s, l] of ranges) {
      const r = this.reserved.firstIntersecting(s, l);
      if (r !== null) {
        fail(
          EADDRINUSE,
          `allowed range [${hex(s)}, ${hex(l)}] intersects reserved range [${hex(r.start)}, ${hex(r.last)}] (${ownerName(r.value)})`,
        );
      }
    }
    for (const n of [...this.allowed.all()]) this.allowed.remove(n);
    for (const [s, l] of ranges) this.allowed.insert(s, l, null);
  }

  /** The holes of the reserved set over [0, U64_MAX] (IOMMU_IOAS_IOVA_RANGES, VFIO IOVA_RANGE cap). */
  usableRanges(): [bigint, bigint][] {
    const out: [bigint, bigint][] = [];
    let cur = 0n;
    for (const n of this.reserved.all()) {
      if (n.start > cur) out.push([cur, n.start - 1n]);
      if (n.last >= U64_MAX) return out;
      if (n.last + 1n > cur) cur = n.last + 1n;
    }
    out.push([cur, U64_MAX]);
    return out;
  }

  // --- alignment ----------------------------------------------------------

  /** iopt_calculate_iova_alignment() with an optional extra domain/access. */
  computeAlignment(extra?: {
    domain?: IommuDomain;
    access?: IoptAccessHook;
    disableLarge?: boolean;
  }): bigint {
    let al = (extra?.disableLarge ?? this.disableLargePages) ? PAGE : 1n;
    for (const d of this.domains) if (d.minPageSize > al) al = d.minPageSize;
    if (extra?.domain && extra.domain.minPageSize > al) al = extra.domain.minPageSize;
    for (const a of this.accesses) if (a.iovaAlignment > al) al = a.iovaAlignment;
    if (extra?.access && extra.access.iovaAlignment > al) al = extra.access.iovaAlignment;
    return al;
  }

  /** iopt_check_iova_alignment(): every area must conform to a larger alignment (EADDRINUSE). */
  checkAlignment(al: bigint): void {
    if (al <= this.iovaAlignment) return;
    for (const n of this.areas.all()) {
      const a = n.value;
      if (a.iova % al !== 0n || a.length % al !== 0n || BigInt(a.pageOffset) % al !== 0n) {
        fail(
          EADDRINUSE,
          `area [${hex(a.iova)}, ${hex(a.last)}] does not satisfy the new IOVA alignment ${hex(al)}`,
        );
      }
    }
  }

  setDisableLargePages(disable: boolean): void {
    const al = this.computeAlignment({ disableLarge: disable });
    this.checkAlignment(al);
    this.disableLargePages = disable;
    this.iovaAlignment = al;
  }

  // --- domains --------------------------------------------------------------

  /**
   * iopt_table_add_domain(): raise the alignment, reserve what lies outside
   * the apertures, and map every area. All-or-nothing.
   */
  addDomain(domain: IommuDomain): void {
    const min = domain.minPageSize;
    if (min > PAGE) fail(EINVAL, `the domain's smallest page ${hex(min)} is larger than PAGE_SIZE`);
    const al = this.computeAlignment({ domain });
    this.checkAlignment(al);
    const owner: ReservedOwner = { kind: "domain", domain };
    const added: ItNode<ReservedOwner>[] = [];
    try {
      const aps = [...domain.apertures].sort((x, y) => (x.start < y.start ? -1 : 1));
      let cur = 0n;
      for (const ap of aps) {
        if (ap.start > cur) added.push(this.reserve(cur, ap.start - 1n, owner));
        cur = ap.last + 1n;
      }
      if (cur <= U64_MAX) added.push(this.reserve(cur, U64_MAX, owner));
      const filled: IoptArea[] = [];
      try {
        for (const n of this.areas.all()) {
          const a = n.value;
          if (a.pages.revoked) continue;
          this.pinArea(a);
          filled.push(a);
          this.mapAreaInto(a, domain);
        }
      } catch (e) {
        for (const a of filled) {
          domain.unmap(a.iova, a.length);
          if (this.domains.length === 0) this.unpinArea(a);
        }
        throw e;
      }
    } catch (e) {
      for (const n of added) this.reserved.remove(n);
      throw e;
    }
    this.domains.push(domain);
    this.iovaAlignment = al;
  }

  /** iopt_table_remove_domain(): unmap everything from it; unpin when it was the last. */
  removeDomain(domain: IommuDomain): void {
    const i = this.domains.indexOf(domain);
    if (i < 0) return;
    // The kernel's xarray moves the last domain into the hole, so domains[0]
    // (what becomes every area's storage_domain) is the one the kernel picks.
    const last = this.domains.pop()!;
    if (last !== domain) this.domains[i] = last;
    for (const n of this.areas.all()) {
      const a = n.value;
      if (!a.pages.revoked) domain.unmap(a.iova, a.length);
      if (this.domains.length === 0) this.unpinArea(a);
    }
    this.removeReserved((o) => o.kind === "domain" && o.domain === domain);
    this.iovaAlignment = this.computeAlignment();
  }

  /** iopt_revoke_notify(): unmap every area of a revoked dma-buf's pages from every domain. */
  revokePages(pages: IoptPages): void {
    for (const n of this.areas.all()) {
      const a = n.value;
      if (a.pages !== pages || a.domainsUser === undefined) continue;
      for (const d of this.domains) d.unmap(a.iova, a.length);
      this.unpinArea(a);
    }
  }

  // --- accesses -------------------------------------------------------------

  addAccess(acc: IoptAccessHook): void {
    const al = this.computeAlignment({ access: acc });
    this.checkAlignment(al);
    this.accesses.add(acc);
    this.iovaAlignment = al;
  }

  removeAccess(acc: IoptAccessHook): void {
    this.accesses.delete(acc);
    this.iovaAlignment = this.computeAlignment();
  }

  // --- VFIO type1 compat: cut an area in two -----------------------------------

  /**
   * iopt_cut_iova(): split the areas containing each cut point so that the
   * point ends an area. Only when huge pages are disabled (type1 v1). Both
   * halves share the pages object.
   */
  cutIova(points: bigint[]): void {
    for (const p of points) {
      const n = this.areas.firstIntersecting(p, p);
      if (n === null) continue;
      const a = n.value;
      // iopt_area_split(): a point on the area's first or last byte needs no cut.
      if (a.last === p || a.iova === p) continue;
      if (!this.disableLargePages)
        fail(EINVAL, "cannot split an area while large pages are enabled (TYPE1v2)");
      if (a.numAccesses > 0) fail(EINVAL, "cannot split an area an access has pinned");
      const split = p + 1n;
      if (split % this.iovaAlignment !== 0n || (split - a.iova + BigInt(a.pageOffset)) % PAGE !== 0n) {
        fail(EINVAL, `cut point ${hex(p)} is not on a page boundary of the area`);
      }
      this.splitArea(a, split);
    }
  }

  private splitArea(a: IoptArea, at: bigint): void {
    const lhs = new IoptArea(a.iova, at - 1n, a.pages, a.startByte, a.iommuProt);
    const rhs = new IoptArea(at, a.last, a.pages, a.startByte + (at - a.iova), a.iommuProt);
    // Pin both halves before dropping the whole so no page is unpinned in between.
    if (a.domainsUser !== undefined) {
      this.pinArea(lhs);
      this.pinArea(rhs);
      a.pages.removeUser(a.domainsUser);
      a.domainsUser = undefined;
    }
    this.areas.remove(a.node);
    lhs.node = this.areas.insert(lhs.iova, lhs.last, lhs);
    rhs.node = this.areas.insert(rhs.iova, rhs.last, rhs);
    a.pages.get();
  }

  // --- internals ------------------------------------------------------------

  /** Pin the area's pages for the domains (once, shared by all domains). */
  private pinArea(a: IoptArea): void {
    if (a.domainsUser !== undefined) return;
    a.domainsUser = a.pages.addUser(a.pagesFirst, a.pagesLast, "domain", (a.iommuProt & IOMMU_WRITE) !== 0);
  }

  private unpinArea(a: IoptArea): void {
    if (a.domainsUser === undefined) return;
    a.pages.removeUser(a.domainsUser);
    a.domainsUser = undefined;
  }

  /** iopt_area_fill_domains(): pin and map into every domain; undo on failure. */
  private fillArea(a: IoptArea): void {
    if (this.domains.length === 0 || a.pages.revoked) return;
    this.pinArea(a);
    const done: IommuDomain[] = [];
    try {
      for (const d of this.domains) {
        this.mapAreaInto(a, d);
        done.push(d);
      }
    } catch (e) {
      for (const d of done) d.unmap(a.iova, a.length);
      this.unpinArea(a);
      throw e;
    }
  }

  /**
   * Map an area's pinned pages into one domain: one iommu_map per
   * physically contiguous run (the core then picks the largest page sizes),
   * or one PAGE_SIZE map at a time when large pages are disabled, which is
   * what later lets type1 compat unmap a part.
   */
  mapAreaInto(a: IoptArea, d: IommuDomain): void {
    if (this.faults.hit("iopt_area_fill_domain"))
      fail(ENOMEM, "injected failure mapping an area into a domain");
    if (!this.disableLargePages) {
      // one iommu_map per run, batched on numbers; mapRuns undoes itself on failure
      d.mapRuns(a.iova, a.pages.runsIn(a.pagesFirst, a.pagesLast), a.pageOffset, a.length, a.iommuProt);
      return;
    }
    const runs = a.pages.runsIn(a.pagesFirst, a.pagesLast);
    let iova = a.iova;
    let skip = a.pageOffset;
    let left = a.length;
    try {
      for (let r = 0; r < runs.count; r++) {
        const pa = BigInt(runs.pfn[r]) * PAGE + BigInt(skip);
        let len = BigInt(runs.len[r]) * PAGE - BigInt(skip);
        if (len > left) len = left;
        for (let off = 0n; off < len; off += PAGE) {
          // biome-ignore lint/complexity/useMathMinMax: bigints (Math.min takes numbers)
          const step = len - off < PAGE ? len - off : PAGE;
          d.map(iova + off, pa + off, step, a.iommuProt);
        }
        iova += len;
        left -= len;
        skip = 0;
      }
    } catch (e) {
      if (iova > a.iova) d.unmap(a.iova, iova - a.iova);
      throw e;
    }
  }

  /** Unmap from every domain, unpin, drop from the tree, put the pages. */
  private destroyArea(a: IoptArea): void {
    if (!a.pages.revoked) for (const d of this.domains) d.unmap(a.iova, a.length);
    this.unpinArea(a);
    this.areas.remove(a.node);
    a.pages.put();
  }
}

export function ownerName(o: ReservedOwner): string {
  switch (o.kind) {
    case "domain":
      return "outside the domain aperture";
    case "device":
      return "a device's reserved region";
    case "hw_queue":
      return "HW queue";
    default:
      return "reserved by IOMMU_TEST_OP_ADD_RESERVED";
  }
}

export { PAGE_SIZE };
