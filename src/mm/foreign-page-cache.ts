import { PageIndex } from "../hw/page-index.js";
import type { ExternalSource } from "../hw/phys-mem.js";
import { PAGE_SIZE as PAGE } from "../uapi/linux.js";
import type { PageTracker } from "./page-tracker.js";

/**
 * Who holds cached pages: a process (its page at a virtual page number) or
 * a file of a process (its page at a page offset). `page` is the holder's
 * own page number, so a hold costs no object.
 */
export interface CacheHolder {
  /** The bytes at `off` of its page `page` (short at the file's end), or -errno when it cannot reach them now. */
  holderRead(page: number, off: number, len: number): Uint8Array | number;
  holderWrite(page: number, off: number, bytes: Uint8Array): void;
}

/** A hold after a page's first: holder id and the holder's page number. */
interface Hold {
  id: number;
  page: number;
}

/**
 * The cached pages of one file, by page offset, in typed arrays (a 1 GiB
 * MAP_SHARED anonymous mapping is 262144 pages). Each page's holders, in
 * the order they came: the first in `firstId`/`firstPage`, the rest in
 * `more` (rare: two processes or a process and the file itself). As an
 * ExternalSource its page number is the page offset: the frame's bytes are
 * read through the first holder that can reach them, written through the
 * first holder.
 */
class FileCache implements ExternalSource {
  readonly pfn = new PageIndex();
  readonly firstId = new PageIndex();
  readonly firstPage = new PageIndex();
  readonly more = new Map<number, Hold[]>();

  constructor(private readonly holders: HolderTable) {}

  count(pgoff: number): number {
    if (this.firstId.get(pgoff) < 0) return 0;
    return 1 + (this.more.get(pgoff)?.length ?? 0);
  }

  holds(pgoff: number, id: number, page: number): boolean {
    if (this.firstId.get(pgoff) === id && this.firstPage.get(pgoff) === page) return true;
    return this.more.get(pgoff)?.some((h) => h.id === id && h.page === page) ?? false;
  }

  readAt(addr: number, len: number): Uint8Array {
    const pgoff = Math.floor(addr / PAGE);
    const off = addr - pgoff * PAGE;
    const id = this.firstId.get(pgoff);
    if (id >= 0) {
      const r = this.readThrough(id, this.firstPage.get(pgoff), off, len);
      if (r !== undefined) return r;
      for (const h of this.more.get(pgoff) ?? []) {
        const x = this.readThrough(h.id, h.page, off, len);
        if (x !== undefined) return x;
      }
    }
    return new Uint8Array(len);
  }

  writeAt(addr: number, bytes: Uint8Array): void {
    const pgoff = Math.floor(addr / PAGE);
    const id = this.firstId.get(pgoff);
    if (id >= 0) this.holders.get(id).holderWrite(this.firstPage.get(pgoff), addr - pgoff * PAGE, bytes);
  }

  private readThrough(id: number, page: number, off: number, len: number): Uint8Array | undefined {
    const r = this.holders.get(id).holderRead(page, off, len);
    if (typeof r === "number") return undefined;
    if (r.length === len) return r;
    const out = new Uint8Array(len); // past the file's end: zeros, as a page beyond i_size reads
    out.set(r);
    return out;
  }
}

/** Holders by small id, each kept only while it holds a page. */
class HolderTable {
  private readonly list: (CacheHolder | null)[] = [];
  private readonly uses: number[] = [];
  private readonly ids = new Map<CacheHolder, number>();
  private readonly free: number[] = [];

  get(id: number): CacheHolder {
    return this.list[id]!;
  }

  /** The holder's id, or -1 when it holds nothing. */
  find(h: CacheHolder): number {
    return this.ids.get(h) ?? -1;
  }

  use(h: CacheHolder): number {
    let id = this.ids.get(h);
    if (id === undefined) {
      id = this.free.pop() ?? this.list.length;
      this.list[id] = h;
      this.uses[id] = 0;
      this.ids.set(h, id);
    }
    this.uses[id]++;
    return id;
  }

  unuse(id: number): void {
    if (--this.uses[id] > 0) return;
    this.ids.delete(this.list[id]!);
    this.list[id] = null;
    this.free.push(id);
  }
}

/**
 * The page cache of real shared files behind the exec bridge (a memfd, a
 * tmpfs file, MAP_SHARED anonymous memory), by file ("MAJ:MIN INODE" as
 * /proc/PID/maps prints it) and page offset: as in the kernel a file page
 * is one page whoever reaches it, so IOMMU_IOAS_MAP_FILE of a memfd and
 * IOMMU_IOAS_MAP (or pagemap) of a process's MAP_SHARED mapping of it give
 * the same frame. Each hold (a process's mapped page, a file's pinned
 * page) holds one reference. When the last holder lets go, the frame keeps
 * a copy of the page and lives on only while pinned.
 */
export class ForeignPageCache {
  private readonly files = new Map<string, FileCache>();
  private readonly holderTable = new HolderTable();
  private cached = 0;
  private lastName = "";
  private last: FileCache | undefined;

  constructor(private readonly pages: PageTracker) {}

  /** Pages some holder holds now. */
  get size(): number {
    return this.cached;
  }

  /** The frame of (file, pgoff), or -1 when no holder has it. */
  lookup(file: string, pgoff: number): number {
    return this.file(file)?.pfn.get(pgoff) ?? -1;
  }

  /** Holders of (file, pgoff). */
  holders(file: string, pgoff: number): number {
    return this.file(file)?.count(pgoff) ?? 0;
  }

  /**
   * `holder` takes a reference on the page of (file, pgoff), which is its
   * own page `page`: a new zeroed frame mirroring the file when no one has
   * it. Its pfn, or -1 when no frame can be allocated. A holder takes a
   * page once.
   */
  take(file: string, pgoff: number, holder: CacheHolder, page: number, site: string): number {
    let fc = this.file(file);
    const had = fc === undefined ? -1 : fc.pfn.get(pgoff);
    if (fc !== undefined && had >= 0) {
      const known = this.holderTable.find(holder);
      if (known >= 0 && fc.holds(pgoff, known, page)) return had;
      this.pages.get(had);
      const id = this.holderTable.use(holder);
      const more = fc.more.get(pgoff);
      if (more === undefined) fc.more.set(pgoff, [{ id, page }]);
      else more.push({ id, page });
      return had;
    }
    const pfn = this.pages.allocFolio(0, site);
    if (pfn < 0) return -1;
    if (fc === undefined) {
      fc = new FileCache(this.holderTable);
      this.files.set(file, fc);
      this.lastName = file;
      this.last = fc;
    }
    fc.pfn.set(pgoff, pfn);
    fc.firstId.set(pgoff, this.holderTable.use(holder));
    fc.firstPage.set(pgoff, page);
    this.cached++;
    this.pages.phys.external.setPage(pfn, fc, pgoff);
    return pfn;
  }

  /**
   * `holder` lets go of (file, pgoff), its page `page`. The last one: a
   * pinned frame keeps a copy of the page when `keep` (the holder can still
   * read it), the frame leaves the file and its reference goes.
   */
  release(file: string, pgoff: number, holder: CacheHolder, page: number, keep: boolean): void {
    const fc = this.file(file);
    const id = this.holderTable.find(holder);
    if (fc === undefined || id < 0 || !fc.holds(pgoff, id, page)) return;
    const pfn = fc.pfn.get(pgoff);
    const more = fc.more.get(pgoff);
    if (more === undefined) {
      // the last holder
      const bytes = keep && this.pages.isPinned(pfn) ? holder.holderRead(page, 0, PAGE) : -1;
      fc.pfn.delete(pgoff);
      fc.firstId.delete(pgoff);
      fc.firstPage.delete(pgoff);
      this.cached--;
      this.pages.phys.external.delete(pfn);
      if (typeof bytes !== "number") {
        const copy = new Uint8Array(PAGE);
        copy.set(bytes.subarray(0, PAGE));
        this.pages.phys.write(pfn * PAGE, copy);
      }
      if (fc.pfn.size === 0) {
        this.files.delete(file);
        if (this.last === fc) {
          this.last = undefined;
          this.lastName = "";
        }
      }
    } else if (fc.firstId.get(pgoff) === id && fc.firstPage.get(pgoff) === page) {
      // the next holder, in the order they came, becomes the first
      const next = more.shift()!;
      fc.firstId.set(pgoff, next.id);
      fc.firstPage.set(pgoff, next.page);
      if (more.length === 0) fc.more.delete(pgoff);
    } else {
      more.splice(
        more.findIndex((h) => h.id === id && h.page === page),
        1,
      );
      if (more.length === 0) fc.more.delete(pgoff);
    }
    this.holderTable.unuse(id);
    this.pages.put(pfn);
  }

  private file(name: string): FileCache | undefined {
    if (name === this.lastName && this.last !== undefined) return this.last;
    const fc = this.files.get(name);
    if (fc !== undefined) {
      this.lastName = name;
      this.last = fc;
    }
    return fc;
  }
}
