import { describe, expect, it } from "vitest";
import { Machine, uapi } from "../../src/index.js";

describe("m.debug.hwpt", () => {
  it("gives the format, root and top level of an auto HWPT, and its table level by level", () => {
    const m = new Machine({ iommu: "amd" });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    const p = m.spawn();
    const iommufd = p.open("/dev/iommu");
    const dev = p.open(`/dev/vfio/devices/${m.listDir("/dev/vfio/devices")[0]}`);
    const bind = uapi.encode(uapi.vfio_device_bind_iommufd, { argsz: 24, iommufd });
    expect(p.ioctl(dev, uapi.VFIO_DEVICE_BIND_IOMMUFD, bind)).toBe(0);
    const alloc = uapi.encode(uapi.iommu_ioas_alloc, { size: 12 });
    expect(p.ioctl(iommufd, uapi.IOMMU_IOAS_ALLOC, alloc)).toBe(0);
    const ioas = uapi.decode(uapi.iommu_ioas_alloc, alloc).out_ioas_id;
    const attach = uapi.encode(uapi.vfio_device_attach_iommufd_pt, { argsz: 16, pt_id: ioas });
    expect(p.ioctl(dev, uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach)).toBe(0);
    const hwpt = Number(uapi.decode(uapi.vfio_device_attach_iommufd_pt, attach).pt_id);
    const buf = p.mmap(0n, 4096n, 3, 0x22);
    const map = uapi.encode(uapi.iommu_ioas_map, {
      size: 40,
      flags: uapi.IOMMU_IOAS_MAP_FIXED_IOVA | uapi.IOMMU_IOAS_MAP_READABLE | uapi.IOMMU_IOAS_MAP_WRITEABLE,
      ioas_id: ioas,
      user_va: buf,
      length: 4096,
      iova: 0x100000,
    });
    expect(p.ioctl(iommufd, uapi.IOMMU_IOAS_MAP, map)).toBe(0);
    const info = m.debug.hwpt(p, iommufd, hwpt);
    expect(info.format).toBe("amdv1");
    expect(info.topLevel).toBeGreaterThanOrEqual(2);
    const dump = info.dump?.() ?? [];
    const leaves = dump.filter((e) => e.level === 0 && e.raw !== 0n);
    expect(leaves).toHaveLength(1);
    expect(leaves[0].index).toBe(0x100);
    // AMDv1 leaf: present, IR and IW set
    expect(leaves[0].raw & 1n).toBe(1n);
    expect((leaves[0].raw >> 61n) & 3n).toBe(3n);
    expect(dump[0].tablePhys).toBe(info.rootPhys);
  });
});
