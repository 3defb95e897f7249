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

export class DmaLog {
  readonly events: DmaEvent[] = [];
  static readonly MAX = 100_000;
  push(e: DmaEvent): void {
    this.events.push(e);
    if (this.events.length > DmaLog.MAX) this.events.shift();
  }
}
