import { RESV_TYPE_NAMES } from "../iommu/types.js";
import type { IoasDebugInfo } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { EINVAL, ENOENT, fail } from "../uapi/errno.js";
import { IommufdDevice } from "./device.js";
import { ownerName, type ReservedOwner } from "./io-pagetable.js";
import { IommufdIoas } from "./ioas.js";
import { iommufdCtxFromFile } from "./main.js";

/** Longest run list reported per area: a view needs the shape, not a million pfns. */
const MAX_RUNS = 4096;

/**
 * m.debug.ioas(): an IOAS as the kernel holds it (areas with their pinned
 * pfns, reserved and allowed ranges), read without changing anything. For
 * tools (the web view); user space sees the same through IOAS_IOVA_RANGES.
 */
export function debugIoas(task: Task, fd: number, id: number): IoasDebugInfo {
  const ictx = iommufdCtxFromFile(task.fdget(fd));
  const o = ictx.objects.tryGet(id);
  if (o === undefined) fail(ENOENT, `IOAS id ${id} does not exist`);
  if (!(o instanceof IommufdIoas)) fail(EINVAL, `id ${id} is a ${o.type}, not an IOAS`);
  const iopt = o.iopt;
  const areas: IoasDebugInfo["areas"] = [];
  for (const n of iopt.areas.all()) {
    const a = n.value;
    const p = a.pages;
    const runs: { pfn: number; n: number }[] = [];
    for (let i = a.pagesFirst; i <= a.pagesLast && runs.length < MAX_RUNS; i++) {
      const pfn = p.pfnAt(i);
      if (pfn < 0) continue;
      const last = runs.at(-1);
      if (last !== undefined && last.pfn + last.n === pfn) last.n++;
      else runs.push({ pfn, n: 1 });
    }
    areas.push({
      iova: n.start,
      last: n.last,
      prot: a.iommuProt,
      source: p.source.kind,
      addr: p.baseAddr + a.startByte,
      pinnedRuns: runs,
    });
  }
  const reserved = [...iopt.reserved.all()].map((n) => ({
    start: n.start,
    last: n.last,
    owner: reservedOwner(n.start, n.last, n.value),
  }));
  const allowed = [...iopt.allowed.all()].map((n) => ({ start: n.start, last: n.last }));
  return { areas, reserved, allowed };
}

/** Who reserved a range: for a device, which of its regions ("msi region of 0000:00:04.0"). */
function reservedOwner(start: bigint, last: bigint, o: ReservedOwner): string {
  if (o.kind !== "device" || !(o.dev instanceof IommufdDevice)) return ownerName(o);
  const r = o.dev.dev?.resvRegions().find((x) => x.start === start && x.last === last);
  return r === undefined ? ownerName(o) : `${RESV_TYPE_NAMES[r.type]} region of ${o.dev.name}`;
}
