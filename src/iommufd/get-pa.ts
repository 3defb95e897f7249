import { EINVAL, EOPNOTSUPP, EOVERFLOW, EPERM, fail } from "../uapi/errno.js";
import { GET_PA_REVISIONS } from "../uapi/profiles.js";
import { getIoas } from "./ioas.js";
import { U64_MAX } from "./iova-alloc.js";
import type { Ucmd } from "./ucmd.js";

/**
 * IOMMU_IOAS_NOIOMMU_GET_PA (nr 0x95, the proposed noiommu cdev series).
 * The seam for the later noiommu mode: the argument checks run in the
 * series' order, and since no IOAS can hold the software noiommu HWPT yet
 * every IOAS answers as one "whose storage domain is not the noiommu
 * domain": EOPNOTSUPP. A noiommu HWPT (hwpt_noiommu.c: software AMDv1,
 * IOVA→PA lookups only) plugs in by giving the IOAS such a domain and
 * answering from its table here.
 */
export function getPa(u: Ucmd): number {
  const rev = GET_PA_REVISIONS[u.ictx.k.noiommuRevision];
  if (!u.task.capable("CAP_SYS_RAWIO")) fail(EPERM, "IOMMU_IOAS_NOIOMMU_GET_PA needs CAP_SYS_RAWIO");
  if (u.num("flags") !== 0 || u.num("__reserved") !== 0) fail(EOPNOTSUPP, "flags and __reserved must be 0");
  const length = u.big("length");
  if (rev.lengthIsInput && rev.zeroLength === "EINVAL" && length === 0n) {
    fail(EINVAL, `length is a required upper bound in revision ${u.ictx.k.noiommuRevision}; 0 is invalid`);
  }
  if (u.big("iova") >= U64_MAX) fail(EOVERFLOW, "iova is ULONG_MAX");
  getIoas(u.ictx, u.num("ioas_id"));
  return fail(
    EOPNOTSUPP,
    "the IOAS is not backed by the noiommu software HWPT (no noiommu device is attached)",
  );
}
