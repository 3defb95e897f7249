import { iommufdCtxFromFile, iommufdDeviceAttach, iommufdDeviceBind } from "../iommufd/index.js";
import { Machine } from "../kernel/machine.js";
import * as U from "../uapi/iommufd.js";
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE } from "../uapi/linux.js";
import { decode, encode } from "../uapi/struct.js";
import { nowNs, registerSuite } from "./registry.js";

const MAP_PRIVATE_ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const RW = 6;
const FIXED = 1;
/** The machine's seed: its boot hugetlb pool is 2 MiB folios scattered over RAM by it. */
const SEED = 0x5eed;

export interface SeededMapResult {
  /** IOAS_MAP of untouched guest RAM: the pin faults every folio in (ns per 2 MiB page). */
  cold: number;
  /** IOAS_MAP again after IOAS_UNMAP: every folio already faulted in (ns per 2 MiB page). */
  warm: number;
  /** 2 MiB leaves (IOPTEs) in the domain after the warm map: scattered folios give one per page. */
  leaves: number;
}

/**
 * A VMM's guest RAM: `len` bytes of MAP_HUGETLB memory from a boot-time pool
 * of 2 MiB pages (hugepages=N on a seeded machine, so the folios are
 * scattered and every IOPTE is a 2 MiB leaf, never a 1 GiB one), mapped by
 * one IOMMU_IOAS_MAP into an IOAS with an AMD device attached.
 */
export function seededHugetlbMap(len: bigint): SeededMapResult {
  const pages = Number(len >> 21n);
  const m = new Machine({
    iommu: "amd",
    memoryBytes: len + (4n << 30n),
    seed: SEED,
    hugepages: { "2M": pages },
  });
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], rlimitMemlock: (1n << 64n) - 1n });
  const fd = p.open("/dev/iommu");
  const a = encode(U.iommu_ioas_alloc, { size: 12 });
  if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, a) !== 0) throw new Error("IOAS_ALLOC failed");
  const ioas = Number(decode(U.iommu_ioas_alloc, a).out_ioas_id);
  const dev = m.iommu.device("0000:00:04.0");
  if (dev === undefined) throw new Error("no IOMMU device 0000:00:04.0");
  iommufdDeviceAttach(iommufdDeviceBind(iommufdCtxFromFile(p.task.fdget(fd)), dev), ioas);
  const va = p.mmap(0n, len, 3, MAP_PRIVATE_ANON | MAP_HUGETLB);
  if (va < 0n) throw new Error(`mmap hugetlb failed: ${va}`);
  const iova = 1n << 40n;
  const map = encode(U.iommu_ioas_map, {
    size: 40,
    flags: RW | FIXED,
    ioas_id: ioas,
    user_va: va,
    length: len,
    iova,
  });
  const unmap = encode(U.iommu_ioas_unmap, { size: 24, ioas_id: ioas, iova, length: len });
  const t0 = nowNs();
  if (p.ioctl(fd, U.IOMMU_IOAS_MAP, map) !== 0)
    throw new Error(`IOAS_MAP failed: ${JSON.stringify(p.lastError())}`);
  const t1 = nowNs();
  if (p.ioctl(fd, U.IOMMU_IOAS_UNMAP, unmap) !== 0) throw new Error("IOAS_UNMAP failed");
  const t2 = nowNs();
  if (p.ioctl(fd, U.IOMMU_IOAS_MAP, map) !== 0)
    throw new Error(`IOAS_MAP failed: ${JSON.stringify(p.lastError())}`);
  const t3 = nowNs();
  let leaves = 0;
  // read back from the table bytes (512 units of 4 KiB: a 2 MiB leaf)
  dev.domain.pt?.leaves((_iova, _pa, units) => {
    if (units === 512) leaves++;
  });
  p.exit();
  return { cold: (t1 - t0) / pages, warm: (t3 - t2) / pages, leaves };
}

/**
 * 64 GiB (quick: 1 GiB) on a seeded machine, JIT-warm (the bench's warm-up
 * runs): cold = the pin faults the folios in, warm = they are resident.
 */
registerSuite({
  name: "hugetlb_seeded",
  cRef: {
    ioas_map_hugetlb_64g_seeded_cold_ns_per_2m: "map2m_ns_per_page",
    ioas_map_hugetlb_64g_seeded_warm_ns_per_2m: "map2m_ns_per_page",
  },
  run: ({ quick }) => {
    const r = seededHugetlbMap(quick ? 1n << 30n : 64n << 30n);
    return {
      ioas_map_hugetlb_64g_seeded_cold_ns_per_2m: r.cold,
      ioas_map_hugetlb_64g_seeded_warm_ns_per_2m: r.warm,
      ioas_map_hugetlb_64g_seeded_leaves_2m: r.leaves,
    };
  },
});
