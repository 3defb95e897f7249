import type { IoatDevice } from "../hw/ioat-dev.js";
import { iommufdCtxFromFile, iommufdDeviceAttach, iommufdDeviceBind } from "../iommufd/index.js";
import { Machine } from "../kernel/machine.js";
import * as U from "../uapi/iommufd.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../uapi/linux.js";
import { decode, encode } from "../uapi/struct.js";
import { nowNs, registerSuite } from "./registry.js";

const BDF = "0000:00:04.0";
const CH = 0x80;

export interface IoatStormResult {
  /** Descriptors the channel completed (must equal the count asked for). */
  copies: number;
  /** Wall time of the DMACOUNT store that ran them all, per copy. */
  nsPerCopy: number;
  copiesPerSecond: number;
}

/**
 * vfio_pci_driver_test's memcpy_storm on the model: one self-chained
 * descriptor copying XFERCAP (4 KiB) bytes through an Intel IOMMU,
 * `count` times from one DMACOUNT store (the selftest asks for
 * min(250 GiB / 4 KiB, 65535) = 65535). Each copy is a descriptor fetch,
 * two IOMMU walks, the copy, three DMA-log entries and the sanitizer.
 */
export function ioatStorm(count: number): IoatStormResult {
  const m = new Machine({ iommu: "intel", pci: [{ bdf: BDF, kind: "ioat" }] });
  const p = m.spawn({ rlimitMemlock: 1n << 30n });
  const fd = p.open("/dev/iommu");
  const a = encode(U.iommu_ioas_alloc, { size: 12 });
  if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, a) !== 0) throw new Error("IOAS_ALLOC failed");
  const ioas = Number(decode(U.iommu_ioas_alloc, a).out_ioas_id);
  const idev = m.iommu.device(BDF);
  if (idev === undefined) throw new Error(`no IOMMU device ${BDF}`);
  iommufdDeviceAttach(iommufdDeviceBind(iommufdCtxFromFile(p.task.fdget(fd)), idev), ioas);
  const va = p.mmap(0n, 3n << 12n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (va < 0n) throw new Error(`mmap failed: ${va}`);
  const iova = 1n << 30n;
  const map = encode(U.iommu_ioas_map, {
    size: 40,
    flags: U.IOMMU_IOAS_MAP_READABLE | U.IOMMU_IOAS_MAP_WRITEABLE | U.IOMMU_IOAS_MAP_FIXED_IOVA,
    ioas_id: ioas,
    user_va: va,
    length: 3n << 12n,
    iova,
  });
  if (p.ioctl(fd, U.IOMMU_IOAS_MAP, map) !== 0) throw new Error("IOAS_MAP failed");
  // The descriptor in the first page, the source and destination in the next two.
  const desc = new Uint8Array(64);
  const dv = new DataView(desc.buffer);
  dv.setUint32(0, 4096, true);
  dv.setBigUint64(8, iova + 0x1000n, true);
  dv.setBigUint64(16, iova + 0x2000n, true);
  dv.setBigUint64(24, iova, true);
  if (p.writeMemory(va, desc) !== 0) throw new Error("descriptor write failed");
  const data = new Uint8Array(4096).map((_, i) => (i * 7 + 1) & 0xff);
  if (p.writeMemory(va + 0x1000n, data) !== 0) throw new Error("source write failed");
  const dev = m.pci.get(BDF) as IoatDevice;
  dev.configWrite(0x04, 2, 0x0406);
  const le = (v: bigint, n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Number((v >> BigInt(8 * i)) & 0xffn);
    return b;
  };
  dev.mmioWrite(0, CH + 0x04, le(0x20n, 1));
  dev.mmioWrite(0, CH + 0x10, le(iova, 8));
  const t0 = nowNs();
  dev.mmioWrite(0, CH + 0x06, le(BigInt(count), 2));
  const t1 = nowNs();
  if (dev.status() !== 1)
    throw new Error(`storm ended with CHANSTS ${dev.status()}, CHANERR ${dev.chanerr()}`);
  const copies = dev.completed;
  p.exit();
  const ns = (t1 - t0) / copies;
  return { copies, nsPerCopy: ns, copiesPerSecond: 1e9 / ns };
}

registerSuite({
  name: "ioat",
  run: ({ quick }) => {
    const r = ioatStorm(quick ? 2000 : 65535);
    return {
      ioat_storm_copy_4k_ns: r.nsPerCopy,
      ioat_storm_copies_per_s: Math.round(r.copiesPerSecond),
    };
  },
});
