import type { IommuDomain } from "../iommu/domain.js";
import { EINVAL, ENOENT, EOPNOTSUPP, EOVERFLOW, EPERM, fail } from "../uapi/errno.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import { GET_PA_REVISIONS } from "../uapi/profiles.js";
import { isNoiommuStorage } from "./hwpt-noiommu.js";
import type { IoPagetable } from "./io-pagetable.js";
import { getIoas } from "./ioas.js";
import { hex, U64_MAX } from "./iova-alloc.js";
import type { UcmdOf } from "./ucmd.js";

/**
 * IOMMU_IOAS_NOIOMMU_GET_PA (nr 0x95; IOMMU_IOAS_GET_PA in the seed): the
 * physical address of the byte at `iova` and, in `length`, how many bytes
 * from there are physically contiguous. Checks in the series' order
 * (ioas.c of the late revision): CAP_SYS_RAWIO (EPERM); flags and
 * __reserved (EOPNOTSUPP); from v9 a zero length (EINVAL); iova ULONG_MAX
 * (EOVERFLOW); the IOAS (ENOENT); then iopt_get_phys.
 *
 * Revisions (machine option noiommuRevision): v4 `length` is output only;
 * v7 it is an upper bound where 0 means none; v9 a required upper bound.
 */
export function getPa(u: UcmdOf<"IOMMU_IOAS_NOIOMMU_GET_PA">): number {
  const revName = u.ictx.k.noiommuRevision;
  const rev = GET_PA_REVISIONS[revName];
  if (!u.task.capable("CAP_SYS_RAWIO")) fail(EPERM, "IOMMU_IOAS_NOIOMMU_GET_PA needs CAP_SYS_RAWIO");
  if (u.cmd.flags !== 0 || u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "flags and __reserved must be 0");
  const length = rev.lengthIsInput ? u.cmd.length : 0n;
  if (rev.lengthIsInput && rev.zeroLength === "EINVAL" && length === 0n) {
    fail(EINVAL, `length is a required upper bound in revision ${revName}; 0 is invalid`);
  }
  const iova = u.cmd.iova;
  if (iova >= U64_MAX) fail(EOVERFLOW, "iova is ULONG_MAX");
  const ioas = getIoas(u.ictx, u.cmd.ioas_id);
  const r = ioptGetPhys(ioas.iopt, iova, length === 0n ? U64_MAX : length);
  u.cmd.out_phys = r.phys;
  u.cmd.length = r.length;
  u.respond();
  return 0;
}

/** The domain every area is stored in: the first of the IOAS's domains (area->storage_domain). */
export function storageDomain(iopt: IoPagetable): IommuDomain | undefined {
  return iopt.domains[0];
}

/**
 * iopt_get_phys(): only the starting IOVA must be mapped (ENOENT when no
 * area holds it); the IOAS must be stored in the noiommu software domain
 * (EOPNOTSUPP for a real IOMMU's domain or none). The PA comes from that
 * domain's table bytes (iommu_iova_to_phys walks the AMDv1 entries); the
 * run grows a page at a time while the next page's PA follows on, never
 * past the area, and is capped by `max`. It ends on a page boundary unless
 * the cap or the area's end cuts it.
 */
export function ioptGetPhys(iopt: IoPagetable, iova: bigint, max: bigint): { phys: bigint; length: bigint } {
  const node = iopt.areas.firstIntersecting(iova, iova);
  if (node === null) fail(ENOENT, `no mapping holds IOVA ${hex(iova)}`);
  const area = node.value;
  const d = storageDomain(iopt);
  if (d === undefined || !isNoiommuStorage(d)) {
    fail(
      EOPNOTSUPP,
      d === undefined
        ? "the IOAS has no domain at all: attach the noiommu device first (the PA is read from its software page table)"
        : `the IOAS is stored in a ${d.driver.name} IOMMU domain, not the noiommu software domain`,
    );
  }
  const phys = d.iovaToPhys(iova);
  const areaLast = area.last;
  const inPage = PAGE - (iova % PAGE);
  let len = areaLast - iova + 1n < inPage ? areaLast - iova + 1n : inPage;
  let cur = iova;
  let curPa = phys;
  while (cur < areaLast && len < max) {
    const next = cur + PAGE;
    if (next > areaLast) break;
    const nextPa = d.iovaToPhys(next);
    if (nextPa === 0n || nextPa !== curPa + PAGE) break;
    cur = next;
    curPa += PAGE;
    len += PAGE;
  }
  if (len > max) len = max;
  return { phys, length: len };
}
