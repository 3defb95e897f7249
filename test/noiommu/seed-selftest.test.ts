// The seed series' selftest (tools/testing/selftests/vfio, vfio_iommufd_noiommu
// style) replayed on the model: every scenario it asserts, on one noiommu device.
import { describe, expect, it } from "vitest";
import {
  EBADF,
  EINVAL,
  ENOENT,
  IOMMU_DESTROY,
  IOMMU_IOAS_UNMAP,
  iommu_destroy,
  iommu_ioas_unmap,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
  vfio_device_info,
  vfio_region_info,
} from "../../src/uapi/index.js";
import { sioctl } from "../e2e/driver.js";
import { anon, attach, BDF, boot, CDEV, getPa, huge2m, ioasAlloc, mapFixed, openBound } from "./helpers.js";

describe("the seed selftest's scenarios on a noiommu cdev", () => {
  it("the cdev is found under the device's vfio-dev directory as noiommu-vfio* and opens", () => {
    const { m, p } = boot();
    expect(m.listDir(`/sys/bus/pci/devices/${BDF}/vfio-dev`)).toEqual(["noiommu-vfio0"]);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["noiommu-vfio0"]);
    expect(p.open(CDEV)).toBeGreaterThanOrEqual(0);
  });

  it("bind works; a second bind of the same fd fails EINVAL; bind with iommufd -2 fails EINVAL", () => {
    const { m, p } = boot();
    const dev = p.open(CDEV);
    const iommufd = p.open("/dev/iommu");
    const bad = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, {
      argsz: 24,
      iommufd: -2,
    });
    expect(bad.ret).toBe(-EINVAL);
    const ok = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
    expect(ok.ret).toBe(0);
    expect(ok.out.out_devid).toBeGreaterThan(0);
    const before = m.debug.counters();
    const twice = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
    expect(twice.ret).toBe(-EINVAL);
    expect(m.debug.counters()).toEqual(before);
  });

  it("a closed iommufd is EBADF", () => {
    const { p } = boot();
    const dev = p.open(CDEV);
    const r = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd: 77 });
    expect(r.ret).toBe(-EBADF);
  });

  it("GET_INFO fails before bind (EINVAL) and works after, with RESET", () => {
    const { p } = boot();
    const dev = p.open(CDEV);
    expect(sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(-EINVAL);
    const iommufd = p.open("/dev/iommu");
    expect(
      sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd }).ret,
    ).toBe(0);
    const info = sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 });
    expect(info.ret).toBe(0);
    expect(info.out.argsz).not.toBe(0);
    expect(Number(info.out.flags) & VFIO_DEVICE_FLAGS_RESET).toBe(VFIO_DEVICE_FLAGS_RESET);
    expect(p.ioctl(dev, VFIO_DEVICE_RESET)).toBe(0);
  });

  it("IOAS alloc works even without a bound device; two allocations differ; destroy works", () => {
    const { m, p } = boot();
    const iommufd = p.open("/dev/iommu");
    const a = ioasAlloc(p, iommufd);
    const b = ioasAlloc(p, iommufd);
    expect(a).not.toBe(b);
    expect(sioctl(p, iommufd, IOMMU_DESTROY, iommu_destroy, { size: 8, id: a }).ret).toBe(0);
    expect(sioctl(p, iommufd, IOMMU_DESTROY, iommu_destroy, { size: 8, id: b }).ret).toBe(0);
    expect(m.debug.counters().objects).toBe(0);
  });

  it("attach to the IOAS works (pt_id becomes the auto HWPT); attach to 0xffffffff fails ENOENT; detach works", () => {
    const { m, p } = boot();
    const o = openBound(p);
    const ioas = ioasAlloc(p, o.iommufd);
    const before = m.debug.counters();
    expect(attach(o, 0xffffffff).ret).toBe(-ENOENT);
    expect(m.debug.counters()).toEqual(before);
    const a = attach(o, ioas);
    expect(a.ret).toBe(0);
    expect(a.ptId).not.toBe(ioas);
    expect(m.debug.counters().domains).toBe(1);
    const d = sioctl(p, o.dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt, { argsz: 8 }, 8);
    expect(d.ret).toBe(0);
    // The auto HWPT died with its last device, its table with it.
    expect(m.debug.counters().domains).toBe(0);
    expect(m.debug.counters().ptFrames).toBe(0);
  });

  it("region info of config space and BAR0", () => {
    const { p } = boot();
    const o = openBound(p);
    for (const index of [VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_BAR0_REGION_INDEX]) {
      const r = sioctl(p, o.dev, VFIO_DEVICE_GET_REGION_INFO, vfio_region_info, { argsz: 32, index });
      expect(r.ret).toBe(0);
      expect(r.out.size).toBeGreaterThan(0n);
    }
  });

  it.each([1, 2, 4, 8])("IOAS_MAP with FIXED_IOVA of %i page(s), then unmap", (pages) => {
    const { m, p } = boot();
    const o = openBound(p);
    const ioas = ioasAlloc(p, o.iommufd);
    expect(attach(o, ioas).ret).toBe(0);
    const len = BigInt(pages * 4096);
    const va = anon(p, pages * 4096);
    expect(mapFixed(p, o.iommufd, ioas, va, len, 0x10000n)).toBe(0);
    expect(m.debug.counters().pinnedPages).toBe(pages);
    const u = sioctl(p, o.iommufd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap, {
      size: 24,
      ioas_id: ioas,
      iova: 0x10000n,
      length: len,
    });
    expect(u.ret).toBe(0);
    expect(u.out.length).toBe(len);
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("GET_PA of a mapped hugepage: a non-zero PA and a length within the mapping (also at +0x80)", () => {
    const { p } = boot();
    const o = openBound(p);
    const ioas = ioasAlloc(p, o.iommufd);
    expect(attach(o, ioas).ret).toBe(0);
    const size = 32n * 4096n;
    const va = huge2m(p);
    expect(mapFixed(p, o.iommufd, ioas, va, size, 0x20_0000n)).toBe(0);
    const a = getPa(p, o.iommufd, ioas, 0x20_0000n, size);
    expect(a.ret).toBe(0);
    expect(a.phys).not.toBe(0n);
    expect(a.length).toBeGreaterThan(0n);
    expect(a.length).toBeLessThanOrEqual(size);
    const b = getPa(p, o.iommufd, ioas, 0x20_0080n, size);
    expect(b.ret).toBe(0);
    expect(b.phys).toBe(a.phys + 0x80n);
    expect(b.length).toBeLessThanOrEqual(size - 0x80n);
    expect((b.phys + b.length) % 4096n).toBe(0n);
  });

  it("GET_PA of an unmapped IOVA fails (ENOENT, as iopt_get_phys finds no area)", () => {
    const { m, p } = boot();
    const o = openBound(p);
    const ioas = ioasAlloc(p, o.iommufd);
    expect(attach(o, ioas).ret).toBe(0);
    const before = m.debug.counters();
    expect(getPa(p, o.iommufd, ioas, 0x10000n, 4096n).ret).toBe(-ENOENT);
    expect(m.debug.counters()).toEqual(before);
  });

  it("everything is released when the process exits", () => {
    const { m, p } = boot();
    const o = openBound(p);
    const ioas = ioasAlloc(p, o.iommufd);
    expect(attach(o, ioas).ret).toBe(0);
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), 2n << 20n, 0x40_0000n)).toBe(0);
    p.exit();
    const c = m.debug.counters();
    expect(c.pinnedPages).toBe(0);
    expect(c.objects).toBe(0);
    expect(c.ptFrames).toBe(0);
    expect(c.openFiles).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});
