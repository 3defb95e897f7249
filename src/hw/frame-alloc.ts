import type { FaultInject } from "./fault-inject.js";
import type { PhysMem } from "./phys-mem.js";
import { Prng } from "./prng.js";

/**
 * The machine's page allocator: 4 KiB frames, and contiguous 2 MiB / 1 GiB
 * runs for hugetlb. Memory is managed in 2 MiB blocks; a block is free,
 * split into 4 KiB frames, one huge page, or part of a 1 GiB page. The
 * choice of block and of frame inside it comes from the seeded PRNG, so
 * physical addresses look like a real machine's (scattered) and repeat
 * exactly for the same seed and the same calls.
 */
const FRAMES_PER_BLOCK = 512;
const BLOCKS_PER_GIG = 512;

// state 0: not RAM (hole or reserved)
const B_FREE = 1;
const B_SPLIT = 2;
const B_HUGE = 3;
const B_GIG = 4;

export interface FrameCounters {
  /** 4 KiB frames in use (including those inside huge pages). */
  usedFrames: number;
  freeFrames: number;
  /** Single 4 KiB allocations live. */
  frames4k: number;
  huge2m: number;
  huge1g: number;
}

/**
 * prng.below(n), the same value and the same draws, on int32 arithmetic: a
 * uint32 % n is a float modulo (a libm call) in V8, so the draw is reduced
 * in halves: x mod n = (2 * ((x >>> 1) mod n) + (x & 1)) mod n, exact for
 * n <= 2^30 (every intermediate stays below 2^31).
 */
export function prngBelow(prng: Prng, n: number): number {
  if (n <= 1 || n > 0x40000000) return prng.below(n);
  const x = prng.next();
  return ((((x >>> 1) % n) * 2 + (x & 1)) | 0) % n;
}

export class FrameAllocator {
  private readonly nBlocks: number;
  private readonly state: Uint8Array;
  private readonly freeInBlock: Uint16Array;
  private readonly bitmap: Uint32Array; // 1 = frame used, 16 words per block
  /** Free whole blocks, as a set with O(1) random pick and removal. */
  private readonly freeList: Int32Array;
  private readonly freePos: Int32Array;
  private nFree = 0;
  /** Split blocks that still have free frames. */
  private readonly partList: Int32Array;
  private readonly partPos: Int32Array;
  private nPart = 0;
  private readonly prng: Prng;
  private c = { frames4k: 0, huge2m: 0, huge1g: 0, usedFrames: 0, totalFrames: 0 };

  constructor(
    private readonly mem: PhysMem,
    seed: number,
    private readonly faults: FaultInject,
    /** Blocks at the bottom kept for "firmware" (so PA 0 is never handed out). */
    reservedLowBlocks = 1,
  ) {
    this.prng = new Prng(seed);
    this.nBlocks = Math.ceil(mem.nrFrames / FRAMES_PER_BLOCK);
    this.state = new Uint8Array(this.nBlocks);
    this.freeInBlock = new Uint16Array(this.nBlocks);
    this.bitmap = new Uint32Array(this.nBlocks * 16);
    this.freeList = new Int32Array(this.nBlocks);
    this.freePos = new Int32Array(this.nBlocks).fill(-1);
    this.partList = new Int32Array(this.nBlocks);
    this.partPos = new Int32Array(this.nBlocks).fill(-1);
    for (const [s, e] of mem.ramRanges) {
      const b0 = Math.ceil(s / FRAMES_PER_BLOCK);
      const b1 = Math.floor(e / FRAMES_PER_BLOCK);
      for (let b = Math.max(b0, reservedLowBlocks); b < b1; b++) {
        this.state[b] = B_FREE;
        this.pushFree(b);
        this.c.totalFrames += FRAMES_PER_BLOCK;
      }
    }
  }

  counters(): FrameCounters {
    return {
      usedFrames: this.c.usedFrames,
      freeFrames: this.c.totalFrames - this.c.usedFrames,
      frames4k: this.c.frames4k,
      huge2m: this.c.huge2m,
      huge1g: this.c.huge1g,
    };
  }

  /** A zeroed 4 KiB frame's pfn, or -1 when memory is exhausted or a fault is injected. */
  alloc4k(site = "alloc_page"): number {
    if (this.faults.hit(site)) return -1;
    let b: number;
    if (this.nPart > 0) {
      // keep filling partial blocks first, like a real buddy allocator's locality
      b = this.partList[this.nPart - 1];
    } else {
      if (this.nFree === 0) return -1;
      b = this.freeList[this.below(this.nFree)];
      this.removeFree(b);
      this.state[b] = B_SPLIT;
      this.freeInBlock[b] = FRAMES_PER_BLOCK;
      this.pushPart(b);
    }
    const base = b * 16;
    let i = this.below(FRAMES_PER_BLOCK);
    for (;;) {
      const w = this.bitmap[base + (i >>> 5)];
      if (((w >>> (i & 31)) & 1) === 0) break;
      i = (i + 1) & (FRAMES_PER_BLOCK - 1);
    }
    this.bitmap[base + (i >>> 5)] |= 1 << (i & 31);
    if (--this.freeInBlock[b] === 0) this.removePart(b);
    this.c.frames4k++;
    this.c.usedFrames++;
    const pfn = b * FRAMES_PER_BLOCK + i;
    this.mem.zero(pfn);
    return pfn;
  }

  free4k(pfn: number): void {
    const b = Math.floor(pfn / FRAMES_PER_BLOCK);
    const i = pfn - b * FRAMES_PER_BLOCK;
    const wi = b * 16 + (i >>> 5);
    const bit = 1 << (i & 31);
    if (this.state[b] !== B_SPLIT || (this.bitmap[wi] & bit) === 0) {
      throw new Error(`free4k: pfn ${pfn.toString(16)} is not an allocated 4 KiB frame`);
    }
    this.bitmap[wi] &= ~bit;
    this.mem.discard(pfn);
    this.c.frames4k--;
    this.c.usedFrames--;
    if (this.freeInBlock[b]++ === 0) this.pushPart(b);
    if (this.freeInBlock[b] === FRAMES_PER_BLOCK) {
      this.removePart(b);
      this.state[b] = B_FREE;
      this.pushFree(b);
    }
  }

  /** First pfn of a zeroed, 2 MiB-aligned run of 512 frames, or -1. */
  alloc2m(site = "alloc_hugepage_2m"): number {
    if (this.faults.hit(site)) return -1;
    if (this.nFree === 0) return -1;
    const b = this.freeList[this.below(this.nFree)];
    this.removeFree(b);
    this.state[b] = B_HUGE;
    this.c.huge2m++;
    this.c.usedFrames += FRAMES_PER_BLOCK;
    return b * FRAMES_PER_BLOCK;
  }

  free2m(pfn: number): void {
    const b = pfn / FRAMES_PER_BLOCK;
    if (!Number.isInteger(b) || this.state[b] !== B_HUGE) {
      throw new Error(`free2m: pfn ${pfn.toString(16)} is not a 2 MiB page`);
    }
    this.discardRange(pfn, FRAMES_PER_BLOCK);
    this.state[b] = B_FREE;
    this.pushFree(b);
    this.c.huge2m--;
    this.c.usedFrames -= FRAMES_PER_BLOCK;
  }

  /** First pfn of a zeroed, 1 GiB-aligned run, or -1 when no whole free gigabyte exists. */
  alloc1g(site = "alloc_hugepage_1g"): number {
    if (this.faults.hit(site)) return -1;
    const gigs = Math.floor(this.nBlocks / BLOCKS_PER_GIG);
    const candidates: number[] = [];
    for (let g = 0; g < gigs; g++) {
      let ok = true;
      for (let b = g * BLOCKS_PER_GIG; b < (g + 1) * BLOCKS_PER_GIG; b++) {
        if (this.state[b] !== B_FREE) {
          ok = false;
          break;
        }
      }
      if (ok) candidates.push(g);
    }
    if (candidates.length === 0) return -1;
    const g = candidates[this.prng.below(candidates.length)];
    for (let b = g * BLOCKS_PER_GIG; b < (g + 1) * BLOCKS_PER_GIG; b++) {
      this.removeFree(b);
      this.state[b] = B_GIG;
    }
    this.c.huge1g++;
    this.c.usedFrames += FRAMES_PER_BLOCK * BLOCKS_PER_GIG;
    return g * BLOCKS_PER_GIG * FRAMES_PER_BLOCK;
  }

  free1g(pfn: number): void {
    const b0 = pfn / FRAMES_PER_BLOCK;
    if (!Number.isInteger(b0 / BLOCKS_PER_GIG) || this.state[b0] !== B_GIG) {
      throw new Error(`free1g: pfn ${pfn.toString(16)} is not a 1 GiB page`);
    }
    this.discardRange(pfn, FRAMES_PER_BLOCK * BLOCKS_PER_GIG);
    for (let b = b0; b < b0 + BLOCKS_PER_GIG; b++) {
      this.state[b] = B_FREE;
      this.pushFree(b);
    }
    this.c.huge1g--;
    this.c.usedFrames -= FRAMES_PER_BLOCK * BLOCKS_PER_GIG;
  }

  /** True when pfn is inside memory the allocator handed out. */
  isAllocated(pfn: number): boolean {
    const b = Math.floor(pfn / FRAMES_PER_BLOCK);
    const s = this.state[b];
    if (s === B_HUGE || s === B_GIG) return true;
    if (s !== B_SPLIT) return false;
    const i = pfn - b * FRAMES_PER_BLOCK;
    return ((this.bitmap[b * 16 + (i >>> 5)] >>> (i & 31)) & 1) === 1;
  }

  private discardRange(pfn: number, n: number): void {
    for (let i = 0; i < n; i++) if (this.mem.isResident(pfn + i)) this.mem.discard(pfn + i);
  }

  private below(n: number): number {
    return prngBelow(this.prng, n);
  }

  private pushFree(b: number): void {
    this.freePos[b] = this.nFree;
    this.freeList[this.nFree++] = b;
  }
  private removeFree(b: number): void {
    const p = this.freePos[b];
    const last = this.freeList[--this.nFree];
    this.freeList[p] = last;
    this.freePos[last] = p;
    this.freePos[b] = -1;
  }
  private pushPart(b: number): void {
    this.partPos[b] = this.nPart;
    this.partList[this.nPart++] = b;
  }
  private removePart(b: number): void {
    const p = this.partPos[b];
    if (p < 0) return;
    const last = this.partList[--this.nPart];
    this.partList[p] = last;
    this.partPos[last] = p;
    this.partPos[b] = -1;
  }
}
