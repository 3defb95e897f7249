import { iommufdCtxFromFile, iommufdDeviceAttach, iommufdDeviceBind } from "../iommufd/index.js";
import { Machine } from "../kernel/machine.js";
import * as U from "../uapi/iommufd.js";
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../uapi/linux.js";
import { decode, encode } from "../uapi/struct.js";
import { median, nowNs, registerSuite } from "./registry.js";

const RW = 6;
const FIXED = 1;

function ioasAlloc(p: ReturnType<Machine["spawn"]>, fd: number): number {
  const a = encode(U.iommu_ioas_alloc, { size: 12 });
  if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, a) !== 0) throw new Error("IOAS_ALLOC failed");
  return Number(decode(U.iommu_ioas_alloc, a).out_ioas_id);
}

/**
 * 64 GiB of MAP_HUGETLB memory mapped by one IOMMU_IOAS_MAP into an IOAS
 * with a device attached (AMD, amdv1 2 MiB leaves): ns per 2 MiB page and
 * the RSS growth of the whole run (untouched frames are never materialized).
 */
function hugetlbMap(quick: boolean): Record<string, number> {
  const len = quick ? 1n << 30n : 64n << 30n;
  const rss0 = process.memoryUsage().rss;
  const m = new Machine({ iommu: "amd", memoryBytes: len + (4n << 30n) });
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], rlimitMemlock: (1n << 64n) - 1n });
  const fd = p.open("/dev/iommu");
  const ioas = ioasAlloc(p, fd);
  const idev = iommufdDeviceBind(iommufdCtxFromFile(p.task.fdget(fd)), m.iommu.device("0000:00:04.0"));
  iommufdDeviceAttach(idev, ioas);
  const va = p.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
  if (va < 0n) throw new Error(`mmap hugetlb failed: ${va}`);
  const buf = encode(U.iommu_ioas_map, {
    size: 40,
    flags: RW | FIXED,
    ioas_id: ioas,
    user_va: va,
    length: len,
    iova: 1n << 40n,
  });
  const t0 = nowNs();
  const rc = p.ioctl(fd, U.IOMMU_IOAS_MAP, buf);
  const t1 = nowNs();
  if (rc !== 0) throw new Error(`IOAS_MAP failed: ${JSON.stringify(p.lastError())}`);
  const rss = process.memoryUsage().rss;
  p.exit();
  return {
    ioas_map_hugetlb_64g_ns_per_2m: (t1 - t0) / Number(len >> 21n),
    ioas_map_hugetlb_64g_rss_mb: Math.max(0, rss - rss0) / (1 << 20),
  };
}

/** Cost of map+unmap of one more fixed area with n areas present. */
function areaCost(n: number, reps: number): number {
  const m = new Machine({ iommu: "amd" });
  const p = m.spawn();
  const fd = p.open("/dev/iommu");
  const ioas = ioasAlloc(p, fd);
  const va = p.mmap(0n, 4096n, 3, 0x22);
  const mapBuf = encode(U.iommu_ioas_map, {
    size: 40,
    flags: RW | FIXED,
    ioas_id: ioas,
    user_va: va,
    length: 4096n,
  });
  const dv = new DataView(mapBuf.buffer);
  for (let i = 0; i < n; i++) {
    dv.setBigUint64(32, BigInt(i * 2 + 1) << 12n, true);
    if (p.ioctl(fd, U.IOMMU_IOAS_MAP, mapBuf) !== 0) throw new Error("map failed");
  }
  const um = encode(U.iommu_ioas_unmap, { size: 24, ioas_id: ioas, length: 4096n });
  const uv = new DataView(um.buffer);
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const at = BigInt(((r * 7919) % n) * 2 + 2) << 12n;
    dv.setBigUint64(32, at, true);
    uv.setBigUint64(8, at, true);
    uv.setBigUint64(16, 4096n, true);
    const t0 = nowNs();
    if (p.ioctl(fd, U.IOMMU_IOAS_MAP, mapBuf) !== 0) throw new Error("map failed");
    if (p.ioctl(fd, U.IOMMU_IOAS_UNMAP, um) !== 0) throw new Error("unmap failed");
    times.push(nowNs() - t0);
  }
  p.exit();
  return median(times);
}

registerSuite({
  name: "iommufd",
  cRef: { ioas_map_hugetlb_64g_ns_per_2m: "map2m_ns_per_page" },
  run: ({ quick }) => {
    const big = quick ? 10_000 : 100_000;
    const r = hugetlbMap(quick);
    const small = areaCost(1000, 2000);
    const large = areaCost(big, 2000);
    return { ...r, ioas_area_scaling_ratio: large / small };
  },
});
