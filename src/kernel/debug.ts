import type { DmaEvent } from "../hw/dma-log.js";
import { iommufdDebugHwpt, iommufdDebugIoas } from "../iommufd/index.js";
import type { VmaInfo } from "../mm/mm-struct.js";
import type { PageTracker } from "../mm/page-tracker.js";
import { EBADF, fail } from "../uapi/errno.js";
import { debugVfioContainers, type VfioContainerDebugInfo } from "../vfio/debug-view.js";

export type { SpaprTceDebugInfo, Type1DebugInfo, VfioContainerDebugInfo } from "../vfio/debug-view.js";

import type { HwptDebugInfo, IoasDebugInfo } from "./kctx.js";
import type { Machine } from "./machine.js";
import type { Process } from "./process.js";
import type { TraceEvent } from "./trace.js";

/**
 * m.debug: what a kernel developer would read with a debugger, for tests
 * and tools. It never changes the model's state (failNth aside, which arms
 * fault injection).
 */
/** What the machine's subsystems report to m.debug: leak counters by name, invariant violations. */
export interface DebugSources {
  counters(): Record<string, number>;
  invariants(changedOnly: boolean): string[];
}

export class Debug {
  constructor(
    private readonly m: Machine,
    private readonly pages: PageTracker,
    private readonly sources: DebugSources,
  ) {}

  /** Raw simulated physical memory. */
  readPhys(pa: bigint, len: number): Uint8Array {
    if (pa < 0n || len < 0 || pa + BigInt(len) > this.m.phys.limitBytes) {
      throw new RangeError(`readPhys: [0x${pa.toString(16)}, +${len}) is outside physical memory`);
    }
    return this.m.phys.read(Number(pa), len);
  }

  /** The page table behind an HWPT id of an iommufd fd of process p. */
  hwpt(p: Process, iommufdFd: number, hwptId: number): HwptDebugInfo {
    const f = p.task.fds[iommufdFd];
    if (f === undefined) fail(EBADF, `fd ${iommufdFd} is not open`);
    if (this.m.iommufd === undefined) throw new Error("no iommufd in this machine");
    return iommufdDebugHwpt(p.task, iommufdFd, hwptId);
  }

  /** An IOAS of an iommufd fd of process p: areas (with their pinned pfns), reserved and allowed ranges. */
  ioas(p: Process, iommufdFd: number, ioasId: number): IoasDebugInfo {
    const f = p.task.fds[iommufdFd];
    if (f === undefined) fail(EBADF, `fd ${iommufdFd} is not open`);
    if (this.m.iommufd === undefined) throw new Error("no iommufd in this machine");
    return iommufdDebugIoas(p.task, iommufdFd, ioasId);
  }

  /**
   * The legacy VFIO containers (/dev/vfio/vfio) open in process p, by fd:
   * the IOMMU driver set, the groups, and the backend's state (type1: its
   * DMA mappings, IOVA ranges and each domain's page table; sPAPR: its DMA
   * windows with their TCE tables, the TCEs, the pre-registered memory).
   */
  vfioContainers(p: Process): VfioContainerDebugInfo[] {
    return p.task.exited ? [] : debugVfioContainers(p.task);
  }

  /** Pinned pages and hugetlb folios machine-wide: pfn, pin count, folio order. */
  pinnedFrames(): { pfn: number; pins: number; order: number }[] {
    return this.pages.pinnedFrames();
  }

  /** A process's VMAs, like /proc/<pid>/maps (empty once it has exited). */
  vmas(p: Process): VmaInfo[] {
    return p.task.exited ? [] : p.task.mm.maps();
  }

  /** Leak counters: everything a process can hold, machine-wide. */
  counters(): Record<string, number> {
    const out = this.sources.counters();
    const fc = this.m.frames.counters();
    out.usedFrames = fc.usedFrames;
    out.residentFrames = this.m.phys.residentFrames;
    out.internalErrors = this.m.tracer.internalErrors.length;
    for (const k of ["pinnedPages", "objects", "ptFrames"]) out[k] ??= 0;
    return out;
  }

  dmaLog(): DmaEvent[] {
    return this.m.ctx.dmaLog.events.slice();
  }

  taint(): string[] {
    return this.m.klog.taint();
  }

  dmesg(): string[] {
    return this.m.klog.lines.slice();
  }

  /** Every syscall so far (when the machine was built with trace: true). */
  trace(): TraceEvent[] {
    return this.m.tracer.events.slice();
  }

  /** Every failed syscall so far (bounded), with the rule behind its errno. */
  failures(): TraceEvent[] {
    return this.m.tracer.failures.slice();
  }

  /** Unexpected exceptions caught at the syscall boundary (each is a model bug). */
  internalErrors(): string[] {
    return this.m.tracer.internalErrors.slice();
  }

  /** fail_nth: the nth allocation or pin point hit from now fails (0 disarms). */
  failNth(n: number): void {
    this.m.faults.arm(n);
    this.m.tracer.op({ pid: 0, call: "fail_nth", args: [n], ret: 0 });
  }

  /** The fail point that fired since failNth was armed, if any. */
  failNthFired(): string | undefined {
    return this.m.faults.fired;
  }

  /**
   * Run every subsystem's invariant checks; returns the violations (empty
   * when sound). `{ changedOnly: true }` skips reading back the page tables
   * of domains that saw no table write and no mapping change since they
   * last passed (the fuzzer checks so after every step, and in full at the
   * end of each sequence); everything else is checked either way.
   */
  checkInvariants(opts: { changedOnly?: boolean } = {}): string[] {
    const out = this.sources.invariants(opts.changedOnly ?? false);
    for (const e of this.m.tracer.internalErrors) out.push(`internal error: ${e.split("\n")[0]}`);
    return out;
  }
}
