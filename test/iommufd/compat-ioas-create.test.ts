import { describe, expect, it } from "vitest";
import { errno, Machine, uapi } from "../../src/index.js";

// iommufd_vfio_compat_ioas_create() (drivers/iommu/iommufd/vfio_compat.c):
// a context in no-IOMMU mode refuses a compat IOAS with EINVAL even when one
// was set with IOMMU_VFIO_IOAS, because the check comes before the reuse.
describe("compat IOAS creation on a no-IOMMU context", () => {
  it("a normal group joining an iommufd that a noiommu group made no-IOMMU is EINVAL, IOAS set or not", () => {
    const m = new Machine({
      iommu: "amd",
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy", noIommu: true },
        { bdf: "0000:00:05.0", kind: "memcpy" },
      ],
      params: { "vfio.enable_unsafe_noiommu_mode": true },
    });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    const p = m.spawn({ caps: ["CAP_SYS_RAWIO"] });
    const groups = m.listDir("/dev/vfio");
    const noiommuGroup = groups.find((n) => n.startsWith("noiommu-"))!;
    const realGroup = groups.find((n) => /^\d+$/.test(n))!;
    const iommufd = p.open("/dev/iommu");
    const fdArg = () => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, iommufd, true);
      return b;
    };
    const g0 = p.open(`/dev/vfio/${noiommuGroup}`);
    expect(p.ioctl(g0, uapi.VFIO_GROUP_SET_CONTAINER, fdArg())).toBe(0);
    // an IOAS set as the compat IOAS by hand, after the context became no-IOMMU
    const alloc = uapi.encode(uapi.iommu_ioas_alloc, { size: 12 });
    expect(p.ioctl(iommufd, uapi.IOMMU_IOAS_ALLOC, alloc)).toBe(0);
    const ioas = uapi.decode(uapi.iommu_ioas_alloc, alloc).out_ioas_id;
    const set = uapi.encode(uapi.iommu_vfio_ioas, { size: 12, ioas_id: ioas, op: uapi.IOMMU_VFIO_IOAS_SET });
    expect(p.ioctl(iommufd, uapi.IOMMU_VFIO_IOAS, set)).toBe(0);
    const before = m.debug.counters();
    const g1 = p.open(`/dev/vfio/${realGroup}`);
    expect(p.ioctl(g1, uapi.VFIO_GROUP_SET_CONTAINER, fdArg())).toBe(-errno.EINVAL);
    expect(p.lastError()?.reason).toMatch(/no-IOMMU/);
    // the IOAS allocated and dropped on the way leaves no object and no ID behind
    expect(m.debug.counters().objects).toBe(before.objects);
    const again = uapi.encode(uapi.iommu_ioas_alloc, { size: 12 });
    expect(p.ioctl(iommufd, uapi.IOMMU_IOAS_ALLOC, again)).toBe(0);
    expect(uapi.decode(uapi.iommu_ioas_alloc, again).out_ioas_id).toBe(ioas + 1n);
    expect(m.debug.checkInvariants()).toEqual([]);
    p.exit();
    expect(m.debug.counters().objects).toBe(0);
  });
});
