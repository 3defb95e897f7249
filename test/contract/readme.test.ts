import { expect, it } from "vitest";
import { errno, Machine, uapi } from "../../src/index.js";

// The README's "A first program", line for line: it must stay true.
it("the README's first program does what the README says", () => {
  const m = new Machine({ iommu: "amd", memoryBytes: 4n << 30n, seed: 1 });
  const p = m.spawn({ caps: ["CAP_SYS_RAWIO"], rlimitMemlock: 64n << 20n });

  const fd = p.open("/dev/iommu");
  const alloc = uapi.encode(uapi.iommu_ioas_alloc, { size: 12 });
  expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, alloc)).toBe(0);
  const ioasId = uapi.decode(uapi.iommu_ioas_alloc, alloc).out_ioas_id;
  expect(ioasId).toBe(1n);

  const bad = uapi.encode(uapi.iommu_ioas_alloc, { size: 8 });
  expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, bad)).toBe(-errno.EINVAL);
  expect(p.lastError()).toMatchObject({ call: "ioctl", name: "EINVAL" });
  p.exit();
  expect(m.debug.counters()).toMatchObject({ pinnedPages: 0, objects: 0, openFiles: 0 });
});
