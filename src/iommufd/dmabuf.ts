import { KFile } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import { type PfnRuns, RunBuilder } from "../mm/pfn-runs.js";
import { EINVAL, ENODEV, ENOMEM, fail } from "../uapi/errno.js";
import { PAGE_SIZE as PAGE } from "../uapi/linux.js";
import type { PinSource } from "./pin-source.js";

export const DMABUF_KIND = "dmabuf";
/** iommufd_test_dmabuf_get(): at most 512 pages. */
export const TEST_DMABUF_MAX_PAGES = 512;

/** Someone holding a dma-buf attachment: told when the exporter revokes (dma_buf_move_notify). */
export interface DmaBufImporter {
  revoke(): void;
}

/**
 * A dma-buf exported by the selftest (iommufd_test_dmabuf_get): zeroed
 * kernel pages behind an fd. iommufd imports it through IOAS_MAP_FILE; the
 * exporter can revoke it, which makes every importer drop its mappings.
 */
export class DmaBuf {
  revoked = false;
  refs = 1;
  readonly importers = new Set<DmaBufImporter>();
  constructor(
    private readonly k: KernelCtx,
    readonly pfns: number[],
  ) {}

  get length(): bigint {
    return BigInt(this.pfns.length * PAGE);
  }

  get(): void {
    this.refs++;
  }

  /** The last reference (the fd and every importer) frees the pages. */
  put(): void {
    if (--this.refs > 0) return;
    for (const pfn of this.pfns) {
      this.k.phys.discard(pfn);
      this.k.frames.free4k(pfn);
    }
    this.pfns.length = 0;
  }

  /**
   * iommufd_test_dmabuf_revoke(): set or clear the revoked state and
   * notify importers (a move notification means revoke to iommufd, so
   * existing imports stay revoked either way; only new ones see `revoked`).
   */
  setRevoked(revoked: boolean): void {
    this.revoked = revoked;
    for (const imp of [...this.importers]) imp.revoke();
  }
}

/** iommufd_test_dmabuf_get(): `length` rounded up to pages, 1..512 pages, else EINVAL. */
export function testDmabufGet(k: KernelCtx, length: number): KFile {
  const n = Math.ceil(length / PAGE);
  if (n === 0 || n > TEST_DMABUF_MAX_PAGES) fail(EINVAL, `dma-buf length ${length} is 0 or over 512 pages`);
  const pfns: number[] = [];
  for (let i = 0; i < n; i++) {
    const pfn = k.frames.alloc4k("iommufd_test_dmabuf_get");
    if (pfn < 0) {
      for (const p of pfns) k.frames.free4k(p);
      fail(ENOMEM, "cannot allocate the dma-buf's pages");
    }
    pfns.push(pfn);
  }
  const buf = new DmaBuf(k, pfns);
  return new KFile({ kind: DMABUF_KIND, release: () => buf.put() }, buf, "anon_inode:dmabuf", 2);
}

/**
 * What iommufd's pages object pins from a dma-buf: its pages as they are
 * (nothing is pinned or charged; the exporter owns them), refused with
 * ENODEV once revoked.
 */
export function dmabufPinSource(buf: DmaBuf, firstPage: number): PinSource {
  return {
    kind: "dmabuf",
    pin: (index, n) => {
      if (buf.revoked) fail(ENODEV, "the dma-buf was revoked");
      const b = new RunBuilder(1);
      for (let i = 0; i < n; i++) b.push(buf.pfns[firstPage + index + i], 1);
      return b.finish();
    },
    unpin: (_runs: PfnRuns) => {},
    describe: () => `dma-buf of ${buf.pfns.length} pages from page ${firstPage}`,
  };
}
