// 7.2's iommufd_dirty_tracking.get_dirty_bitmap{,_no_clear}: a paging HWPT allocated with a
// struct iommu_hwpt_selftest { iotlb, pagetable_type } chooses the mock's table
// (mock_domain_alloc_pgtable): MOCK_IOMMUPT_DEFAULT or MOCK_IOMMUPT_HUGE (1 MiB leaves only).
import { expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { EINVAL, ENOENT, EOPNOTSUPP } from "../../src/uapi/errno.js";
import {
  call,
  expectErrno,
  expectNoLeaks,
  hwptAlloc,
  IOMMU_HWPT_DATA_SELFTEST,
  ioasAlloc,
  MOCK_APERTURE_START,
  MOCK_PAGE,
  map,
  mockDomain,
  ok,
  P,
  replace,
  setup,
  snap,
  testCmd,
  touch,
  U,
  u32s,
} from "./helpers.js";

const DIRTY_TRACKING = 2;
const HUGE_LEAF = 1n << 20n;

function fx() {
  const e = setup();
  const ioas = ioasAlloc(e);
  const d = mockDomain(e, ioas);
  ok(e.p, d.rc);
  return { e, ioas, d };
}

it("pagetable_type: DEFAULT and HUGE allocate; other types EOPNOTSUPP; bad data EINVAL; nothing leaks", () => {
  const { e, ioas, d } = fx();
  const alloc = (data: Uint8Array, dataType = IOMMU_HWPT_DATA_SELFTEST) =>
    hwptAlloc(e, d.idev, ioas, DIRTY_TRACKING, { dataType, data });
  const before = snap(e);
  expectErrno(e.p, alloc(u32s(0, 2)).rc, EOPNOTSUPP);
  expectErrno(e.p, alloc(u32s(0, 7)).rc, EOPNOTSUPP);
  expectErrno(e.p, alloc(u32s(0, 0), 0xbad).rc, EOPNOTSUPP);
  expectErrno(e.p, alloc(u32s(0, 0, 0)).rc, EINVAL); // longer than the kernel's 8 bytes
  expectErrno(e.p, alloc(new Uint8Array(2)).rc, EINVAL); // short of iotlb
  expect(snap(e)).toEqual(before);
  for (const type of [0, 1]) {
    const h = alloc(u32s(0, type));
    ok(e.p, h.rc);
    ok(e.p, replace(e, d.stdev, h.id));
    ok(e.p, replace(e, d.stdev, ioas));
    ok(e.p, call(e.p, e.fd, U.IOMMU_DESTROY, U.iommu_destroy, { id: h.id }).rc);
  }
  expectNoLeaks(e);
});

it("6.12: the mock takes no driver data on a paging HWPT; invalidating a paging HWPT is ENOENT", () => {
  const m = new Machine({ iommu: "mock", kernel: "6.12", kconfig: { IOMMUFD_TEST: true } });
  const p = m.spawn({ caps: [], rlimitMemlock: 64n << 20n });
  const fd = p.open("/dev/iommu");
  const e = { m, p, fd } as Parameters<typeof ioasAlloc>[0];
  const ioas = ioasAlloc(e);
  const d = mockDomain(e, ioas);
  ok(p, d.rc);
  expectErrno(
    p,
    hwptAlloc(e, d.idev, ioas, 0, { dataType: IOMMU_HWPT_DATA_SELFTEST, data: u32s(0, 0) }).rc,
    EOPNOTSUPP,
  );
  // and 6.12's IOMMU_HWPT_INVALIDATE finds only nested HWPTs: a paging one is ENOENT (7.x: EINVAL)
  const h = hwptAlloc(e, d.idev, ioas, 0);
  ok(p, h.rc);
  const inv = call(p, fd, U.IOMMU_HWPT_INVALIDATE, U.iommu_hwpt_invalidate, {
    hwpt_id: h.id,
    data_type: 0xdeadbeef,
    entry_len: 8,
    entry_num: 0,
  });
  expectErrno(p, inv.rc, ENOENT);
});

it("MOCK_IOMMUPT_HUGE: 2 MiB of hugetlb maps as 1 MiB leaves, so one dirty 2 KiB page reports its whole leaf", () => {
  const { e, ioas, d } = fx();
  const len = 2n << 20n;
  const buf = e.p.mmap(0n, len, 3, 0x22 | 0x40000);
  touch(e, buf, len);
  ok(e.p, map(e, ioas, buf, len, MOCK_APERTURE_START).rc);
  for (const [type, expectBits] of [
    [1, Number(HUGE_LEAF / MOCK_PAGE)],
    [0, 1],
  ] as const) {
    const h = hwptAlloc(e, d.idev, ioas, DIRTY_TRACKING, {
      dataType: IOMMU_HWPT_DATA_SELFTEST,
      data: u32s(0, type),
    });
    ok(e.p, h.rc);
    ok(
      e.p,
      call(e.p, e.fd, U.IOMMU_HWPT_SET_DIRTY_TRACKING, U.iommu_hwpt_set_dirty_tracking, {
        hwpt_id: h.id,
        flags: 1,
      }).rc,
    );
    const nbits = Number(len / MOCK_PAGE);
    const bm = e.p.mmap(0n, P, 3, 0x22);
    const marks = new Uint8Array(nbits / 8);
    marks[0] = 1; // the first 2 KiB page only
    ok(e.p, e.p.writeMemory(bm, marks));
    ok(
      e.p,
      testCmd(e, 13, h.id, [
        [24, 8, MOCK_APERTURE_START],
        [32, 8, len],
        [40, 8, MOCK_PAGE],
        [48, 8, bm],
      ]).rc,
    );
    ok(e.p, e.p.writeMemory(bm, new Uint8Array(nbits / 8)));
    const g = call(e.p, e.fd, U.IOMMU_HWPT_GET_DIRTY_BITMAP, U.iommu_hwpt_get_dirty_bitmap, {
      hwpt_id: h.id,
      iova: MOCK_APERTURE_START,
      length: len,
      page_size: MOCK_PAGE,
      data: bm,
    });
    ok(e.p, g.rc);
    const got = e.p.readMemory(bm, nbits / 8) as Uint8Array;
    let bits = 0;
    for (const x of got) for (let b = 0; b < 8; b++) bits += (x >> b) & 1;
    expect(bits).toBe(expectBits);
    ok(e.p, call(e.p, e.fd, U.IOMMU_DESTROY, U.iommu_destroy, { id: h.id }).rc);
  }
  expectNoLeaks(e);
});
