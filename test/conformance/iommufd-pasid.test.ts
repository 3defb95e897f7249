import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { EBUSY, EINVAL, ENOENT, ENOMEM, ENOSPC } from "../../src/uapi/errno.js";
import { decode, encode, type StructDef } from "../../src/uapi/struct.js";
import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
} from "../../src/uapi/vfio.js";
import {
  ALLOC_PASID,
  call,
  destroy,
  type Env,
  expectErrno,
  expectNoLeaks,
  FAULT_ID_VALID,
  faultAlloc,
  hwptAlloc,
  IOMMU_VIOMMU_TYPE_SELFTEST,
  ioasAlloc,
  MOCK_FLAGS_DEVICE_PASID,
  mockDomain,
  NEST_PARENT,
  nestedAlloc,
  ok,
  pasidAttach,
  pasidCheck,
  pasidDetach,
  pasidReplace,
  replace,
  setup,
  snap,
  state,
  triggerIopf,
  U,
  u32s,
  viommuAlloc,
} from "./helpers.js";

// Catalogue Part B line 61 (fixture iommufd_device_pasid, variants no_pasid
// and has_pasid) against tools/testing/selftests/iommu/iommufd.c, the rules
// of iommufd-semantics.md §13.5, and the VFIO cdev PASID flag.

function fails(e: Env, errno: number, fn: () => number | bigint): void {
  const before = snap(e);
  expectErrno(e.p, fn(), errno);
  expect(snap(e)).toEqual(before);
}

describe("iommufd_device_pasid (61)", () => {
  for (const pasidCapable of [false, true]) {
    it(`pasid_attach (${pasidCapable ? "has_pasid" : "no_pasid"})`, () => {
      const e = setup();
      const ioas = ioasAlloc(e);
      const md = mockDomain(e, ioas, MOCK_FLAGS_DEVICE_PASID);
      ok(e.p, md.rc);
      let noPasidStdev = 0;
      if (!pasidCapable) {
        const np = mockDomain(e, ioas, 0);
        ok(e.p, np.rc);
        noPasidStdev = np.stdev;
      }
      const dev = md.idev;
      let pasid = 100;
      // Detaching an unattached PASID is harmless.
      ok(e.p, pasidDetach(e, md.stdev, pasid));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));

      const fq = faultAlloc(e);
      ok(e.p, fq.rc);
      const parent = hwptAlloc(e, dev, ioas, NEST_PARENT);
      ok(e.p, parent.rc);
      const nested = [
        nestedAlloc(e, dev, parent.id, ALLOC_PASID),
        nestedAlloc(e, dev, parent.id, ALLOC_PASID),
      ];
      for (const n of nested) ok(e.p, n.rc);
      const iopf = nestedAlloc(e, dev, parent.id, FAULT_ID_VALID | ALLOC_PASID, fq.id);
      ok(e.p, iopf.rc);
      const viommu = viommuAlloc(e, dev, parent.id, IOMMU_VIOMMU_TYPE_SELFTEST);
      ok(e.p, viommu.rc);
      const vnested = nestedAlloc(e, dev, viommu.id, ALLOC_PASID);
      ok(e.p, vnested.rc);
      const s2 = hwptAlloc(e, dev, ioas, ALLOC_PASID);
      ok(e.p, s2.rc);

      // RID on a non-compatible HWPT: no PASID attach.
      ok(e.p, replace(e, md.stdev, parent.id));
      fails(e, EINVAL, () => pasidAttach(e, md.stdev, pasid, s2.id));
      // RID on a compatible one: the PASID attaches, and the RID may not move back.
      ok(e.p, replace(e, md.stdev, s2.id));
      ok(e.p, pasidAttach(e, md.stdev, pasid, nested[0].id));
      fails(e, EINVAL, () => replace(e, md.stdev, parent.id));
      // The attached HWPT is held.
      fails(e, EBUSY, () => destroy(e, nested[0].id));
      ok(e.p, pasidDetach(e, md.stdev, pasid));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));

      if (!pasidCapable) {
        // A PASID-compatible HWPT is fine on a non-PASID device's RID, but none of its PASIDs attach.
        ok(e.p, replace(e, noPasidStdev, nested[0].id));
        ok(e.p, replace(e, noPasidStdev, ioas));
        fails(e, EINVAL, () => pasidAttach(e, noPasidStdev, pasid, parent.id));
        fails(e, EINVAL, () => pasidAttach(e, noPasidStdev, pasid, s2.id));
      }
      fails(e, EINVAL, () => pasidAttach(e, md.stdev, pasid, parent.id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));
      fails(e, EINVAL, () => pasidAttach(e, md.stdev, pasid, ioas));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));
      fails(e, ENOENT, () => pasidAttach(e, md.stdev, pasid, 0xffff));
      // Beyond the device's 20-bit PASID space.
      fails(e, EINVAL, () => pasidAttach(e, md.stdev, 1 << 20, s2.id));
      ok(e.p, pasidAttach(e, md.stdev, pasid, s2.id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, s2.id));
      fails(e, EINVAL, () => pasidCheck(e, md.stdev, pasid, nested[0].id));
      // Attach does not overwrite: EBUSY (use replace), also with the same HWPT or an IOAS.
      fails(e, EBUSY, () => pasidAttach(e, md.stdev, pasid, nested[0].id));
      fails(e, EBUSY, () => pasidAttach(e, md.stdev, pasid, s2.id));
      fails(e, EBUSY, () => pasidAttach(e, md.stdev, pasid, ioas));
      ok(e.p, pasidDetach(e, md.stdev, pasid));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));
      ok(e.p, pasidAttach(e, md.stdev, pasid, nested[0].id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, nested[0].id));
      fails(e, EBUSY, () => pasidAttach(e, md.stdev, pasid, nested[0].id));
      ok(e.p, pasidDetach(e, md.stdev, pasid));

      // Replace.
      pasid = 200;
      fails(e, EINVAL, () => pasidReplace(e, md.stdev, pasid, s2.id));
      ok(e.p, pasidAttach(e, md.stdev, pasid, s2.id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, s2.id));
      fails(e, EINVAL, () => pasidReplace(e, md.stdev, pasid, ioas));
      ok(e.p, pasidCheck(e, md.stdev, pasid, s2.id));
      fails(e, EINVAL, () => pasidReplace(e, md.stdev, pasid, parent.id));
      ok(e.p, pasidReplace(e, md.stdev, pasid, nested[0].id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, nested[0].id));
      ok(e.p, pasidReplace(e, md.stdev, pasid, nested[0].id));
      ok(e.p, pasidReplace(e, md.stdev, pasid, nested[1].id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, nested[1].id));
      // The references moved: the old HWPT is free, the new one held.
      fails(e, EBUSY, () => destroy(e, nested[1].id));
      ok(e.p, pasidDetach(e, md.stdev, pasid));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));

      // PASID 1024: the mock fails every second set_dev_pasid; replace keeps the old domain.
      pasid = 1024;
      ok(e.p, pasidAttach(e, md.stdev, pasid, s2.id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, s2.id));
      fails(e, ENOMEM, () => pasidReplace(e, md.stdev, pasid, nested[0].id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, s2.id));
      ok(e.p, pasidDetach(e, md.stdev, pasid));
      ok(e.p, pasidCheck(e, md.stdev, pasid, 0));

      // An IOPF-capable HWPT on PASID 2048: the request carries the PASID.
      pasid = 2048;
      ok(e.p, pasidAttach(e, md.stdev, pasid, iopf.id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, iopf.id));
      ok(e.p, triggerIopf(e, dev, pasid));
      const b = e.p.read(fq.fd, 40) as Uint8Array;
      expect(b.length).toBe(40);
      const dv = new DataView(b.buffer, b.byteOffset, 40);
      expect([dv.getUint32(0, true), dv.getUint32(4, true), dv.getUint32(8, true)]).toEqual([3, dev, 2048]);
      expect(e.p.write(fq.fd, u32s(dv.getUint32(36, true), 0))).toBe(8);
      // An unanswered request is answered INVALID by the replace.
      ok(e.p, triggerIopf(e, dev, pasid));
      ok(e.p, pasidReplace(e, md.stdev, pasid, s2.id));
      ok(e.p, pasidCheck(e, md.stdev, pasid, s2.id));
      expect(e.p.read(fq.fd, 40)).toEqual(new Uint8Array(0));
      // A vIOMMU-based nested HWPT on another PASID.
      ok(e.p, pasidAttach(e, md.stdev, 2049, vnested.id));
      ok(e.p, pasidCheck(e, md.stdev, 2049, vnested.id));

      // The RID cannot go to the (not PASID-compatible) automatic domain while PASIDs are attached.
      ok(e.p, pasidDetach(e, md.stdev, 2048));
      fails(e, EINVAL, () => replace(e, md.stdev, ioas));
      fails(e, EBUSY, () => destroy(e, vnested.id));
      // Destroying the device with PASID 2049 still attached releases it too.
      ok(e.p, destroy(e, md.stdev));
      for (const id of [vnested.id, viommu.id, iopf.id, nested[0].id, nested[1].id, s2.id, parent.id]) {
        ok(e.p, destroy(e, id));
      }
      expect(e.m.debug.checkInvariants()).toEqual([]);
      expectNoLeaks(e);
    });
  }

  it("a PASID of a closed context goes with it; the RID keeps the compat rule while PASIDs exist", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const md = mockDomain(e, ioas, MOCK_FLAGS_DEVICE_PASID);
    ok(e.p, md.rc);
    const s2 = hwptAlloc(e, md.idev, ioas, ALLOC_PASID);
    ok(e.p, s2.rc);
    const plain = hwptAlloc(e, md.idev, ioas);
    ok(e.p, plain.rc);
    // The RID on the automatic domain (not PASID-compatible): no PASID.
    fails(e, EINVAL, () => pasidAttach(e, md.stdev, 7, s2.id));
    ok(e.p, replace(e, md.stdev, s2.id));
    ok(e.p, pasidAttach(e, md.stdev, 7, s2.id));
    ok(e.p, pasidAttach(e, md.stdev, 8, s2.id));
    fails(e, EINVAL, () => replace(e, md.stdev, plain.id));
    fails(e, EINVAL, () => replace(e, md.stdev, ioas));
    expect(e.m.debug.checkInvariants()).toEqual([]);
    expectNoLeaks(e);
  });
});

describe("get_hw_info of a PASID-capable mock device (19)", () => {
  it("out_max_pasid_log2 is 20 for MOCK_FLAGS_DEVICE_PASID, 0 otherwise", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const plain = mockDomain(e, ioas);
    const pasid = mockDomain(e, ioas, MOCK_FLAGS_DEVICE_PASID);
    ok(e.p, plain.rc);
    ok(e.p, pasid.rc);
    const hw = (dev: number) => call(e.p, e.fd, U.IOMMU_GET_HW_INFO, U.iommu_hw_info, { dev_id: dev });
    expect(hw(plain.idev).out.out_max_pasid_log2).toBe(0n);
    expect(hw(pasid.idev).out.out_max_pasid_log2).toBe(20n);
    expectNoLeaks(e);
  });
});

describe("VFIO cdev: ATTACH/DETACH_IOMMUFD_PT with the PASID flag", () => {
  const BDF = "0000:00:04.0";

  /** A VFIO ioctl with an argsz struct of `size` bytes. */
  function vcall(
    e: { p: Env["p"] },
    fd: number,
    req: number,
    def: StructDef,
    v: Record<string, number>,
    size = def.size,
  ) {
    const buf = encode(def, v, size);
    const rc = e.p.ioctl(fd, req, buf);
    return { rc, out: decode(def, buf) };
  }

  function cdev(pasid: boolean) {
    const m = new Machine({
      iommu: "mock",
      kconfig: { IOMMUFD_TEST: true },
      pci: [{ bdf: BDF, kind: "memcpy", flags: { pasid } }],
    });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const fd = p.open("/dev/iommu");
    const dev = p.open("/dev/vfio/devices/vfio0");
    const b = vcall({ p }, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, {
      argsz: 24,
      iommufd: fd,
    });
    ok(p, b.rc);
    const e = { m, p, fd, base: undefined as never } as Env;
    e.base = state(e);
    return { e, dev, devid: Number(b.out.out_devid) };
  }

  const attach = (e: Env, dev: number, v: Record<string, number>, size = 16) => {
    const r = vcall(e, dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, v, size);
    return { rc: r.rc, pt: Number(r.out.pt_id) };
  };
  const detach = (e: Env, dev: number, v: Record<string, number>, size = 12) =>
    vcall(e, dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt, v, size).rc;

  it("PASID-capable device: attach, replace through attach, detach; argsz rules; unbind detaches every PASID", () => {
    const { e, dev, devid } = cdev(true);
    const ioas = ioasAlloc(e);
    const s2 = hwptAlloc(e, devid, ioas, ALLOC_PASID);
    ok(e.p, s2.rc);
    const s2b = hwptAlloc(e, devid, ioas, ALLOC_PASID);
    ok(e.p, s2b.rc);
    ok(e.p, attach(e, dev, { argsz: 12, pt_id: s2.id }, 12).rc);
    fails(e, EINVAL, () => attach(e, dev, { argsz: 12, flags: 1, pt_id: s2.id, pasid: 5 }, 12).rc);
    const a = attach(e, dev, { argsz: 16, flags: 1, pt_id: s2.id, pasid: 5 });
    ok(e.p, a.rc);
    expect(a.pt).toBe(s2.id);
    // VFIO attached PASID 5: a second attach is a replace.
    ok(e.p, attach(e, dev, { argsz: 16, flags: 1, pt_id: s2b.id, pasid: 5 }).rc);
    fails(e, EBUSY, () => destroy(e, s2b.id));
    fails(e, EBUSY, () => destroy(e, s2.id));
    fails(e, EINVAL, () => attach(e, dev, { argsz: 16, flags: 1, pt_id: ioas, pasid: 6 }).rc);
    fails(e, ENOSPC, () => attach(e, dev, { argsz: 16, flags: 1, pt_id: s2.id, pasid: 0x80000000 }).rc);
    fails(e, EINVAL, () => detach(e, dev, { argsz: 8, flags: 1, pasid: 5 }, 8));
    // A PASID VFIO never attached: nothing to do.
    ok(e.p, detach(e, dev, { argsz: 12, flags: 1, pasid: 9 }));
    ok(e.p, attach(e, dev, { argsz: 16, flags: 1, pt_id: s2.id, pasid: 6 }).rc);
    ok(e.p, detach(e, dev, { argsz: 12, flags: 1, pasid: 5 }));
    ok(e.p, destroy(e, s2b.id));
    // Closing the device fd unbinds: PASID 6 and the RID are released.
    ok(e.p, e.p.close(dev));
    ok(e.p, destroy(e, s2.id));
    expect(e.m.debug.checkInvariants()).toEqual([]);
    expectNoLeaks(e);
  });

  it("a device without PASID support: EINVAL from the core's max_pasids check", () => {
    const { e, dev, devid } = cdev(false);
    const ioas = ioasAlloc(e);
    const s2 = hwptAlloc(e, devid, ioas, ALLOC_PASID);
    ok(e.p, s2.rc);
    ok(e.p, attach(e, dev, { argsz: 12, pt_id: s2.id }, 12).rc);
    fails(e, EINVAL, () => attach(e, dev, { argsz: 16, flags: 1, pt_id: s2.id, pasid: 1 }).rc);
    ok(e.p, e.p.close(dev));
    ok(e.p, destroy(e, s2.id));
    expectNoLeaks(e);
  });
});
