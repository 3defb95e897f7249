import type { DmaLog } from "../hw/dma-log.js";
import type { PinOracle } from "../hw/dma-sanitizer.js";
import type { IommuDomain } from "../iommu/domain.js";
import type { IommufdCtx } from "../iommufd/ctx.js";
import { IommufdIoas } from "../iommufd/ioas.js";
import type { IoptPages } from "../iommufd/pages.js";
import type { PageTracker, UserTable } from "../mm/index.js";
import { IOPT_PAGES_ACCOUNT_MM, IOPT_PAGES_ACCOUNT_USER } from "../mm/locked-vm.js";
import type { MmStruct } from "../mm/mm-struct.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import type { VfioIommuBackend } from "../vfio/container.js";
import type { KernelCtx } from "./kctx.js";
import type { Task } from "./task.js";

/** Counters that hold only what processes hold: zero once no process is left. */
const PER_PROCESS = [
  "pinnedPages",
  "objects",
  "areas",
  "iommufdContexts",
  "openFiles",
  "memFiles",
  "ownedFrames",
  "vfioContainers",
  "vfioDeviceFiles",
  "vfioDevicesOpen",
  "vfioType1PinnedPages",
];

export interface MachineView {
  ctx: KernelCtx;
  pages: PageTracker;
  users: UserTable;
  tasks(): Task[];
  counters(): Record<string, number>;
  /** Pages VFIO type1 containers pinned (counters().vfioType1PinnedPages, without the others). */
  vfioType1PinnedPages(): number;
  /** Frames the kernel held at boot besides page tables (usedFrames - ptFrames). */
  bootOtherFrames: number;
  /** Legacy containers' IOMMU backends (type1, sPAPR TCE). */
  vfioBackends(): VfioIommuBackend[];
  /** The live iommufd contexts (none without CONFIG_IOMMUFD). */
  iommufdContexts(): Iterable<IommufdCtx>;
  /** sPAPR pre-registered regions (each once). */
  vfioPreregions(): { runs: PfnRuns }[];
  /** Pages the mm's sPAPR pre-registered regions charged to its locked_vm. */
  vfioPreregCharged(mm: MmStruct): number;
  /** Live domains (paging domains user space filled are "unmanaged"). */
  domains(): IommuDomain[];
  /** What the DMA sanitizer asks about pins (must be the page tracker). */
  sanitizerOracle(): PinOracle | null;
  dmaLog: DmaLog;
  /** Is the function at this BDF behind an IOMMU (its DMA is translated)? */
  translated(bdf: string): boolean;
  /** DMA log entries already checked (the check looks at each entry once). */
  dmaChecked: { n: number };
}

/** Frames of one run checked one by one; larger runs are sampled (first, last and a stride). */
const RUN_CHECK_LIMIT = 4096;

/**
 * Checks across layers, run by m.debug.checkInvariants():
 * - every pinned frame is held by someone: the machine's pin total is what
 *   iommufd pages objects and VFIO type1 mappings hold, and each frame an
 *   iommufd pages object pins carries at least that pin;
 * - accounting equals pinning per RLIMIT mode: each mm's pinned_vm is what
 *   iommufd pinned for it, each user's locked_vm what it pinned in
 *   IOPT_PAGES_ACCOUNT_USER mode;
 * - once no process is left, nothing a process could hold remains and the
 *   kernel's frames are the page tables plus what it held at boot.
 */
export function checkMachineInvariants(v: MachineView): string[] {
  const out: string[] = [];
  const all = new Set<IoptPages>();
  for (const ictx of v.iommufdContexts()) {
    for (const o of ictx.objects.values()) {
      if (o instanceof IommufdIoas) for (const n of o.iopt.areas.all()) all.add(n.value.pages);
    }
  }
  let iommufdPins = 0;
  // Pins each frame must carry at least: iommufd pages objects, type1 mappings, sPAPR pre-registered memory.
  const expect = new Map<number, number>();
  const add = (pfn: number, n: number) => {
    for (let i = 0; i < n; i++) expect.set(pfn + i, (expect.get(pfn + i) ?? 0) + 1);
  };
  for (const p of all) {
    iommufdPins += p.npinned;
    p.forEachPinned(add);
  }
  const backends = v.vfioBackends();
  for (const b of backends) b.forEachPin?.(add);
  for (const r of v.vfioPreregions())
    for (let i = 0; i < r.runs.count; i++) add(r.runs.pfn[i], r.runs.len[i]);
  const total = v.pages.totalPinnedPages();
  // (one subsystem's counters per step; the whole set only once no process is left)
  const type1 = v.vfioType1PinnedPages();
  if (total !== iommufdPins + type1) {
    out.push(`${total} pinned pages, but iommufd holds ${iommufdPins} and VFIO containers ${type1}`);
  }
  let bad = 0;
  for (const [pfn, n] of expect) {
    if (v.pages.pinCount(pfn) < n && bad++ < 4) {
      out.push(`pfn 0x${pfn.toString(16)} has ${v.pages.pinCount(pfn)} pin(s), its holders account for ${n}`);
    }
  }
  const pinnedByMm = new Map<unknown, number>();
  const userCharged = new Map<unknown, number>();
  const mmCharged = new Map<unknown, number>();
  const charge = (m: Map<unknown, number>, k: unknown, n: number) => m.set(k, (m.get(k) ?? 0) + n);
  for (const p of all) {
    charge(pinnedByMm, p.acct, p.npinned);
    if (p.accountMode === IOPT_PAGES_ACCOUNT_USER) charge(userCharged, p.acct.user, p.npinned);
    if (p.accountMode === IOPT_PAGES_ACCOUNT_MM) charge(mmCharged, p.acct, p.npinned);
  }
  for (const b of backends) b.forEachLockedVm?.((mm, n) => charge(mmCharged, mm, n));
  for (const t of v.tasks()) {
    const want = pinnedByMm.get(t.mm) ?? 0;
    if (t.mm.pinnedVm !== want) out.push(`pid ${t.pid}: pinned_vm ${t.mm.pinnedVm}, iommufd pinned ${want}`);
    // mm->locked_vm: VM_LOCKED mappings (MAP_LOCKED) plus every charge made to this mm.
    const mm = t.mm as unknown as MmStruct;
    let lockedVmas = 0;
    // (the VMAs themselves, not maps(): that builds a record with BigInts per VMA, every fuzzer step)
    for (const vma of mm.vmas.list) if (vma.locked) lockedVmas += (vma.end - vma.start) / 4096;
    const prereg = v.vfioPreregCharged(mm);
    const charged = mmCharged.get(t.mm) ?? 0;
    if (mm.lockedVm !== lockedVmas + charged + prereg) {
      out.push(
        `pid ${t.pid}: locked_vm ${mm.lockedVm}, but MAP_LOCKED mappings hold ${lockedVmas}, pins charged per mm ${charged}, sPAPR pre-registered ${prereg}`,
      );
    }
  }
  for (const u of v.users.all()) {
    const want = userCharged.get(u) ?? 0;
    if (u.lockedVm !== want) out.push(`uid ${u.uid}: locked_vm ${u.lockedVm}, USER-mode pins ${want}`);
  }
  checkDomainsPinned(v, out);
  checkDmaLog(v, out);
  if (v.tasks().length === 0) {
    const c = v.counters();
    for (const k of PER_PROCESS) {
      if ((c[k] ?? 0) !== 0) out.push(`no process is left but ${k} is ${c[k]}`);
    }
    const other = c.usedFrames - c.ptFrames;
    if (other !== v.bootOtherFrames) {
      out.push(
        `no process is left but the kernel holds ${other} frames besides page tables (boot: ${v.bootOtherFrames})`,
      );
    }
  }
  return out;
}

/**
 * The sanitizer's view and the page tracker agree: the sanitizer asks the
 * tracker, and every frame a user-filled paging domain translates to is
 * pinned (a device behind an IOMMU can reach nothing else).
 */
function checkDomainsPinned(v: MachineView, out: string[]): void {
  if (v.sanitizerOracle() !== v.pages) out.push("the DMA sanitizer does not ask the page tracker about pins");
  for (const d of v.domains()) {
    if (d.use !== "unmanaged" || d.pt === undefined) continue;
    // Runs are recorded in the table's units (2 KiB on the selftest mock, 4 KiB elsewhere).
    const unit = 2 ** d.pt.unitLg2;
    for (const r of d.mapped.all()) {
      const first = Math.floor((r.pa * unit) / 4096);
      const n = Math.max(1, Math.floor((r.len * unit) / 4096));
      const step = n > RUN_CHECK_LIMIT ? Math.ceil(n / RUN_CHECK_LIMIT) : 1;
      const unpinned = (i: number) => v.pages.pinCount(first + i) === 0;
      let hole = -1;
      for (let i = 0; i < n && hole < 0; i += step) if (unpinned(i)) hole = i;
      if (hole < 0 && unpinned(n - 1)) hole = n - 1;
      if (hole >= 0) {
        out.push(
          `domain ${d.id} maps IOVA 0x${(r.iova * unit + hole * 4096).toString(16)} to pfn 0x${(first + hole).toString(16)}, which no pin holds`,
        );
        return;
      }
    }
  }
}

/** A DMA an IOMMU translated never reaches a frame the sanitizer finds unpinned. */
function checkDmaLog(v: MachineView, out: string[]): void {
  const ev = v.dmaLog.events;
  const from = Math.min(v.dmaChecked.n, ev.length);
  for (let i = from; i < ev.length; i++) {
    const e = ev[i];
    if (e.result === "ok" && e.finding !== undefined && v.translated(e.device)) {
      out.push(
        `${e.device}: a translated ${e.op} at 0x${e.addr.toString(16)} reached memory no pin holds (${e.finding})`,
      );
    }
  }
  v.dmaChecked.n = ev.length;
}
