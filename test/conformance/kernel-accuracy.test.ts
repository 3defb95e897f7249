// Behaviour pinned against drivers/iommu/iommufd (hw_pagetable.c, vfio_compat.c, io_pagetable.c, ioas.c).
import { describe, expect, it } from "vitest";
import * as U from "../../src/uapi/index.js";
import * as V from "../../src/uapi/vfio.js";
import {
  addReserved,
  call,
  expectErrno,
  ioasAlloc,
  map,
  mmap,
  mockDomain,
  ok,
  setup,
  U64_MAX,
  unmap,
} from "./helpers.js";

describe("IOMMU_HWPT_ALLOC reserved fields", () => {
  it("__reserved must be 0 (EOPNOTSUPP); __reserved2 is not checked", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const d = mockDomain(e, ioas);
    ok(e.p, d.rc);
    const bad = call(e.p, e.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
      dev_id: d.idev,
      pt_id: ioas,
      __reserved: 1,
    });
    expect(bad.rc).toBe(-U.EOPNOTSUPP);
    const r = call(e.p, e.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
      dev_id: d.idev,
      pt_id: ioas,
      __reserved2: 0xdead,
    });
    ok(e.p, r.rc);
    expect(r.out.out_hwpt_id).toBeGreaterThan(0n);
  });
});

// --- drivers/iommu/iommufd/vfio_compat.c, io_pagetable.c: the type1 compat unmap ---------

function compatSetup() {
  const e = setup();
  const ioas = ioasAlloc(e);
  ok(e.p, call(e.p, e.fd, U.IOMMU_VFIO_IOAS, U.iommu_vfio_ioas, { op: 1, ioas_id: ioas }).rc);
  return { e, ioas };
}

function compatUnmap(e: ReturnType<typeof setup>, iova: bigint, size: bigint, flags = 0) {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint32(0, 24, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, iova, true);
  v.setBigUint64(16, size, true);
  const rc = e.p.ioctl(e.fd, V.VFIO_IOMMU_UNMAP_DMA, b);
  return { rc, size: v.getBigUint64(16, true) };
}

describe("VFIO_IOMMU_UNMAP_DMA on iommufd: what is written back on failure", () => {
  it("a range that bisects an area: ENOENT, and size holds the bytes of the areas already unmapped (iommufd_vfio_unmap_dma)", () => {
    const { e, ioas } = compatSetup();
    const va = mmap(e, 0x6000n);
    ok(e.p, map(e, ioas, va, 0x2000n, 0x100000n).rc);
    ok(e.p, map(e, ioas, va + 0x2000n, 0x4000n, 0x110000n).rc);
    const r = compatUnmap(e, 0x100000n, 0x12000n);
    expectErrno(e.p, r.rc, U.ENOENT);
    expect(r.size).toBe(0x2000n);
    // The first area is gone, the bisected one stays.
    expect(unmap(e, ioas, 0x100000n, 0x2000n).rc).toBe(-U.ENOENT);
    expect(unmap(e, ioas, 0x110000n, 0x4000n).length).toBe(0x4000n);
  });

  it("size 0 (EINVAL) and a wrapping range (EOVERFLOW) still write size = 0", () => {
    const { e } = compatSetup();
    const r = compatUnmap(e, 0x1000n, U64_MAX - 0x10n);
    expectErrno(e.p, r.rc, U.EOVERFLOW);
    expect(r.size).toBe(0n);
  });

  it("UNMAP_ALL with a non-zero size: EINVAL before anything is written", () => {
    const { e } = compatSetup();
    const r = compatUnmap(e, 0n, 0x1000n, 2);
    expectErrno(e.p, r.rc, U.EINVAL);
    expect(r.size).toBe(0x1000n);
  });

  it("TYPE1 (v1): a cut point on an area's first byte is no cut (iopt_area_split), the unmap then says ENOENT", () => {
    const { e, ioas } = compatSetup();
    ok(e.p, e.p.ioctl(e.fd, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1_IOMMU)));
    const va = mmap(e, 0x4000n);
    ok(e.p, map(e, ioas, va, 0x4000n, 0x200000n).rc);
    // Points: 0x202fff (a page-aligned cut) and 0x200000 (the area's first byte: nothing to do).
    const r = compatUnmap(e, 0x200001n, 0x2fffn);
    expectErrno(e.p, r.rc, U.ENOENT);
    expect(r.size).toBe(0n);
  });
});

describe("VFIO_IOMMU_MAP_DMA on a /dev/iommu context: accounting", () => {
  it("charges per user like IOAS_MAP (iommufd_vfio_map_dma -> iopt_map_user_pages keeps the context's mode)", () => {
    const { e, ioas } = compatSetup();
    ok(e.p, mockDomain(e, ioas).rc);
    const va = mmap(e, 0x4000n);
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    v.setUint32(0, 32, true);
    v.setUint32(4, 3, true);
    v.setBigUint64(8, va, true);
    v.setBigUint64(16, 0x1000000n, true);
    v.setBigUint64(24, 0x4000n, true);
    ok(e.p, e.p.ioctl(e.fd, V.VFIO_IOMMU_MAP_DMA, b));
    const mm = e.p.task.mm as unknown as { pinnedVm: number; lockedVm: number; user: { lockedVm: number } };
    expect([mm.pinnedVm, mm.lockedVm, mm.user.lockedVm]).toEqual([4, 0, 4]);
  });
});

describe("VFIO_IOMMU_GET_INFO on iommufd: what is written", () => {
  function getInfo(e: ReturnType<typeof setup>, argsz: number, bufLen: number) {
    const b = new Uint8Array(bufLen).fill(0xaa);
    new DataView(b.buffer).setUint32(0, argsz, true);
    const rc = e.p.ioctl(e.fd, V.VFIO_IOMMU_GET_INFO, b);
    return { rc, b, v: new DataView(b.buffer) };
  }

  it("pad (bytes 20..23) comes back 0: only 16 bytes are read (iommufd_vfio_iommu_get_info)", () => {
    const { e } = compatSetup();
    const r = getInfo(e, 24, 24);
    ok(e.p, r.rc);
    expect(r.v.getUint32(20, true)).toBe(0);
  });

  it("an IOVA_RANGE cap too small for every range still gets the ranges that fit, but no header (iommufd_fill_cap_iova)", () => {
    const { e, ioas } = compatSetup();
    ok(e.p, mockDomain(e, ioas).rc); // the mock aperture leaves one hole
    ok(e.p, addReserved(e, ioas, 0x4000000n, 0x1000n)); // now two holes
    const full = getInfo(e, 24, 24).v.getUint32(0, true);
    expect(full).toBe(24 + 16 + 16 + 2 * 16);
    // Room for DMA_AVAIL (16), the IOVA cap header (16) and one range (16), and 15 bytes more.
    const r = getInfo(e, full - 1, full);
    ok(e.p, r.rc);
    const cap = 24 + 16;
    expect(r.v.getUint16(cap, true)).toBe(0xaaaa); // no header
    expect(r.v.getBigUint64(cap + 16, true)).toBe(1n << 24n); // range 0: the aperture start
    expect(r.v.getBigUint64(cap + 24, true)).toBe(0x4000000n - 1n);
    expect(r.v.getBigUint64(cap + 32, true)).toBe(0xaaaaaaaaaaaaaaaan); // range 1 did not fit
    expect(r.v.getUint32(16, true)).toBe(0); // cap_offset: not everything fit
    expect(r.v.getUint32(0, true)).toBe(full);
  });
});

describe("IOMMU_IOAS_CHANGE_PROCESS: the pages keep their account mode", () => {
  it("a child with CAP_IPC_LOCK takes over per-user charged pages still charged per user (need_charge_update, charge_current)", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    const mfd = e.p.memfdCreate("cp");
    ok(e.p, e.p.ftruncate(mfd, 2n * 4096n));
    const r = call(e.p, e.fd, U.IOMMU_IOAS_MAP_FILE, U.iommu_ioas_map_file, {
      flags: 6,
      ioas_id: ioas,
      fd: mfd,
      length: 2n * 4096n,
    });
    ok(e.p, r.rc);
    const c = e.p.fork();
    if (typeof c === "number") throw new Error("fork");
    c.cred.caps.add("CAP_IPC_LOCK");
    type Mm = { pinnedVm: number; lockedVm: number; user: { lockedVm: number } };
    const pm = e.p.task.mm as unknown as Mm;
    const cm = c.task.mm as unknown as Mm;
    expect(pm.user).toBe(cm.user);
    ok(c, call(c, e.fd, U.IOMMU_IOAS_CHANGE_PROCESS, U.iommu_ioas_change_process, {}).rc);
    // Still IOPT_PAGES_ACCOUNT_USER: the user's locked_vm keeps the 2 pages; pinned_vm moved.
    expect([pm.pinnedVm, cm.pinnedVm, cm.user.lockedVm]).toEqual([0, 2, 2]);
    expect(e.m.debug.checkInvariants()).toEqual([]);
  });
});

describe("close of /dev/iommu: the order objects go", () => {
  it("leaf objects are destroyed in ID order, a reused low ID first (iommufd_fops_release, xa_for_each)", () => {
    const e = setup();
    const a = ioasAlloc(e);
    const b = ioasAlloc(e);
    expect(call(e.p, e.fd, U.IOMMU_DESTROY, U.iommu_destroy, { id: a }).rc).toBe(0);
    const c = ioasAlloc(e); // reuses a's ID
    expect(c).toBe(a);
    const ictx = e.p.task.fdget(e.fd).priv as { objects: { values(): { id: number; destroy(): void }[] } };
    const order: number[] = [];
    for (const o of ictx.objects.values()) {
      const d = o.destroy.bind(o);
      o.destroy = () => {
        order.push(o.id);
        d();
      };
    }
    e.p.exit();
    expect(order).toEqual([c, b]);
  });
});

describe("IOAS_MAP / IOAS_COPY: a failed copy-back keeps the mapping", () => {
  it("EFAULT from the response leaves the area mapped (iommufd_ioas_map, iommufd_ioas_copy do not undo)", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const va = mmap(e, 0x4000n);
    // fail_nth counts fault sites; find the one that is the respond copy_to_user.
    let n = 1;
    for (; ; n++) {
      e.m.debug.failNth(n);
      const r = map(e, ioas, va, 0x2000n, 0x100000n);
      const fired = e.m.debug.failNthFired();
      e.m.debug.failNth(0);
      if (fired === "copy_to_user") {
        expectErrno(e.p, r.rc, U.EFAULT);
        break;
      }
      if (fired === undefined) throw new Error("no copy_to_user site");
      expect(r.rc).toBeLessThan(0);
    }
    expect(unmap(e, ioas, 0x100000n, 0x2000n).length).toBe(0x2000n);
    ok(e.p, map(e, ioas, va, 0x2000n, 0x100000n).rc);
    for (n = 1; ; n++) {
      e.m.debug.failNth(n);
      const r = call(e.p, e.fd, U.IOMMU_IOAS_COPY, U.iommu_ioas_copy, {
        flags: 7,
        dst_ioas_id: ioas,
        src_ioas_id: ioas,
        length: 0x1000n,
        dst_iova: 0x200000n,
        src_iova: 0x100000n,
      });
      const fired = e.m.debug.failNthFired();
      e.m.debug.failNth(0);
      if (fired === "copy_to_user") {
        expectErrno(e.p, r.rc, U.EFAULT);
        break;
      }
      if (fired === undefined) throw new Error("no copy_to_user site");
    }
    expect(unmap(e, ioas, 0x200000n, 0x1000n).length).toBe(0x1000n);
  });
});
