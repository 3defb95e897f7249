// The DMA-free VMM flow on real-format IOMMUs: IOAS alloc -> bind -> attach ->
// MAP guest RAM in 2 MiB hugetlb pages -> IOVA_RANGES -> UNMAP all -> close.
// Until VFIO lands the device is bound through the in-kernel API VFIO uses.
import { describe, expect, it } from "vitest";
import {
  iommufdCtxFromFile,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceUnbind,
} from "../../src/iommufd/index.js";
import { EEXIST, EINVAL } from "../../src/uapi/errno.js";
import { call, expectErrno, ioasAlloc, map, ok, setup, state, touch, U, U64_MAX, unmap } from "./helpers.js";

const MB2 = 2n << 20n;

describe.each(["amd", "intel"] as const)("VMM flow on %s", (iommu) => {
  it("maps 64 MiB of 2 MiB hugetlb guest RAM as 2 MiB IOPTEs and tears down cleanly", () => {
    const e = setup({ iommu, kconfig: {}, memoryBytes: 4n << 30n, caps: ["CAP_IPC_LOCK"] });
    const ioas = ioasAlloc(e);
    const ictx = iommufdCtxFromFile(e.p.task.fdget(e.fd));
    const dev = e.m.iommu.device("0000:00:04.0");
    const idev = iommufdDeviceBind(ictx, dev);
    const hwpt = iommufdDeviceAttach(idev, ioas);
    expect(hwpt).toBeGreaterThan(ioas);
    // IOVA_RANGES: the MSI window is reserved.
    const rbuf = e.p.mmap(0n, 4096n, 3, 0x22);
    const r = call(e.p, e.fd, U.IOMMU_IOAS_IOVA_RANGES, U.iommu_ioas_iova_ranges, {
      ioas_id: ioas,
      num_iovas: 8,
      allowed_iovas: rbuf,
    });
    ok(e.p, r.rc);
    expect(r.out.out_iova_alignment).toBe(4096n);
    const ranges = e.p.readMemory(rbuf, Number(r.out.num_iovas) * 16) as Uint8Array;
    const dv = new DataView(ranges.buffer);
    const list = [...Array(Number(r.out.num_iovas)).keys()].map((i) => [
      dv.getBigUint64(16 * i, true),
      dv.getBigUint64(16 * i + 8, true),
    ]);
    expect(list.some(([s, l]) => s <= 0xfee00000n && l >= 0xfee00000n)).toBe(false);
    // Guest RAM: 64 MiB of MAP_HUGETLB.
    const len = 64n << 20n;
    const ram = e.p.mmap(0n, len, 3, 0x22 | 0x40000);
    expect(ram > 0n).toBe(true);
    touch(e, ram, 4096n);
    const m = map(e, ioas, ram, len, 0n);
    ok(e.p, m.rc);
    expect(e.m.debug.counters().pinnedPages).toBe(Number(len / 4096n));
    // Huge IOPTEs: every leaf is 2 MiB.
    const pt = dev!.domain.pt!;
    const sizes = new Set<number>();
    pt.leaves((_iova, _pa, l) => sizes.add(l * 2 ** pt.unitLg2));
    expect([...sizes]).toEqual([Number(MB2)]);
    const info = e.m.debug.hwpt(e.p, e.fd, hwpt);
    expect(info.format).toBe(iommu === "amd" ? "amdv1" : "vtdss");
    expect(e.m.debug.checkInvariants()).toEqual([]);
    // Mapping over it again: EEXIST, nothing changes.
    const before = state(e);
    expectErrno(e.p, map(e, ioas, ram, MB2, MB2).rc, EEXIST);
    expectErrno(e.p, map(e, ioas, ram, MB2, 0xfee00000n).rc, EINVAL);
    expect(state(e)).toEqual(before);
    const u = unmap(e, ioas, 0n, U64_MAX);
    ok(e.p, u.rc);
    expect(u.length).toBe(len);
    expect(e.m.debug.counters().pinnedPages).toBe(0);
    iommufdDeviceUnbind(idev);
    ok(e.p, e.p.close(e.fd));
    const c = e.m.debug.counters();
    expect([c.objects, c.areas, c.pinnedPages, c.ptFrames]).toEqual([0, 0, 0, e.base.ptFrames]);
    expect(e.m.debug.checkInvariants()).toEqual([]);
    e.p.exit();
  });
});
