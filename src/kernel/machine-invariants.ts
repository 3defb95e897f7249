import { contextsOf } from "../iommufd/ctx.js";
import { IommufdIoas } from "../iommufd/ioas.js";
import type { IoptPages } from "../iommufd/pages.js";
import type { PageTracker, UserTable } from "../mm/index.js";
import { IOPT_PAGES_ACCOUNT_USER } from "../mm/locked-vm.js";
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
  /** Frames the kernel held at boot besides page tables (usedFrames - ptFrames). */
  bootOtherFrames: number;
}

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
  for (const ictx of contextsOf(v.ctx)) {
    for (const o of ictx.objects.values()) {
      if (o instanceof IommufdIoas) for (const n of o.iopt.areas.all()) all.add(n.value.pages);
    }
  }
  const c = v.counters();
  let iommufdPins = 0;
  const expect = new Map<number, number>();
  for (const p of all) {
    iommufdPins += p.npinned;
    p.forEachPinned((pfn, n) => {
      for (let i = 0; i < n; i++) expect.set(pfn + i, (expect.get(pfn + i) ?? 0) + 1);
    });
  }
  const total = v.pages.totalPinnedPages();
  const type1 = c.vfioType1PinnedPages ?? 0;
  if (total !== iommufdPins + type1) {
    out.push(`${total} pinned pages, but iommufd holds ${iommufdPins} and VFIO type1 ${type1}`);
  }
  let bad = 0;
  for (const [pfn, n] of expect) {
    if (v.pages.pinCount(pfn) < n && bad++ < 4) {
      out.push(`pfn 0x${pfn.toString(16)} has ${v.pages.pinCount(pfn)} pin(s), iommufd holds ${n}`);
    }
  }
  const pinnedByMm = new Map<unknown, number>();
  const userCharged = new Map<unknown, number>();
  for (const p of all) {
    pinnedByMm.set(p.acct, (pinnedByMm.get(p.acct) ?? 0) + p.npinned);
    if (p.accountMode === IOPT_PAGES_ACCOUNT_USER)
      userCharged.set(p.acct.user, (userCharged.get(p.acct.user) ?? 0) + p.npinned);
  }
  for (const t of v.tasks()) {
    const want = pinnedByMm.get(t.mm) ?? 0;
    if (t.mm.pinnedVm !== want) out.push(`pid ${t.pid}: pinned_vm ${t.mm.pinnedVm}, iommufd pinned ${want}`);
  }
  for (const u of v.users.all()) {
    const want = userCharged.get(u) ?? 0;
    if (u.lockedVm !== want) out.push(`uid ${u.uid}: locked_vm ${u.lockedVm}, USER-mode pins ${want}`);
  }
  if (v.tasks().length === 0) {
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
