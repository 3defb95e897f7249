// `npm start` = `iommufd-sim demo noiommu`: the walk-through a person reads.
import { describe, expect, it } from "vitest";
import { cli } from "../cli/helpers.js";

describe("iommufd-sim demo noiommu", () => {
  it("decodes every syscall and tells the story in order", async () => {
    const r = await cli(["demo", "noiommu"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = r.stdout;
    const order = [
      "bind_driver 0000:00:04.0 vfio-pci",
      'open("/dev/vfio/devices/noiommu-vfio0", O_RDWR) = ',
      "VFIO_DEVICE_BIND_IOMMUFD, {argsz=24",
      "IOMMU_IOAS_ALLOC",
      "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
      "MAP_HUGETLB",
      "IOMMU_IOAS_MAP, {size=40, flags=FIXED_IOVA|WRITEABLE|READABLE",
      "IOMMU_IOAS_NOIOMMU_GET_PA, {size=40, flags=0, ioas_id=2, iova=0x200000, length=0x200000, out_phys=0x",
      "-> status=2",
      "|copied by physical address|",
      "IOMMU_IOAS_UNMAP",
      "What the DMA sanitizer saw",
      "use after unmap",
    ];
    let at = 0;
    for (const s of order) {
      const i = out.indexOf(s, at);
      expect(i, `"${s}" after offset ${at}`).toBeGreaterThanOrEqual(0);
      at = i;
    }
  });

  it("is deterministic: two runs print the same text", async () => {
    const a = await cli(["demo", "noiommu"]);
    const b = await cli(["demo", "noiommu"]);
    expect(a.stdout).toBe(b.stdout);
  });
});
