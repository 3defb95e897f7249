import type { AccountTarget } from "../mm/locked-vm.js";
import { IOPT_PAGES_ACCOUNT_MM, IOPT_PAGES_ACCOUNT_USER } from "../mm/locked-vm.js";
import { IommufdAccess } from "./access.js";
import type { IommufdGlobals } from "./ctx.js";
import { IommufdDevice } from "./device.js";
import { IommufdFault, IommufdVeventq } from "./eventq.js";
import { HwptNested, HwptPaging } from "./hw-pagetable.js";
import { IommufdHwQueue } from "./hw-queue.js";
import { IommufdIoas } from "./ioas.js";
import type { IoptPages } from "./pages.js";
import { IommufdVdevice, IommufdViommu } from "./viommu.js";

/**
 * What must hold between ioctls (m.debug.checkInvariants()):
 * - each pages object pins exactly the union of its users' ranges, once;
 * - pinned_vm of every mm equals the pages iommufd pinned for it, and
 *   user->locked_vm / mm->locked_vm carry the USER / MM charged ones;
 * - every paging domain of an IOAS translates exactly the IOAS's areas;
 * - refcounts equal the references other objects hold.
 */
export function checkIommufdInvariants(g: IommufdGlobals): string[] {
  const out: string[] = [];
  const allPages = new Set<IoptPages>();
  for (const ictx of g.contexts) {
    const objs = ictx.objects.values();
    for (const o of objs) {
      if (o instanceof IommufdIoas) {
        let expect = 1;
        for (const h of objs) if (h instanceof HwptPaging && h.ioas === o) expect++;
        for (const a of objs) if (a instanceof IommufdAccess && a.ioas === o) expect++;
        for (const q of objs) if (q instanceof IommufdHwQueue && q.access?.ioas === o) expect++;
        if (o.users !== expect) out.push(`IOAS ${o.id}: users ${o.users}, references ${expect}`);
        for (const n of o.iopt.areas.all()) {
          allPages.add(n.value.pages);
          if (o.iopt.domains.length > 0 && n.value.domainsUser === undefined) {
            out.push(
              `IOAS ${o.id}: area [0x${n.start.toString(16)}, 0x${n.last.toString(16)}] not pinned for its domains`,
            );
          }
        }
        for (const d of o.iopt.domains) out.push(...checkDomain(o, d));
      } else if (o instanceof HwptPaging) {
        let expect = 1;
        for (const x of objs) {
          if (x instanceof IommufdDevice && x.hwpt === o) expect++;
          if (x instanceof HwptNested && x.parent === o && x.viommu === undefined) expect++;
          if (x instanceof IommufdViommu && x.hwpt === o) expect++;
        }
        expect += pasidRefs(objs, o);
        if (o.users !== expect) out.push(`HWPT ${o.id}: users ${o.users}, references ${expect}`);
        if (o.inIopt !== o.ioas.iopt.domains.includes(o.domain))
          out.push(`HWPT ${o.id}: domain list out of step`);
      } else if (o instanceof HwptNested) {
        let expect = 1 + pasidRefs(objs, o);
        for (const x of objs) if (x instanceof IommufdDevice && x.hwpt === o) expect++;
        if (o.users !== expect) out.push(`nested HWPT ${o.id}: users ${o.users}, references ${expect}`);
      } else out.push(...checkViommuObjects(objs, o));
    }
  }
  const byMm = new Map<AccountTarget, { pinned: number; user: number; mm: number }>();
  for (const p of allPages) {
    out.push(...p.checkSelf());
    const e = byMm.get(p.acct) ?? { pinned: 0, user: 0, mm: 0 };
    e.pinned += p.npinned;
    if (p.accountMode === IOPT_PAGES_ACCOUNT_USER) e.user += p.npinned;
    if (p.accountMode === IOPT_PAGES_ACCOUNT_MM) e.mm += p.npinned;
    byMm.set(p.acct, e);
  }
  for (const [mm, e] of byMm) {
    if (mm.pinnedVm < e.pinned)
      out.push(`mm pinned_vm ${mm.pinnedVm} < ${e.pinned} pages iommufd pinned for it`);
    if (mm.lockedVm < e.mm)
      out.push(`mm locked_vm ${mm.lockedVm} < ${e.mm} pages charged in ACCOUNT_MM mode`);
    if (mm.user.lockedVm < e.user)
      out.push(`user locked_vm ${mm.user.lockedVm} < ${e.user} pages charged in ACCOUNT_USER mode`);
  }
  return out;
}

function checkDomain(ioas: IommufdIoas, d: HwptPaging["domain"]): string[] {
  const out: string[] = [];
  const unit = d.pt?.unitLg2 ?? 12;
  // Compare whole domain pages: the domain's smallest page is the unit a driver's table records.
  const mask = ~((1n << BigInt(unit)) - 1n);
  let want = 0n;
  for (const n of ioas.iopt.areas.all()) {
    const a = n.value;
    want += a.length;
    for (const at of [a.iova, a.last]) {
      const byte = a.startByte + (at - a.iova);
      const pfn = a.pages.pfnAt(Number(byte / 4096n));
      const exp = BigInt(pfn) * 4096n + (byte % 4096n);
      const got = d.iovaToPhys(at);
      if (pfn < 0 || (got & mask) !== (exp & mask)) {
        out.push(
          `IOAS ${ioas.id}: domain ${d.id} maps 0x${at.toString(16)} to 0x${got.toString(16)}, area says 0x${exp.toString(16)}`,
        );
      }
    }
  }
  const have = BigInt(d.mapped.totalUnits()) << BigInt(unit);
  if (have !== want) out.push(`IOAS ${ioas.id}: domain ${d.id} maps ${have} bytes, areas cover ${want}`);
  return out;
}

/** References PASID attachments hold on a HWPT (one per attached device). */
function pasidRefs(objs: readonly unknown[], h: HwptPaging | HwptNested): number {
  let n = 0;
  for (const x of objs) {
    if (!(x instanceof IommufdDevice) || x.igroup === undefined) continue;
    for (const a of x.igroup.pasids.values()) if (a.hwpt === h && a.devices.has(x)) n++;
  }
  return n;
}

/** vIOMMU, vDEVICE, event queue and HW queue references (iommufd-semantics.md §1.3). */
function checkViommuObjects(objs: readonly unknown[], o: unknown): string[] {
  const out: string[] = [];
  const fileRef = (f: { refs: number } | undefined) => (f !== undefined && f.refs > 0 ? 1 : 0);
  if (o instanceof IommufdViommu) {
    let expect = 1 + o.mappings;
    for (const x of objs) {
      if (x instanceof IommufdVdevice && x.viommu === o) expect++;
      if (x instanceof IommufdVeventq && x.viommu === o) expect++;
      if (x instanceof HwptNested && x.viommu === o) expect++;
      if (x instanceof IommufdHwQueue && x.viommu === o) expect++;
    }
    if (o.users !== expect) out.push(`vIOMMU ${o.id}: users ${o.users}, references ${expect}`);
    for (const [id, v] of o.vdevs) {
      if (v.virtId !== id || !objs.includes(v))
        out.push(`vIOMMU ${o.id}: stale vDEVICE at 0x${id.toString(16)}`);
    }
  } else if (o instanceof IommufdVdevice) {
    if (o.users !== 1) out.push(`vDEVICE ${o.id}: users ${o.users}, references 1`);
    if (o.idev.vdev !== o) out.push(`vDEVICE ${o.id}: its device points elsewhere`);
  } else if (o instanceof IommufdFault) {
    let expect = 1 + fileRef(o.file);
    for (const x of objs) if ((x instanceof HwptPaging || x instanceof HwptNested) && x.fault === o) expect++;
    if (o.users !== expect) out.push(`fault queue ${o.id}: users ${o.users}, references ${expect}`);
  } else if (o instanceof IommufdVeventq) {
    const expect = 1 + fileRef(o.file);
    if (o.users !== expect) out.push(`vEVENTQ ${o.id}: users ${o.users}, references ${expect}`);
    let n = 0;
    for (const e of o.deliver) if (!e.lost) n++;
    if (n !== o.numEvents || n > o.depth)
      out.push(`vEVENTQ ${o.id}: ${n} queued events, num_events ${o.numEvents}`);
  } else if (o instanceof IommufdHwQueue) {
    if (o.viommu === undefined || o.access === undefined) out.push(`HW queue ${o.id}: half built`);
  }
  return out;
}
