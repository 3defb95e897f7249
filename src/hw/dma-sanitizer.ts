import { PAGE_SIZE } from "./phys-mem.js";

/** One physically contiguous piece of a translated DMA. */
export interface DmaSeg {
  /** Physical address (a number below 2^53). */
  pa: number;
  len: number;
}

/** What the sanitizer asks the memory manager: how many long-term pins hold a frame now. */
export interface PinOracle {
  pinCount(pfn: number): number;
}

/**
 * The DMA sanitizer: a DMA may only touch frames some long-term pin holds
 * (pin_user_pages is what makes a page safe to hand to a device). It checks
 * every DMA the machine performs, whether an IOMMU allowed it or the device
 * has no IOMMU at all, and names what it saw. It changes nothing.
 */
export class DmaSanitizer {
  oracle: PinOracle | null = null;
  /** Frames seen pinned under a DMA before: touching one later without a pin is a use after unmap. */
  private readonly seenPinned = new Set<number>();
  /** Frames whose pin the memory manager reported dropped (if it reports; see noteUnpin). */
  private readonly unpinned = new Set<number>();

  /** The memory manager may report unpins so a later stray DMA is named a use after unmap. */
  noteUnpin(pfn: number, n: number): void {
    for (let i = 0; i < n; i++) this.unpinned.add(pfn + i);
  }

  /** A finding for a DMA over `segs`, or undefined when every frame is pinned. */
  check(segs: readonly DmaSeg[]): string | undefined {
    const oracle = this.oracle;
    if (oracle === null) return undefined;
    let finding: string | undefined;
    for (const s of segs) {
      const first = Math.floor(s.pa / PAGE_SIZE);
      const last = Math.floor((s.pa + s.len - 1) / PAGE_SIZE);
      for (let pfn = first; pfn <= last; pfn++) {
        if (oracle.pinCount(pfn) > 0) {
          this.seenPinned.add(pfn);
          this.unpinned.delete(pfn);
          continue;
        }
        if (finding !== undefined) continue;
        const where = `frame 0x${pfn.toString(16)} (pa 0x${(pfn * PAGE_SIZE).toString(16)})`;
        finding =
          this.seenPinned.has(pfn) || this.unpinned.has(pfn)
            ? `use after unmap: ${where} was pinned for DMA earlier and no pin holds it now`
            : `stray address: frame not pinned: ${where} is held by no pin`;
      }
    }
    return finding;
  }
}
