import { iommufdCtxFromFile, iommufdDeviceAttach, iommufdDeviceBind } from "../iommufd/index.js";
import { Machine } from "../kernel/machine.js";
import type { ForeignMemory, ForeignMm, ForeignVma } from "../mm/index.js";
import * as U from "../uapi/iommufd.js";
import { decode, encode } from "../uapi/struct.js";
import { nowNs, registerSuite } from "./registry.js";

const BDF = "0000:00:04.0";
const BASE = 0x7f0000000000;

export interface ForeignSetupResult {
  /** Pages IOAS_MAP pinned and mapped (the program's pages attached to frames). */
  pages: number;
  /** IOMMU_IOAS_MAP of the range: pin_user_pages of every page, then the IOMMU map (ms). */
  mapMs: number;
  /** IOMMU_IOAS_UNMAP (IOMMU unmap and unpin), then munmap of the range (the pages leave the process) (ms). */
  teardownMs: number;
}

/**
 * vfio_pci_driver_test's setup and teardown as the model sees them behind
 * the exec bridge: `len` bytes of a real process's MAP_SHARED|MAP_ANONYMOUS
 * memory (here an in-process stand-in for /proc/PID/mem whose pages read
 * as zero) mapped by one IOAS_MAP into an IOAS with the IOAT channel
 * attached on an Intel IOMMU, then unmapped and munmapped. The selftest
 * does this with 1 GiB in each of its 35 setups.
 */
export function foreignSetup(len: number): ForeignSetupResult {
  const vma: ForeignVma = {
    start: BASE,
    end: BASE + len,
    read: true,
    write: true,
    io: false,
    shared: "00:01 1",
  };
  // what the process stored (the ioctl structs): byte by byte; everything else reads as zero
  const stored = new Map<number, number>();
  const mem: ForeignMemory = {
    read: (va, n) => {
      const out = new Uint8Array(n);
      if (stored.size > 0) for (let i = 0; i < n; i++) out[i] = stored.get(va + i) ?? 0;
      return out;
    },
    write: (va, b) => {
      if (va >= vma.start && va < vma.end) return 0;
      for (let i = 0; i < b.length; i++) stored.set(va + i, b[i]);
      return 0;
    },
    vma: (va) => (va >= vma.start && va < vma.end ? { ...vma } : undefined),
  };
  const m = new Machine({ iommu: "intel", pci: [{ bdf: BDF, kind: "ioat" }] });
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: mem });
  const fd = p.open("/dev/iommu");
  const a = encode(U.iommu_ioas_alloc, { size: 12 });
  if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, a) !== 0) throw new Error("IOAS_ALLOC failed");
  const ioas = Number(decode(U.iommu_ioas_alloc, a).out_ioas_id);
  const idev = m.iommu.device(BDF);
  if (idev === undefined) throw new Error(`no IOMMU device ${BDF}`);
  iommufdDeviceAttach(iommufdDeviceBind(iommufdCtxFromFile(p.task.fdget(fd)), idev), ioas);
  const iova = 1n << 32n;
  const map = encode(U.iommu_ioas_map, {
    size: 40,
    flags: U.IOMMU_IOAS_MAP_READABLE | U.IOMMU_IOAS_MAP_WRITEABLE | U.IOMMU_IOAS_MAP_FIXED_IOVA,
    ioas_id: ioas,
    user_va: BigInt(BASE),
    length: BigInt(len),
    iova,
  });
  const unmap = encode(U.iommu_ioas_unmap, { size: 24, ioas_id: ioas, iova, length: BigInt(len) });
  const mm = p.task.mm as unknown as ForeignMm;
  const t0 = nowNs();
  if (p.ioctl(fd, U.IOMMU_IOAS_MAP, map) !== 0) throw new Error("IOAS_MAP failed");
  const t1 = nowNs();
  const pages = mm.attachedPages();
  if (p.ioctl(fd, U.IOMMU_IOAS_UNMAP, unmap) !== 0) throw new Error("IOAS_UNMAP failed");
  mm.detach(BigInt(BASE), BigInt(len));
  const t2 = nowNs();
  if (mm.attachedPages() !== 0) throw new Error("pages still attached after munmap");
  p.exit();
  return { pages, mapMs: (t1 - t0) / 1e6, teardownMs: (t2 - t1) / 1e6 };
}

registerSuite({
  name: "foreign",
  run: ({ quick }) => {
    const r = foreignSetup(quick ? 16 << 20 : 1 << 30);
    return {
      bridge_ioas_map_1g_ms: r.mapMs,
      bridge_ioas_unmap_munmap_1g_ms: r.teardownMs,
    };
  },
});
