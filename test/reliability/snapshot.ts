// The observable state of a machine, deep enough to prove that a failed
// system call changed nothing: objects, IOAS areas and IOVA ranges, what
// every domain translates, pins and accounting, fds and VMAs of every
// process, counters. Test-only: it reads the model's internals.

import { IommufdDevice } from "../../src/iommufd/device.js";
import { HwptNested, HwptPaging } from "../../src/iommufd/hw-pagetable.js";
import { IommufdIoas } from "../../src/iommufd/ioas.js";
import type { Machine } from "../../src/kernel/machine.js";

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/**
 * Counters a failed call may move legitimately: frames materialized once stay
 * resident, and pages a failed pin faulted in stay in the process (as in the
 * kernel: GUP does not undo faults); a page-table level a failed map
 * allocated stays in its domain until the domain is freed (page-table
 * engines only free levels on domain teardown). Kernel frames other than
 * page tables are compared instead; exit must still return everything.
 */
const VOLATILE_COUNTERS = new Set(["residentFrames", "ownedFrames", "usedFrames", "ptFrames"]);

export interface Snapshot {
  counters: Record<string, number>;
  contexts: unknown[];
  domains: unknown[];
  devices: unknown[];
  processes: unknown[];
}

export function snapshot(m: Machine): Snapshot {
  const counters: Record<string, number> = {};
  const all = m.debug.counters();
  for (const [k, v] of Object.entries(all)) if (!VOLATILE_COUNTERS.has(k)) counters[k] = v;
  counters.otherKernelFrames = all.usedFrames - all.ownedFrames - all.ptFrames;
  const contexts: unknown[] = [];
  for (const ictx of m.iommufd?.contexts ?? []) {
    const objs = ictx.objects
      .values()
      .sort((a, b) => a.id - b.id)
      .map((o) => {
        const base: Record<string, unknown> = { id: o.id, type: o.type, users: o.users, fin: o.finalized };
        if (o instanceof IommufdIoas) {
          base.areas = [...o.iopt.areas.all()].map((n) => {
            const a = n.value;
            const pfn = a.pages.pfnAt(a.pagesFirst);
            return `${hex(a.iova)}-${hex(a.last)} prot ${a.iommuProt} pfn ${pfn} acc ${a.numAccesses}`;
          });
          base.reserved = [...o.iopt.reserved.all()].map((n) => `${hex(n.start)}-${hex(n.last)}`);
          base.allowed = [...o.iopt.allowed.all()].map((n) => `${hex(n.start)}-${hex(n.last)}`);
          base.domains = o.iopt.domains.map((d) => d.id);
        }
        if (o instanceof HwptPaging) base.domain = o.domain.id;
        if (o instanceof HwptNested) base.parent = o.parent.id;
        if (o instanceof IommufdDevice) base.hwpt = o.hwpt?.id;
        return base;
      });
    contexts.push({ mode: ictx.accountMode, vfioIoas: ictx.vfioIoas?.id, objs });
  }
  const domains = m.iommu
    .liveDomains()
    .map((d) => ({
      id: d.id,
      type: d.type,
      users: [...d.users].sort(),
      mapped: d.mapped.all().map((r) => `${r.iova}+${r.len}->${r.pa}/${r.prot}`),
    }))
    .sort((a, b) => a.id - b.id);
  const devices = m.pciConfig.map((c) => {
    const d = m.iommu.device(c.bdf);
    return { bdf: c.bdf, domain: d?.domain.id, owner: d?.group.ownerCnt };
  });
  const processes = m.liveProcesses().map((p) => {
    const mm = p.task.mm;
    return {
      pid: p.pid,
      fds: p.task.fds.map((f) => (f === undefined ? null : `${f.kind}:${f.path}`)),
      vmas: mm.vmas.list.map((v) => `${hex(v.start)}-${hex(v.end)}`),
      lockedVm: mm.lockedVm,
      pinnedVm: mm.pinnedVm,
      userLockedVm: mm.user.lockedVm,
    };
  });
  return { counters, contexts, domains, devices, processes };
}
