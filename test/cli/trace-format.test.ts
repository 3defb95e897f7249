import { describe, expect, it } from "vitest";
import { formatTraceEvent } from "../../src/cli/trace-format.js";
import { Machine, uapi } from "../../src/index.js";

function traced(m: Machine): string[] {
  return m.debug.trace().map((e) => formatTraceEvent(e));
}

describe("the trace printer", () => {
  it("decodes fd and name arguments of the group ioctls", () => {
    const m = new Machine({ trace: true });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    const p = m.spawn();
    const container = p.open("/dev/vfio/vfio");
    const group = p.open(`/dev/vfio/${m.listDir("/dev/vfio").find((n) => /^\d+$/.test(n))}`);
    const fdBuf = new Uint8Array(4);
    new DataView(fdBuf.buffer).setInt32(0, container, true);
    expect(p.ioctl(group, uapi.VFIO_GROUP_SET_CONTAINER, fdBuf)).toBe(0);
    expect(p.ioctl(container, uapi.VFIO_SET_IOMMU, BigInt(uapi.VFIO_TYPE1v2_IOMMU))).toBe(0);
    const name = new TextEncoder().encode("0000:00:04.0\0");
    expect(p.ioctl(group, uapi.VFIO_GROUP_GET_DEVICE_FD, name)).toBe(2);
    const lines = traced(m);
    expect(lines).toContain(`[pid ${p.pid}] ioctl(1, VFIO_GROUP_SET_CONTAINER, [0]) = 0`);
    expect(lines).toContain(`[pid ${p.pid}] ioctl(0, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) = 0`);
    expect(lines).toContain(`[pid ${p.pid}] ioctl(1, VFIO_GROUP_GET_DEVICE_FD, "0000:00:04.0") = 2`);
  });

  it("names container commands by the backend: sPAPR numbers are not type1's", () => {
    const m = new Machine({ iommu: "spapr", trace: true });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    const p = m.spawn();
    const container = p.open("/dev/vfio/vfio");
    const group = p.open(`/dev/vfio/${m.listDir("/dev/vfio").find((n) => /^\d+$/.test(n))}`);
    const fdBuf = new Uint8Array(4);
    new DataView(fdBuf.buffer).setInt32(0, container, true);
    expect(p.ioctl(group, uapi.VFIO_GROUP_SET_CONTAINER, fdBuf)).toBe(0);
    expect(p.ioctl(container, uapi.VFIO_SET_IOMMU, BigInt(uapi.VFIO_SPAPR_TCE_v2_IOMMU))).toBe(0);
    const info = uapi.encode(uapi.vfio_iommu_spapr_tce_info, { argsz: uapi.vfio_iommu_spapr_tce_info.size });
    expect(p.ioctl(container, uapi.VFIO_IOMMU_SPAPR_TCE_GET_INFO, info)).toBe(0);
    const line = traced(m).find((l) => l.includes("ioctl(0, VFIO_IOMMU_SPAPR_TCE_GET_INFO, {argsz="));
    expect(line).toMatch(/flags=DDW, dma32_window_start=0x0/);
  });

  it("prints failures with the errno name and the rule", () => {
    const m = new Machine({ trace: true });
    const p = m.spawn();
    const fd = p.open("/dev/iommu");
    p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, uapi.encode(uapi.iommu_ioas_alloc, { size: 12, flags: 1 }));
    const line = traced(m).at(-1)!;
    expect(line).toMatch(
      /^\[pid \d+\] ioctl\(0, IOMMU_IOAS_ALLOC, \{size=12, flags=0x1.*\}\) = -1 EOPNOTSUPP \(.+\)$/,
    );
  });
});
