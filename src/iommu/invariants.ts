import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import type { IommuDomain } from "./domain.js";

interface Run {
  iova: number;
  pa: number;
  len: number;
}

/**
 * Does the domain's page table (read back from its bytes) map exactly what
 * the domain believes it mapped? Compares the table's leaves with the
 * domain's record as merged linear runs, then probes each recorded run's
 * first page with the hardware walker for its read/write permission.
 * Returns the problems found (empty when consistent).
 */
export function checkDomainTable(d: IommuDomain): string[] {
  const pt = d.pt;
  if (d.type !== "paging" || pt === undefined || d.freed) return [];
  const u = pt.unitLg2;
  const hex = (units: number) => `0x${(BigInt(units) << BigInt(u)).toString(16)}`;
  const inTable: Run[] = [];
  pt.leaves((iova, pa, len) => push(inTable, iova, pa, len));
  const recorded = d.mapped.all();
  const believed: Run[] = [];
  for (const r of recorded) push(believed, r.iova, r.pa, r.len);
  const out: string[] = [];
  const n = Math.max(inTable.length, believed.length);
  for (let i = 0; i < n && out.length < 8; i++) {
    const a = inTable[i];
    const b = believed[i];
    if (a !== undefined && b !== undefined && a.iova === b.iova && a.pa === b.pa && a.len === b.len) continue;
    const t = a === undefined ? "nothing" : `[${hex(a.iova)}, +${hex(a.len)}) -> ${hex(a.pa)}`;
    const w = b === undefined ? "nothing" : `[${hex(b.iova)}, +${hex(b.len)}) -> ${hex(b.pa)}`;
    out.push(`domain ${d.id} (${d.driver.name}): page table maps ${t} where the domain recorded ${w}`);
  }
  if (out.length > 0) return out;
  // one probe per recorded run and direction (no arrays built per run: this runs after every fuzzer step)
  for (const r of recorded) {
    const iova = BigInt(r.iova) << BigInt(u);
    for (let dir = 0; dir < 2; dir++) {
      const write = dir === 1;
      const res = pt.translate(iova, write, true);
      const want = (r.prot & (write ? IOMMU_WRITE : IOMMU_READ)) !== 0;
      if (res.ok !== want) {
        out.push(
          `domain ${d.id} (${d.driver.name}): ${write ? "write" : "read"} at 0x${iova.toString(16)} ` +
            `${res.ok ? "is allowed" : `faults (${res.reason})`} but the mapping's prot is 0x${r.prot.toString(16)}`,
        );
      }
    }
  }
  return out;
}

function push(runs: Run[], iova: number, pa: number, len: number): void {
  const l = runs[runs.length - 1];
  if (l !== undefined && l.iova + l.len === iova && l.pa + l.len === pa) l.len += len;
  else runs.push({ iova, pa, len });
}
