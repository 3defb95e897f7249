// IOMMU_IOAS_NOIOMMU_GET_PA: check order, revisions, the contiguity rule,
// and which IOASes answer (only one stored in the noiommu software domain).
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import {
  EINVAL,
  ENOENT,
  ENOTTY,
  EOPNOTSUPP,
  EOVERFLOW,
  EPERM,
  IOMMU_IOAS_GET_PA,
  IOMMU_IOAS_NOIOMMU_GET_PA,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_unmap,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
} from "../../src/uapi/index.js";
import { openCdev, sioctl } from "../e2e/driver.js";
import { anon, attach, boot, getPa, huge2m, ioasAlloc, mapFixed, openBound, RAWIO } from "./helpers.js";

const MIB2 = 2n << 20n;

function mapped(opts: Parameters<typeof boot>[0] = {}) {
  const { m, p } = boot(opts);
  const o = openBound(p);
  const ioas = ioasAlloc(p, o.iommufd);
  expect(attach(o, ioas).ret).toBe(0);
  return { m, p, o, ioas };
}

describe("GET_PA numbers", () => {
  it("nr 0x95, request 0x3b95, and the seed's IOMMU_IOAS_GET_PA is the same request", () => {
    expect(IOMMU_IOAS_NOIOMMU_GET_PA).toBe(0x3b95);
    expect(IOMMU_IOAS_GET_PA).toBe(IOMMU_IOAS_NOIOMMU_GET_PA);
  });

  it("is ENOTTY on a kernel without IOMMUFD_NOIOMMU (the ioctl is compiled out)", () => {
    const m = new Machine({ iommu: "amd", kconfig: { VFIO_NOIOMMU: false } });
    expect(m.kconfig.IOMMUFD_NOIOMMU).toBe(false);
    const p = m.spawn({ caps: RAWIO });
    const fd = p.open("/dev/iommu");
    expect(getPa(p, fd, 1, 0n, 4096n).ret).toBe(-ENOTTY);
  });
});

describe("GET_PA errors in the series' order, each leaving nothing changed", () => {
  it("EPERM without CAP_SYS_RAWIO comes first (even with bad flags and length 0)", () => {
    const { m, p, o, ioas } = mapped();
    const q = m.spawn();
    const fd = q.open("/dev/iommu");
    expect(getPa(q, fd, 99, 0n, 0n, { flags: 1 }).ret).toBe(-EPERM);
    void p;
    void o;
    void ioas;
  });

  it("EOPNOTSUPP for flags or __reserved, before the length check", () => {
    const { p, o, ioas } = mapped();
    expect(getPa(p, o.iommufd, ioas, 0n, 0n, { flags: 1 }).ret).toBe(-EOPNOTSUPP);
    expect(getPa(p, o.iommufd, ioas, 0n, 0n, { reserved: 1 }).ret).toBe(-EOPNOTSUPP);
  });

  it("v9: length 0 is EINVAL, before EOVERFLOW and the IOAS lookup", () => {
    const { p, o } = mapped();
    expect(getPa(p, o.iommufd, 999, (1n << 64n) - 1n, 0n).ret).toBe(-EINVAL);
  });

  it("EOVERFLOW for iova ULONG_MAX, before the IOAS lookup", () => {
    const { p, o } = mapped();
    expect(getPa(p, o.iommufd, 999, (1n << 64n) - 1n, 4096n).ret).toBe(-EOVERFLOW);
  });

  it("ENOENT for an unknown IOAS id or a non-IOAS object", () => {
    const { p, o, ioas } = mapped();
    expect(getPa(p, o.iommufd, 999, 0n, 4096n).ret).toBe(-ENOENT);
    expect(getPa(p, o.iommufd, o.devid, 0n, 4096n).ret).toBe(-ENOENT);
    void ioas;
  });

  it("ENOENT for an IOVA no area holds; the IOAS is then not even asked for its domain", () => {
    const { m, p } = boot();
    const fd = p.open("/dev/iommu");
    const ioas = ioasAlloc(p, fd);
    // Nothing attached and nothing mapped: the area lookup fails first.
    expect(getPa(p, fd, ioas, 0x1000n, 4096n).ret).toBe(-ENOENT);
    void m;
  });

  it("EOPNOTSUPP for a mapped IOVA of an IOAS with no domain (nothing attached)", () => {
    const { m, p } = boot();
    const fd = p.open("/dev/iommu");
    const ioas = ioasAlloc(p, fd);
    expect(mapFixed(p, fd, ioas, anon(p, 8192), 8192n, 0x1000n)).toBe(0);
    const before = m.debug.counters();
    expect(getPa(p, fd, ioas, 0x1000n, 4096n).ret).toBe(-EOPNOTSUPP);
    expect(m.debug.counters()).toEqual(before);
  });

  it("EOPNOTSUPP for an IOAS backed by a real IOMMU (an AMD machine)", () => {
    const m = new Machine({ iommu: "amd" });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    const p = m.spawn({ caps: RAWIO, rlimitMemlock: 64n << 20n });
    const o = openCdev(m, p);
    expect(mapFixed(p, o.iommufd, o.ioas, anon(p, 4096), 4096n, 0x1000n)).toBe(0);
    expect(getPa(p, o.iommufd, o.ioas, 0x1000n, 4096n).ret).toBe(-EOPNOTSUPP);
  });
});

describe("GET_PA results", () => {
  it("the PA is the process's page: writing through the VA shows up at the PA", () => {
    const { m, p, o, ioas } = mapped();
    const va = anon(p, 4096, 0);
    expect(mapFixed(p, o.iommufd, ioas, va, 4096n, 0x10_0000n)).toBe(0);
    expect(p.writeMemory(va + 0x123n, new TextEncoder().encode("noiommu"))).toBe(0);
    const r = getPa(p, o.iommufd, ioas, 0x10_0123n, 4096n);
    expect(r.ret).toBe(0);
    expect(new TextDecoder().decode(m.debug.readPhys(r.phys, 7))).toBe("noiommu");
    // The run ends on the page boundary: 4096 - 0x123 bytes.
    expect(r.length).toBe(4096n - 0x123n);
  });

  it("a 2 MiB hugepage is one contiguous run; an IOVA inside it gets the rest of it", () => {
    const { p, o, ioas } = mapped();
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), MIB2, 0x40_0000n)).toBe(0);
    const a = getPa(p, o.iommufd, ioas, 0x40_0000n, MIB2);
    expect(a.length).toBe(MIB2);
    expect(a.phys % MIB2).toBe(0n);
    const b = getPa(p, o.iommufd, ioas, 0x40_0000n + 0x1_2345n, MIB2);
    expect(b.phys).toBe(a.phys + 0x1_2345n);
    expect(b.length).toBe(MIB2 - 0x1_2345n);
  });

  it("length caps the run (v9), and the cap may cut it inside a page", () => {
    const { p, o, ioas } = mapped();
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), MIB2, 0x40_0000n)).toBe(0);
    expect(getPa(p, o.iommufd, ioas, 0x40_0000n, 2048n).length).toBe(2048n);
    expect(getPa(p, o.iommufd, ioas, 0x40_0000n, 3n * 4096n).length).toBe(3n * 4096n);
    expect(getPa(p, o.iommufd, ioas, 0x40_0000n, 1n << 40n).length).toBe(MIB2);
  });

  it("never runs past the area, even when the next area is physically adjacent", () => {
    const { p, o, ioas } = mapped();
    const va = huge2m(p);
    // Two areas over one physically contiguous hugepage, back to back in IOVA.
    expect(mapFixed(p, o.iommufd, ioas, va, MIB2 / 2n, 0x40_0000n)).toBe(0);
    expect(mapFixed(p, o.iommufd, ioas, va + MIB2 / 2n, MIB2 / 2n, 0x40_0000n + MIB2 / 2n)).toBe(0);
    const r = getPa(p, o.iommufd, ioas, 0x40_0000n, MIB2);
    expect(r.length).toBe(MIB2 / 2n);
  });

  it("stops where 4 KiB pages stop being physically contiguous; only the start must be mapped", () => {
    const { m, p, o, ioas } = mapped();
    const va = anon(p, 16 * 4096);
    expect(mapFixed(p, o.iommufd, ioas, va, 16n * 4096n, 0x80_0000n)).toBe(0);
    const r = getPa(p, o.iommufd, ioas, 0x80_0000n, 1n << 30n);
    expect(r.ret).toBe(0);
    // Count the physically contiguous run independently with per-page lookups.
    let expectLen = 4096n;
    for (let i = 1n; i < 16n; i++) {
      const q = getPa(p, o.iommufd, ioas, 0x80_0000n + i * 4096n, 4096n);
      if (q.phys !== r.phys + i * 4096n) break;
      expectLen += 4096n;
    }
    expect(r.length).toBe(expectLen);
    void m;
  });

  it("an IOVA that was unmapped is ENOENT again", () => {
    const { p, o, ioas } = mapped();
    expect(mapFixed(p, o.iommufd, ioas, anon(p, 4096), 4096n, 0x1000n)).toBe(0);
    expect(getPa(p, o.iommufd, ioas, 0x1000n, 4096n).ret).toBe(0);
    const u = sioctl(p, o.iommufd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap, {
      size: 24,
      ioas_id: ioas,
      iova: 0x1000n,
      length: 4096n,
    });
    expect(u.ret).toBe(0);
    expect(getPa(p, o.iommufd, ioas, 0x1000n, 4096n).ret).toBe(-ENOENT);
  });
});

describe("revisions (machine option noiommuRevision)", () => {
  it("v4: length is output only (the input is ignored, 0 works)", () => {
    const { p, o, ioas } = mapped({ noiommuRevision: "v4" });
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), MIB2, 0x40_0000n)).toBe(0);
    const r = getPa(p, o.iommufd, ioas, 0x40_0000n, 4096n);
    expect(r.ret).toBe(0);
    expect(r.length).toBe(MIB2);
    expect(getPa(p, o.iommufd, ioas, 0x40_0000n, 0n).length).toBe(MIB2);
  });

  it("v7: length is in/out; 0 and U64_MAX both mean no limit", () => {
    const { p, o, ioas } = mapped({ noiommuRevision: "v7" });
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), MIB2, 0x40_0000n)).toBe(0);
    const zero = getPa(p, o.iommufd, ioas, 0x40_0000n, 0n);
    const max = getPa(p, o.iommufd, ioas, 0x40_0000n, (1n << 64n) - 1n);
    expect(zero).toEqual(max);
    expect(zero.length).toBe(MIB2);
    const half = getPa(p, o.iommufd, ioas, 0x40_0000n, 2048n);
    expect(half.length).toBe(2048n);
  });

  it("v9 (default): length is a required upper bound", () => {
    const { m, p, o, ioas } = mapped();
    expect(m.ctx.noiommuRevision).toBe("v9");
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), MIB2, 0x40_0000n)).toBe(0);
    expect(getPa(p, o.iommufd, ioas, 0x40_0000n, 0n).ret).toBe(-EINVAL);
    expect(getPa(p, o.iommufd, ioas, 0x40_0000n, 8192n).length).toBe(8192n);
  });
});

describe("an IOAS shared by a noiommu device and a device behind a real IOMMU", () => {
  function mixed() {
    const m = new Machine({
      iommu: "amd",
      params: { "vfio.enable_unsafe_noiommu_mode": true },
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy" },
        { bdf: "0000:00:05.0", kind: "memcpy", noIommu: true },
      ],
    });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    const p = m.spawn({ caps: RAWIO, rlimitMemlock: 64n << 20n });
    const iommufd = p.open("/dev/iommu");
    const bind = (node: string) => {
      const dev = p.open(node);
      const b = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
      expect(b.ret).toBe(0);
      return { p, dev, iommufd, devid: Number(b.out.out_devid), cfg: 0n, bar0: 0n };
    };
    const real = bind("/dev/vfio/devices/vfio0");
    const noio = bind("/dev/vfio/devices/noiommu-vfio1");
    const ioas = ioasAlloc(p, iommufd);
    expect(mapFixed(p, iommufd, ioas, anon(p, 4096), 4096n, 0x1000n)).toBe(0);
    return { m, p, real, noio, ioas, iommufd };
  }

  it("noiommu first: its software domain stores the IOAS; the real device gets its own HWPT; GET_PA works", () => {
    const { m, p, real, noio, ioas, iommufd } = mixed();
    const a = attach(noio, ioas);
    const b = attach(real, ioas);
    expect(a.ret).toBe(0);
    expect(b.ret).toBe(0);
    // The AMD group refused the software domain (EINVAL), so the real device got a new auto HWPT.
    expect(b.ptId).not.toBe(a.ptId);
    expect(m.debug.hwpt(p, iommufd, b.ptId).format).toBe("amdv1");
    expect(getPa(p, iommufd, ioas, 0x1000n, 4096n).ret).toBe(0);
    // Detaching the noiommu device frees its HWPT: the IOAS is stored in the AMD domain now.
    expect(
      sioctl(p, noio.dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt, { argsz: 8 }, 8).ret,
    ).toBe(0);
    expect(getPa(p, iommufd, ioas, 0x1000n, 4096n).ret).toBe(-EOPNOTSUPP);
  });

  it("real device first: the noiommu device's no-op attach reuses the AMD auto HWPT; GET_PA is EOPNOTSUPP", () => {
    const { p, real, noio, ioas, iommufd } = mixed();
    const b = attach(real, ioas);
    const a = attach(noio, ioas);
    expect(a.ret).toBe(0);
    expect(a.ptId).toBe(b.ptId);
    expect(getPa(p, iommufd, ioas, 0x1000n, 4096n).ret).toBe(-EOPNOTSUPP);
  });
});
