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
 * The machine's DMA log: at least the last MAX events. Old ones are dropped
 * MAX at a time (a shift per event made a long run of DMA quadratic: an
 * IOAT memcpy storm logs ~200k events).
 */
export class DmaLog {
  readonly events: DmaEvent[] = [];
  static readonly MAX = 100_000;
  push(e: DmaEvent): void {
    this.events.push(e);
    if (this.events.length >= 2 * DmaLog.MAX) this.events.splice(0, this.events.length - DmaLog.MAX);
  }
}
