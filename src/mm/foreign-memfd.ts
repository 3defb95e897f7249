import { EINVAL, ENOMEM, fail } from "../uapi/errno.js";
import { PAGE_SIZE as PAGE } from "../uapi/linux.js";
import type { CacheHolder, ForeignPageCache } from "./foreign-page-cache.js";
import { MemFile } from "./memfd.js";
import type { PageTracker } from "./page-tracker.js";
import { emptyRuns, type PfnRuns, RunBuilder } from "./pfn-runs.js";

/** A real process's memfd as the bridge reaches it (the server's own open of /proc/PID/fd/N). */
export interface ForeignFile {
  /** Bytes from off (short at EOF), or -errno. */
  read(off: number, len: number): Uint8Array | number;
  /** Bytes written, or -errno. */
  write(off: number, bytes: Uint8Array): number;
  size(): bigint;
  close(): void;
}

/**
 * A shmem file of a real process behind the exec bridge (a memfd, a tmpfs
 * file), for IOMMU_IOAS_MAP_FILE: its pages stay in the real file. A pinned
 * page is the frame of the shared page cache (ForeignPageCache) for this
 * file and offset, whose bytes are the file's (PhysMem.external): the
 * program's own MAP_SHARED mappings of the file reach the same frame, so
 * DMA, pins and the program see one page. When the last reference goes,
 * each frame no one else holds keeps a copy of its page and lives on while
 * pinned.
 */
export class ForeignMemFile extends MemFile implements CacheHolder {
  /** The pages this file holds in the shared cache: page offset -> pfn. */
  private readonly foreignCache = new Map<number, number>();

  /** `key` names the file as /proc/PID/maps does ("MAJ:MIN INODE"). */
  constructor(
    pages: PageTracker,
    name: string,
    private readonly file: ForeignFile,
    private readonly shared: ForeignPageCache,
    readonly key: string,
  ) {
    super(pages, name, 0);
    this.size = file.size();
  }

  override pinPages(pgoff: number, n: number, _write: boolean, site = "memfd_pin_folios"): PfnRuns {
    this.size = this.file.size();
    if (!Number.isInteger(pgoff) || !Number.isInteger(n) || pgoff < 0 || n < 0) {
      return this.foreignErr(EINVAL, "pin: bad range");
    }
    if (n === 0) return emptyRuns();
    if (pgoff + n > this.nrPages) return this.foreignErr(EINVAL, "pin: range extends past EOF");
    if (this.pages.faults.hit(site)) return this.foreignErr(ENOMEM, `pin: injected failure at ${site}`);
    const b = new RunBuilder();
    const fresh: number[] = [];
    for (let p = pgoff; p < pgoff + n; p++) {
      let pfn = this.foreignCache.get(p);
      if (pfn === undefined) {
        pfn = this.shared.take(this.key, p, this, p, "shmem_alloc_folio");
        if (pfn < 0) {
          this.pages.unpinRuns(b.peek());
          for (const q of fresh) this.dropPage(q, false);
          return this.foreignErr(ENOMEM, `pin: cannot allocate page ${p} of memfd ${this.name}`);
        }
        this.foreignCache.set(p, pfn);
        fresh.push(p);
      }
      this.pages.pinRange(pfn, 1);
      b.push(pfn, 1);
    }
    return b.finish();
  }

  override pfnAt(pgoff: number): number {
    return this.foreignCache.get(pgoff) ?? -1;
  }

  override read(off: bigint, len: number): Uint8Array {
    if (off < 0n) return this.foreignErr(EINVAL, "read: negative offset");
    const r = this.file.read(Number(off), len);
    if (typeof r === "number") this.foreignErr(-r, `read: the process's file ${this.name} refused (pread)`);
    return r;
  }

  override write(off: bigint, bytes: Uint8Array): number {
    if (off < 0n) return this.foreignErr(EINVAL, "write: negative offset");
    const w = this.file.write(Number(off), bytes);
    if (w < 0) this.foreignErr(-w, `write: the process's file ${this.name} refused (pwrite)`);
    return w;
  }

  override put(): void {
    if (this.refCount === 1) {
      for (const p of [...this.foreignCache.keys()]) this.dropPage(p, true);
      this.file.close();
    }
    super.put();
  }

  private dropPage(p: number, keep: boolean): void {
    if (!this.foreignCache.delete(p)) return;
    this.shared.release(this.key, p, this, p, keep);
  }

  /** The shared page cache reads page p through this file (the server's own open of it; CacheHolder). */
  holderRead(p: number, off: number, len: number): Uint8Array | number {
    return this.file.read(p * PAGE + off, len);
  }

  holderWrite(p: number, off: number, bytes: Uint8Array): void {
    this.file.write(p * PAGE + off, bytes);
  }

  private foreignErr(errno: number, reason: string): never {
    fail(errno, reason);
  }
}
