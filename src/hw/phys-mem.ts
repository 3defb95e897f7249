import { PAGE_SHIFT, PAGE_SIZE } from "../uapi/linux.js";
import { PageIndex } from "./page-index.js";

/**
 * Simulated physical memory: sparse 4 KiB frames.
 *
 * A frame costs nothing until it is written; reading an untouched frame
 * gives zeros. Frames are held in chunks of 512 (2 MiB) indexed by
 * pfn >>> 9, so finding a frame is two array loads, which the page-table
 * engine relies on for speed. Frame data is a Uint32Array (host order is
 * little-endian on every machine we run on; checked at start-up) with a
 * Uint8Array view beside it.
 */
export { PAGE_SHIFT, PAGE_SIZE };

const CHUNK_SHIFT = 9;
const CHUNK_MASK = (1 << CHUNK_SHIFT) - 1;

const ZERO_FRAME = new Uint8Array(PAGE_SIZE);

/*
 * Host storage for frames. A fresh ArrayBuffer per frame costs 1-2 us (the
 * page-table engine materializes one per new table), so frames are cut from
 * 64 KiB slabs, and discarded frames are kept in a process-wide pool
 * (bounded) and zeroed when handed to the next frame of any PhysMem.
 * Nothing keeps a frame's arrays past its discard (the page-table engine
 * drops its cached table when it frees it).
 */
const SLAB_FRAMES = 16;
const POOL_MAX = 4096;
const pool32: Uint32Array[] = [];
const pool8: Uint8Array[] = [];
let slab: ArrayBuffer | null = null;
let slabNext = SLAB_FRAMES;

/** Zeroed storage for one frame: its words (its bytes go to `hostU8`). */
function hostFrame(): Uint32Array {
  const f = pool32.pop();
  if (f !== undefined) {
    hostU8 = pool8.pop()!;
    // zeroed here, not at release: the writes that follow then hit cache lines
    // the fill just brought in (a frame zeroed long before is cold again)
    f.fill(0);
    return f;
  }
  if (slabNext === SLAB_FRAMES) {
    slab = new ArrayBuffer(SLAB_FRAMES * PAGE_SIZE);
    slabNext = 0;
  }
  const off = slabNext++ * PAGE_SIZE;
  hostU8 = new Uint8Array(slab!, off, PAGE_SIZE);
  return new Uint32Array(slab!, off, PAGE_SIZE / 4);
}
let hostU8: Uint8Array = ZERO_FRAME;

function releaseFrame(f32: Uint32Array, f8: Uint8Array): void {
  if (pool32.length >= POOL_MAX) return;
  pool32.push(f32);
  pool8.push(f8);
}

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new Error("iommufd-sim needs a little-endian host");
}

/**
 * A frame whose bytes live outside the model: a page of a real process
 * behind the exec bridge (src/mm/foreign-mm.ts). Every DMA and access
 * read/write of the frame goes to it, so the process sees device writes at
 * once and the device reads what the process stored.
 */
export interface ExternalFrame {
  read(off: number, len: number): Uint8Array;
  write(off: number, bytes: Uint8Array): void;
}

/**
 * Where many frames' bytes live outside the model: a real process's address
 * space (src/mm/foreign-mm.ts). Each frame is a page of it, named by its
 * page number there, so a 1 GiB pin costs no object per page.
 */
export interface ExternalSource {
  /** `len` bytes at byte address `addr` of the source (zeros where it cannot be read). */
  readAt(addr: number, len: number): Uint8Array;
  writeAt(addr: number, bytes: Uint8Array): void;
}

/**
 * The frames backed outside the model, by pfn: either a frame object of
 * its own (`set`) or a page of a source (`setPage`).
 */
export class ExternalFrames {
  private readonly frames = new Map<number, ExternalFrame>();
  /** pfn -> source id, and pfn -> page number in that source. */
  private readonly srcOf = new PageIndex();
  private readonly pageOf = new PageIndex();
  private readonly sources: (ExternalSource | null)[] = [];
  private readonly users: number[] = [];
  private readonly ids = new Map<ExternalSource, number>();
  private readonly freeIds: number[] = [];

  /** Frames backed outside the model now. */
  get size(): number {
    return this.frames.size + this.srcOf.size;
  }

  has(pfn: number): boolean {
    return this.frames.has(pfn) || this.srcOf.has(pfn);
  }

  /** The frame's bytes are those of `frame`. */
  set(pfn: number, frame: ExternalFrame): void {
    this.delete(pfn);
    this.frames.set(pfn, frame);
  }

  /** The frame's bytes are page `page` of `src` (page * PAGE_SIZE is its address there). */
  setPage(pfn: number, src: ExternalSource, page: number): void {
    this.delete(pfn);
    let id = this.ids.get(src);
    if (id === undefined) {
      id = this.freeIds.pop() ?? this.sources.length;
      this.sources[id] = src;
      this.users[id] = 0;
      this.ids.set(src, id);
    }
    this.users[id]++;
    this.srcOf.set(pfn, id);
    this.pageOf.set(pfn, page);
  }

  /** The frame goes back to the model's own storage. */
  delete(pfn: number): void {
    if (this.frames.delete(pfn)) return;
    const id = this.srcOf.delete(pfn);
    if (id < 0) return;
    this.pageOf.delete(pfn);
    if (--this.users[id] === 0) {
      this.ids.delete(this.sources[id]!);
      this.sources[id] = null;
      this.freeIds.push(id);
    }
  }

  /** `len` bytes at `off` of an external frame, or undefined when the frame is the model's. */
  read(pfn: number, off: number, len: number): Uint8Array | undefined {
    const f = this.frames.size === 0 ? undefined : this.frames.get(pfn);
    if (f !== undefined) return f.read(off, len);
    const id = this.srcOf.get(pfn);
    if (id < 0) return undefined;
    return this.sources[id]!.readAt(this.pageOf.get(pfn) * PAGE_SIZE + off, len);
  }

  /** Write to an external frame; false when the frame is the model's. */
  write(pfn: number, off: number, bytes: Uint8Array): boolean {
    const f = this.frames.size === 0 ? undefined : this.frames.get(pfn);
    if (f !== undefined) {
      f.write(off, bytes);
      return true;
    }
    const id = this.srcOf.get(pfn);
    if (id < 0) return false;
    this.sources[id]!.writeAt(this.pageOf.get(pfn) * PAGE_SIZE + off, bytes);
    return true;
  }
}

export class PhysMem {
  /** Frames backed outside the model, by pfn (none unless the bridge pins real memory). */
  readonly external = new ExternalFrames();
  /** Frames of RAM; pfns at and past this are not memory. */
  readonly nrFrames: number;
  private readonly chunks32: (Uint32Array | undefined)[][] = [];
  private readonly chunks8: (Uint8Array | undefined)[][] = [];
  /** Frames holding data now (touched and not released). */
  residentFrames = 0;

  constructor(
    readonly limitBytes: bigint,
    /** pfn ranges that are RAM: [startPfn, endPfn) pairs. */
    readonly ramRanges: readonly (readonly [number, number])[],
  ) {
    this.nrFrames = Number(limitBytes >> BigInt(PAGE_SHIFT));
  }

  isRam(pfn: number): boolean {
    for (const [s, e] of this.ramRanges) if (pfn >= s && pfn < e) return true;
    return false;
  }

  /** The frame's words, materializing it zeroed if untouched (for writers). */
  frameU32(pfn: number): Uint32Array {
    const ci = pfn >>> CHUNK_SHIFT;
    let c = this.chunks32[ci];
    if (c === undefined) {
      c = this.chunks32[ci] = new Array(1 << CHUNK_SHIFT);
      this.chunks8[ci] = new Array(1 << CHUNK_SHIFT);
    }
    const i = pfn & CHUNK_MASK;
    let f = c[i];
    if (f === undefined) {
      f = c[i] = hostFrame();
      this.chunks8[ci][i] = hostU8;
      this.residentFrames++;
    }
    return f;
  }

  /** The frame's bytes, materializing it zeroed if untouched (for writers). */
  frameU8(pfn: number): Uint8Array {
    const ci = pfn >>> CHUNK_SHIFT;
    const c = this.chunks8[ci];
    const f = c?.[pfn & CHUNK_MASK];
    if (f !== undefined) return f;
    this.frameU32(pfn);
    return this.chunks8[ci][pfn & CHUNK_MASK]!;
  }

  /** The frame's bytes for reading: a shared zero frame if untouched (do not write to it). */
  peekU8(pfn: number): Uint8Array {
    return this.chunks8[pfn >>> CHUNK_SHIFT]?.[pfn & CHUNK_MASK] ?? ZERO_FRAME;
  }

  /** The frame's words, or undefined when untouched (reads as zero). */
  peekU32(pfn: number): Uint32Array | undefined {
    return this.chunks32[pfn >>> CHUNK_SHIFT]?.[pfn & CHUNK_MASK];
  }

  isResident(pfn: number): boolean {
    return this.chunks32[pfn >>> CHUNK_SHIFT]?.[pfn & CHUNK_MASK] !== undefined;
  }

  /** Forget a frame's data (it reads as zero again). Used when a frame is freed. */
  discard(pfn: number): void {
    const ci = pfn >>> CHUNK_SHIFT;
    const c = this.chunks32[ci];
    if (c === undefined) return;
    const i = pfn & CHUNK_MASK;
    const f = c[i];
    if (f !== undefined) {
      releaseFrame(f, this.chunks8[ci][i]!);
      c[i] = undefined;
      this.chunks8[ci][i] = undefined;
      this.residentFrames--;
    }
  }

  /** Copy `len` bytes from physical address `pa` (a number below 2^53). */
  read(pa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const cur = pa + done;
      const pfn = Math.floor(cur / PAGE_SIZE);
      const off = cur - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, len - done);
      const x = this.external.size === 0 ? undefined : this.external.read(pfn, off, n);
      if (x !== undefined) out.set(x, done);
      else out.set(this.peekU8(pfn).subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  /** Write bytes at physical address `pa`. Writing zeros to an untouched frame keeps it untouched. */
  write(pa: number, bytes: Uint8Array): void {
    let done = 0;
    const len = bytes.length;
    while (done < len) {
      const cur = pa + done;
      const pfn = Math.floor(cur / PAGE_SIZE);
      const off = cur - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, len - done);
      const src = bytes.subarray(done, done + n);
      if (this.external.size !== 0 && this.external.write(pfn, off, src)) {
        // the frame's bytes are outside the model
      } else if (this.isResident(pfn) || !isZero(src)) this.frameU8(pfn).set(src, off);
      done += n;
    }
  }

  /** Zero a frame (it reads as zero; its storage is dropped). */
  zero(pfn: number): void {
    this.discard(pfn);
  }

  /** Copy one whole frame's contents onto another. */
  copyFrame(dstPfn: number, srcPfn: number): void {
    if (!this.isResident(srcPfn)) {
      this.discard(dstPfn);
      return;
    }
    this.frameU8(dstPfn).set(this.peekU8(srcPfn));
  }
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
