import type { ExternalFrame } from "../hw/phys-mem.js";
import { PAGE_SIZE as PAGE } from "../uapi/linux.js";
import type { PageTracker } from "./page-tracker.js";

/** How one holder reaches a cached page's bytes (offsets inside the page). */
export interface PageAccess {
  /** The bytes (short at the file's end), or -errno when this holder cannot reach them now. */
  read(off: number, len: number): Uint8Array | number;
  write(off: number, bytes: Uint8Array): void;
}

/**
 * One page of a real shared file, reached by every holder: the frame's
 * bytes are the file's, read and written through the first holder that can.
 */
class CachedPage implements ExternalFrame {
  readonly holders = new Map<object, PageAccess>();

  constructor(readonly pfn: number) {}

  read(off: number, len: number): Uint8Array {
    for (const a of this.holders.values()) {
      const r = a.read(off, len);
      if (typeof r === "number") continue;
      if (r.length === len) return r;
      const out = new Uint8Array(len); // past the file's end: zeros, as a page beyond i_size reads
      out.set(r);
      return out;
    }
    return new Uint8Array(len);
  }

  write(off: number, bytes: Uint8Array): void {
    for (const a of this.holders.values()) {
      a.write(off, bytes);
      return;
    }
  }
}

/**
 * The page cache of real shared files behind the exec bridge (a memfd, a
 * tmpfs file, MAP_SHARED anonymous memory), by file ("MAJ:MIN INODE" as
 * /proc/PID/maps prints it) and page offset: as in the kernel a file page
 * is one page whoever reaches it, so IOMMU_IOAS_MAP_FILE of a memfd and
 * IOMMU_IOAS_MAP (or pagemap) of a process's MAP_SHARED mapping of it give
 * the same frame. Each holder (a process's mapped page, a file's pinned
 * page) holds one reference. When the last holder lets go, the frame keeps
 * a copy of the page and lives on only while pinned.
 */
export class ForeignPageCache {
  private readonly cache = new Map<string, CachedPage>();

  constructor(private readonly pages: PageTracker) {}

  /** Pages some holder holds now. */
  get size(): number {
    return this.cache.size;
  }

  /** The frame of (file, pgoff), or -1 when no holder has it. */
  lookup(file: string, pgoff: number): number {
    return this.cache.get(`${file}#${pgoff}`)?.pfn ?? -1;
  }

  /** Holders of (file, pgoff). */
  holders(file: string, pgoff: number): number {
    return this.cache.get(`${file}#${pgoff}`)?.holders.size ?? 0;
  }

  /**
   * `holder` takes a reference on the page of (file, pgoff), a new zeroed
   * frame mirroring the file when no one has it: its pfn, or -1 when no
   * frame can be allocated. A holder takes a page once.
   */
  take(file: string, pgoff: number, holder: object, access: PageAccess, site: string): number {
    const key = `${file}#${pgoff}`;
    const c = this.cache.get(key);
    if (c !== undefined) {
      if (c.holders.has(holder)) return c.pfn;
      this.pages.get(c.pfn);
      c.holders.set(holder, access);
      return c.pfn;
    }
    const pfn = this.pages.allocFolio(0, site);
    if (pfn < 0) return -1;
    const page = new CachedPage(pfn);
    page.holders.set(holder, access);
    this.cache.set(key, page);
    this.pages.phys.external.set(pfn, page);
    return pfn;
  }

  /**
   * `holder` lets go of (file, pgoff). The last one: a pinned frame keeps a
   * copy of the page when `keep` (the holder can still read it), the frame
   * leaves the file and its reference goes.
   */
  release(file: string, pgoff: number, holder: object, keep: boolean): void {
    const key = `${file}#${pgoff}`;
    const c = this.cache.get(key);
    if (c === undefined) return;
    const access = c.holders.get(holder);
    if (access === undefined) return;
    if (c.holders.size === 1) {
      const bytes = keep && this.pages.isPinned(c.pfn) ? access.read(0, PAGE) : -1;
      this.cache.delete(key);
      this.pages.phys.external.delete(c.pfn);
      if (typeof bytes !== "number") {
        const page = new Uint8Array(PAGE);
        page.set(bytes.subarray(0, PAGE));
        this.pages.phys.write(c.pfn * PAGE, page);
      }
    }
    c.holders.delete(holder);
    this.pages.put(c.pfn);
  }
}
