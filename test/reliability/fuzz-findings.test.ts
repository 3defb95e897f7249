// Regression tests for what model-based fuzzing found (docs/reliability.md):
// each reproduces the shrunk sequence as plain system calls and checks the
// kernel's answer.
import { describe, expect, it } from "vitest";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import { argArea, MAP_PRIVATE_ANON, must, newMachine, PROT_RW, sioctl, vioctl } from "./rig.js";

const BDF = "0000:00:04.0";
const RW = I.IOMMU_IOAS_MAP_READABLE | I.IOMMU_IOAS_MAP_WRITEABLE;

/** A bound cdev, an IOAS with 4 pages mapped at 0x100000, a dirty-tracking HWPT on it. */
function dirtyRig(iommu: "amd" | "intel" | "mock") {
  const m = newMachine({ iommu, ...(iommu === "mock" ? { kconfig: { IOMMUFD_TEST: true } } : {}) });
  expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
  const p = m.spawn({ rlimitMemlock: 64n << 20n });
  argArea(p);
  const fd = must(p, p.open("/dev/iommu"), "open");
  const dev = must(p, p.open("/dev/vfio/devices/vfio0"), "open cdev");
  const devid = Number(
    vioctl(p, dev, V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd, { iommufd: fd }).out.out_devid,
  );
  const ioas = Number(sioctl(p, fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {}).out.out_ioas_id);
  const buf = p.mmap(0n, 0x4000n, PROT_RW, MAP_PRIVATE_ANON);
  const iova = iommu === "mock" ? 1n << 24n : 0x100000n;
  must(
    p,
    sioctl(p, fd, I.IOMMU_IOAS_MAP, I.iommu_ioas_map, {
      flags: RW | I.IOMMU_IOAS_MAP_FIXED_IOVA,
      ioas_id: ioas,
      user_va: buf,
      length: 0x4000n,
      iova,
    }).rc,
    "map",
  );
  const h = sioctl(p, fd, I.IOMMU_HWPT_ALLOC, I.iommu_hwpt_alloc, {
    flags: I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    dev_id: devid,
    pt_id: ioas,
  });
  must(p, h.rc, "HWPT_ALLOC dirty");
  return { m, p, fd, hwpt: Number(h.out.out_hwpt_id), iova };
}

describe("fuzzing findings", () => {
  for (const iommu of ["amd", "intel", "mock"] as const) {
    it(`${iommu}: GET_DIRTY_BITMAP with dirty tracking off succeeds with nothing reported (the driver's EINVAL is not returned)`, () => {
      // iommu_read_and_clear_dirty() ignores iova_bitmap_for_each()'s result: the
      // driver's "tracking disabled" stops the walk but the ioctl returns 0.
      const { m, p, fd, hwpt, iova } = dirtyRig(iommu);
      const data = argArea(p) + 4096n;
      expect(p.writeMemory(data, new Uint8Array([0xa0]))).toBe(0);
      const r = sioctl(p, fd, I.IOMMU_HWPT_GET_DIRTY_BITMAP, I.iommu_hwpt_get_dirty_bitmap, {
        hwpt_id: hwpt,
        iova,
        length: 0x4000n,
        page_size: 4096n,
        data,
      });
      expect(r.rc).toBe(0);
      // The kernel only ever sets bits: what the user had there stays.
      expect((p.readMemory(data, 1) as Uint8Array)[0]).toBe(0xa0);
      expect(m.debug.checkInvariants()).toEqual([]);
    });
  }
});
