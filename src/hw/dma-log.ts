/** One DMA as the machine saw it (m.debug.dmaLog()). */
export interface DmaEvent {
  device: string;
  op: "read" | "write";
  addr: bigint;
  len: number;
  result: "ok" | "fault";
  /** What the DMA sanitizer saw, when something is wrong. */
  finding?: string;
  /** Why the IOMMU faulted, when it did. */
  fault?: string;
}

/**
 * The last MAX DMAs. Old entries are dropped by moving a start index and
 * compacting once MAX have piled up (amortized O(1) a push: a storm of
 * 65535 IOAT copies logs 196605 DMAs), so readers see exactly the newest MAX.
 */
export class DmaLog {
  static readonly MAX = 100_000;
  private buf: DmaEvent[] = [];
  private start = 0;

  get events(): DmaEvent[] {
    if (this.start > 0) {
      this.buf = this.buf.slice(this.start);
      this.start = 0;
    }
    return this.buf;
  }

  push(e: DmaEvent): void {
    this.buf.push(e);
    if (this.buf.length - this.start > DmaLog.MAX) this.start++;
    if (this.start >= DmaLog.MAX) {
      this.buf = this.buf.slice(this.start);
      this.start = 0;
    }
  }
}
