import type { KernelCtx } from "../kernel/kctx.js";
import type { AccountTarget } from "../mm/locked-vm.js";
import { IOPT_PAGES_ACCOUNT_MM, IOPT_PAGES_ACCOUNT_USER } from "../mm/locked-vm.js";
import { IommufdAccess } from "./access.js";
import { contextsOf } from "./ctx.js";
import { IommufdDevice } from "./device.js";
import { HwptNested, HwptPaging } from "./hw-pagetable.js";
import { IommufdIoas } from "./ioas.js";
import type { IoptPages } from "./pages.js";

/**
 * What must hold between ioctls (m.debug.checkInvariants()):
 * - each pages object pins exactly the union of its users' ranges, once;
 * - pinned_vm of every mm equals the pages iommufd pinned for it, and
 *   user->locked_vm / mm->locked_vm carry the USER / MM charged ones;
 * - every paging domain of an IOAS translates exactly the IOAS's areas;
 * - refcounts equal the references other objects hold.
 */
export function checkIommufdInvariants(k: KernelCtx): string[] {
  const out: string[] = [];
  const allPages = new Set<IoptPages>();
  for (const ictx of contextsOf(k)) {
    const objs = ictx.objects.values();
    for (const o of objs) {
      if (o instanceof IommufdIoas) {
        let expect = 1;
        for (const h of objs) if (h instanceof HwptPaging && h.ioas === o) expect++;
        for (const a of objs) if (a instanceof IommufdAccess && a.ioas === o) expect++;
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
          if (x instanceof HwptNested && x.parent === o) expect++;
        }
        if (o.users !== expect) out.push(`HWPT ${o.id}: users ${o.users}, references ${expect}`);
        if (o.inIopt !== o.ioas.iopt.domains.includes(o.domain))
          out.push(`HWPT ${o.id}: domain list out of step`);
      }
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
  // Compare whole domain pages: some drivers' iova_to_phys (the mock's) drop the in-page offset.
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
