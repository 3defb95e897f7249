import type { DmaLog } from "./dma-log.js";
import type { DmaSanitizer, DmaSeg } from "./dma-sanitizer.js";
import { PAGE_SIZE, type PhysMem } from "./phys-mem.js";

export type { DmaSeg } from "./dma-sanitizer.js";

/** A DMA address range translated: physical pieces, or the first address that faulted. */
export type DmaTranslation = { ok: true; segments: DmaSeg[] } | { ok: false; addr: bigint; reason: string };

/**
 * What a device's DMA goes through when it sits behind an IOMMU: the
 * iommu layer's IommuDevice implements it by walking the attached domain's
 * page-table bytes (a blocked or absent domain faults everything).
 */
export interface DmaTranslator {
  dmaTranslate(iova: bigint, len: number, write: boolean): DmaTranslation;
}

/** Where a DMA engine runs: memory, the DMA log, the sanitizer. */
export interface DmaEnv {
  readonly phys: PhysMem;
  readonly dmaLog: DmaLog;
  readonly sanitizer: DmaSanitizer;
}

/** The parts of a function its DMA engine consults. */
export interface DmaMaster {
  readonly bdf: string;
  /** The IOMMU in front of the function; null when there is none (addresses are physical). */
  readonly iommu: DmaTranslator | null;
  /** PCI_COMMAND bus-master enable: without it the function cannot issue memory requests. */
  busMaster(): boolean;
}

export type DmaReadResult = { ok: true; bytes: Uint8Array } | { ok: false; addr: bigint; reason: string };
export type DmaWriteResult = { ok: true } | { ok: false; addr: bigint; reason: string };

const U64 = (1n << 64n) - 1n;

/** What an engine read during a batch: the physical pieces and their bytes. */
interface BatchRead {
  segs: readonly DmaSeg[];
  bytes: Uint8Array;
}

/** Reads a batch remembers at most (a descriptor and a source are two). */
const BATCH_READS = 4;

/**
 * A PCI function's DMA engine. Every DMA is translated (IOMMU page walk or
 * identity), checked by the sanitizer and logged once in the DMA log.
 * Devices that must translate a whole job before moving a byte use
 * `translate` then `readSegs`/`writeSegs`.
 */
export class DmaEngine {
  /** Inside a batch (beginBatch .. endBatch): what was read, newest last; null outside one. */
  private batch: BatchRead[] | null = null;
  /** The batch's last write, not yet in memory (a later write of exactly the same pieces replaces it). */
  private pending: BatchRead | null = null;
  /** Reads a batch answered from what it had read (tests, inspect). */
  batchHits = 0;
  /** Writes a batch dropped because a later write of the same pieces replaced them whole. */
  batchCoalesced = 0;

  constructor(
    private readonly fn: DmaMaster,
    private readonly env: DmaEnv,
  ) {}

  /** Translate [addr, addr+len) for one direction; no memory is touched and nothing is logged. */
  translate(addr: bigint, len: number, write: boolean): DmaTranslation {
    if (!this.fn.busMaster()) {
      return { ok: false, addr: addr, reason: "bus mastering is disabled (PCI_COMMAND bit 2 clear)" };
    }
    if (len === 0) return { ok: true, segments: [] };
    if (addr < 0n || addr + BigInt(len) - 1n > U64) {
      return { ok: false, addr: addr, reason: "DMA range wraps past 2^64" };
    }
    if (this.fn.iommu !== null) return this.fn.iommu.dmaTranslate(addr, len, write);
    return this.physical(addr, len);
  }

  /** DMA read of `len` bytes at `addr`: translate, check, copy, log. */
  read(addr: bigint, len: number): DmaReadResult {
    const t = this.translate(addr, len, false);
    if (!t.ok) {
      this.logFault("read", addr, len, t.reason, this.masterFinding());
      return t;
    }
    return { ok: true, bytes: this.readSegs(addr, t.segments, len) };
  }

  /** DMA write of `bytes` at `addr`: translate, check, copy, log. */
  write(addr: bigint, bytes: Uint8Array): DmaWriteResult {
    const t = this.translate(addr, bytes.length, true);
    if (!t.ok) {
      this.logFault("write", addr, bytes.length, t.reason, this.masterFinding());
      return t;
    }
    this.writeSegs(addr, t.segments, bytes);
    return { ok: true };
  }

  /**
   * A batch of DMAs that happen at one instant (a doorbell that runs a
   * whole descriptor chain before the access returns): a read of exactly
   * the physical pieces read before in the batch, which no write of the
   * batch has touched since, gives the bytes read then without reading
   * memory again. Nothing else writes memory during the access (the
   * program's thread waits for it), so the bytes are the same; where the
   * memory is a real process's pages each read would be a pread of
   * /proc/PID/mem (65535 descriptor fetches and source reads in a storm).
   * Likewise a write waits until the next write, read from memory,
   * interrupt (PciDevice.raiseIrq: an MSI does not pass earlier posted
   * writes) or the end of the batch, and a write of exactly the same pieces
   * replaces it whole (the storm's 65535 copies to one destination are one
   * store). Every DMA is still translated, sanitized and logged when it
   * happens.
   */
  beginBatch(): void {
    this.flushBatch();
    this.batch = [];
  }

  endBatch(): void {
    this.flushBatch();
    this.batch = null;
  }

  /** Put the batch's waiting write in memory. */
  flushBatch(): void {
    const w = this.pending;
    if (w === null) return;
    this.pending = null;
    let done = 0;
    for (const s of w.segs) {
      this.env.phys.write(s.pa, w.bytes.subarray(done, done + s.len));
      done += s.len;
    }
  }

  /** Read through an earlier translation (logged and sanitized as one DMA at `addr`). */
  readSegs(addr: bigint, segs: readonly DmaSeg[], len: number): Uint8Array {
    const hit = this.batch === null ? undefined : this.batchHit(segs);
    let out: Uint8Array;
    if (hit !== undefined) {
      this.batchHits++;
      out = hit.slice();
    } else {
      this.flushBatch();
      out = new Uint8Array(len);
      let done = 0;
      for (const s of segs) {
        out.set(this.env.phys.read(s.pa, s.len), done);
        done += s.len;
      }
      const b = this.batch;
      if (b !== null) {
        if (b.length === BATCH_READS) b.shift();
        b.push({ segs: segs.map((x) => ({ pa: x.pa, len: x.len })), bytes: out.slice() });
      }
    }
    this.log("read", addr, len, this.env.sanitizer.check(segs));
    return out;
  }

  /** Write through an earlier translation (logged and sanitized as one DMA at `addr`). */
  writeSegs(addr: bigint, segs: readonly DmaSeg[], bytes: Uint8Array): void {
    const finding = this.env.sanitizer.check(segs);
    if (this.batch !== null) {
      if (this.batch.length > 0) this.batchForget(segs);
      const w = this.pending;
      if (w !== null && sameSegs(w.segs, segs)) {
        // the same pieces written whole again: the waiting bytes are replaced in place
        this.batchCoalesced++;
        w.bytes.set(bytes);
      } else {
        this.flushBatch();
        this.pending = { segs: segs.map((x) => ({ pa: x.pa, len: x.len })), bytes: bytes.slice() };
      }
      this.log("write", addr, bytes.length, finding);
      return;
    }
    let done = 0;
    for (const s of segs) {
      this.env.phys.write(s.pa, bytes.subarray(done, done + s.len));
      done += s.len;
    }
    this.log("write", addr, bytes.length, finding);
  }

  /** Log a DMA that did not happen (translation fault, bus master off). */
  logFault(op: "read" | "write", addr: bigint, len: number, reason: string, finding?: string): void {
    this.env.dmaLog.push({
      device: this.fn.bdf,
      op,
      addr,
      len,
      result: "fault",
      fault: reason,
      ...(finding !== undefined ? { finding } : {}),
    });
  }

  /** The sanitizer's word on a DMA attempted without bus mastering (a driver bug worth naming). */
  masterFinding(): string | undefined {
    return this.fn.busMaster()
      ? undefined
      : "DMA attempted with bus mastering disabled: set PCI_COMMAND_MASTER (config 0x04 bit 2) first";
  }

  private log(op: "read" | "write", addr: bigint, len: number, finding: string | undefined): void {
    this.env.dmaLog.push({
      device: this.fn.bdf,
      op,
      addr,
      len,
      result: "ok",
      ...(finding !== undefined ? { finding } : {}),
    });
  }

  /** The batch's read of exactly these pieces, if any. */
  private batchHit(segs: readonly DmaSeg[]): Uint8Array | undefined {
    const b = this.batch!;
    for (let i = b.length - 1; i >= 0; i--) if (sameSegs(b[i].segs, segs)) return b[i].bytes;
    return undefined;
  }

  /** A write of the batch: reads of memory it overlaps are forgotten. */
  private batchForget(segs: readonly DmaSeg[]): void {
    this.batch = this.batch!.filter(
      (r) => !r.segs.some((x) => segs.some((w) => w.pa < x.pa + x.len && x.pa < w.pa + w.len)),
    );
  }

  /** No IOMMU: the bus address is the physical address; only RAM answers. */
  private physical(addr: bigint, len: number): DmaTranslation {
    const start = Number(addr);
    const end = start + len;
    if (!Number.isSafeInteger(end)) {
      return { ok: false, addr: addr, reason: "physical address beyond the machine's address space" };
    }
    const phys = this.env.phys;
    for (let pfn = Math.floor(start / PAGE_SIZE); pfn * PAGE_SIZE < end; pfn++) {
      if (pfn >= phys.nrFrames || !phys.isRam(pfn)) {
        const bad = Math.max(start, pfn * PAGE_SIZE);
        return {
          ok: false,
          addr: BigInt(bad),
          reason: `no RAM at physical address 0x${bad.toString(16)} (master abort)`,
        };
      }
    }
    return { ok: true, segments: [{ pa: start, len }] };
  }
}

function sameSegs(a: readonly DmaSeg[], b: readonly DmaSeg[]): boolean {
  if (a.length !== b.length) return false;
  for (let j = 0; j < a.length; j++) if (a[j].pa !== b[j].pa || a[j].len !== b[j].len) return false;
  return true;
}
