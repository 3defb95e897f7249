import { PAGE_SIZE } from "./phys-mem.js";

const CHUNK = 32768;

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
  /**
   * Frames whose pin the memory manager reported dropped: a sparse bitmap,
   * 32768 frames (128 MiB) a chunk, so unpinning 64 GiB stays cheap.
   */
  private readonly unpinned = new Map<number, Uint32Array>();

  /** The memory manager reports unpins so a later DMA there is named a use after unmap. */
  noteUnpin(pfn: number, n: number): void {
    let p = pfn;
    const end = pfn + n;
    while (p < end) {
      const c = Math.floor(p / CHUNK);
      let words = this.unpinned.get(c);
      if (words === undefined) {
        words = new Uint32Array(CHUNK / 32);
        this.unpinned.set(c, words);
      }
      const stop = Math.min(end, (c + 1) * CHUNK);
      let off = p - c * CHUNK;
      const last = stop - c * CHUNK;
      while (off < last) {
        if ((off & 31) === 0 && off + 32 <= last) {
          words[off >>> 5] = 0xffffffff;
          off += 32;
        } else {
          words[off >>> 5] |= 1 << (off & 31);
          off++;
        }
      }
      p = stop;
    }
  }

  private wasUnpinned(pfn: number): boolean {
    const words = this.unpinned.get(Math.floor(pfn / CHUNK));
    if (words === undefined) return false;
    const off = pfn % CHUNK;
    return (words[off >>> 5] & (1 << (off & 31))) !== 0;
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
          continue;
        }
        if (finding !== undefined) continue;
        const where = `frame 0x${pfn.toString(16)} (pa 0x${(pfn * PAGE_SIZE).toString(16)})`;
        finding =
          this.seenPinned.has(pfn) || this.wasUnpinned(pfn)
            ? `use after unmap: ${where} was pinned for DMA earlier and no pin holds it now`
            : `stray address: frame not pinned: ${where} is held by no pin`;
      }
    }
    return finding;
  }
}
