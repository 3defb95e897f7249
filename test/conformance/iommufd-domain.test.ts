// selftest-catalogue.md Part B: fixtures iommufd_mock_domain (37-43),
// iommufd_dirty_tracking (44-48), vfio_compat_mock_domain (49-53).
import { describe, expect, it } from "vitest";
import { EBUSY, EFAULT, EINVAL, ENOENT, EOPNOTSUPP } from "../../src/uapi/errno.js";
import * as V from "../../src/uapi/vfio.js";
import {
  accessPages,
  call,
  checkMap,
  checkRefs,
  createAccess,
  destroy,
  destroyAccessPages,
  type Env,
  expectClean,
  expectErrno,
  expectNoLeaks,
  ioasAlloc,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_PAGE,
  map,
  mmap,
  mockDomain,
  ok,
  P,
  RW,
  replace,
  setup,
  state,
  testCmd,
  touch,
  U,
  unmap,
} from "./helpers.js";

const HUGE = 2n << 20n;

function md(domains: number, huge: boolean) {
  const e = setup();
  const ioas = ioasAlloc(e);
  const hw: { stdev: number; hwpt: number; idev: number }[] = [];
  for (let i = 0; i < domains; i++) {
    const r = mockDomain(e, ioas);
    ok(e.p, r.rc);
    hw.push(r);
  }
  const len = huge ? 2n * HUGE : 8n * P;
  const buf = e.p.mmap(0n, len, 3, 0x22 | (huge ? 0x40000 : 0));
  expect(buf > 0n).toBe(true);
  touch(e, buf, len);
  return { ...e, ioas, hw, buf, len };
}

const mdVariants: [string, number, boolean][] = [
  ["one_domain", 1, false],
  ["two_domains", 2, false],
  ["one_domain_hugepage", 1, true],
  ["two_domains_hugepage", 2, true],
];

describe.each(mdVariants)("fixture iommufd_mock_domain/%s", (_n, nd, huge) => {
  it("37 basic: map + CHECK_MAP; a half-unmapped buffer is EFAULT", () => {
    const f = md(nd, huge);
    const r = map(f, f.ioas, f.buf, P);
    ok(f.p, r.rc);
    for (const h of f.hw) ok(f.p, checkMap(f, h.hwpt, r.iova, P, f.buf));
    if (!huge) {
      const b2 = mmap(f, 8n * P);
      touch(f, b2, 8n * P);
      ok(f.p, f.p.munmap(b2 + 4n * P, 4n * P));
      const before = state(f);
      expectErrno(f.p, map(f, f.ioas, b2, 8n * P).rc, EFAULT);
      const b3 = mmap(f, 8n * P);
      ok(f.p, f.p.munmap(b3, 4n * P));
      expectErrno(f.p, map(f, f.ioas, b3, 8n * P).rc, EFAULT);
      expect(state(f)).toEqual(before);
    }
    expectClean(f);
    expectNoLeaks(f);
  });

  it("39 all_aligns: every start/end at MOCK page granularity, one pin each, none after", () => {
    const f = md(nd, huge);
    const step = huge ? HUGE / 4n : MOCK_PAGE;
    const end = huge ? f.len : 8n * P;
    for (let s = 0n; s < end; s += step) {
      for (let e = s + step; e <= end; e += step * (huge ? 1n : 3n)) {
        const r = map(f, f.ioas, f.buf + s, e - s);
        ok(f.p, r.rc);
        for (const h of f.hw) ok(f.p, checkMap(f, h.hwpt, r.iova, e - s, f.buf + s));
        const ps = (s / P) * P;
        const pe = ((e + P - 1n) / P) * P;
        ok(f.p, checkRefs(f, f.buf + ps, pe - ps, 1));
        ok(f.p, unmap(f, f.ioas, r.iova, e - s).rc);
      }
    }
    ok(f.p, checkRefs(f, f.buf, end, 0));
    expectClean(f);
    expectNoLeaks(f);
  });

  it("40 all_aligns_copy: a new domain is filled from the existing pins", () => {
    const f = md(nd, huge);
    const step = huge ? HUGE : 2n * MOCK_PAGE;
    for (let s = 0n; s < f.len / 2n; s += step) {
      const l = step * 2n;
      const r = map(f, f.ioas, f.buf + s, l);
      ok(f.p, r.rc);
      const d = mockDomain(f, f.ioas);
      ok(f.p, d.rc);
      ok(f.p, checkMap(f, d.hwpt, r.iova, l, f.buf + s));
      ok(f.p, destroy(f, d.stdev));
      ok(f.p, unmap(f, f.ioas, r.iova, l).rc);
    }
    expectClean(f);
    expectNoLeaks(f);
  });

  it("41 user_copy: pin in a domain-less IOAS, COPY into the domain IOAS, replace the access IOAS", () => {
    const f = md(nd, huge);
    const src = ioasAlloc(f);
    ok(f.p, map(f, src, f.buf, f.len, 1n << 20n).rc);
    const acc = createAccess(f, src, true);
    ok(f.p, acc.rc);
    const a = accessPages(f, acc.fd, 1n << 20n, f.len);
    ok(f.p, a.rc);
    const c = call(f.p, f.fd, U.IOMMU_IOAS_COPY, U.iommu_ioas_copy, {
      flags: 1 | RW,
      dst_ioas_id: f.ioas,
      src_ioas_id: src,
      length: f.len,
      dst_iova: MOCK_APERTURE_START,
      src_iova: 1n << 20n,
    });
    ok(f.p, c.rc);
    for (const h of f.hw) ok(f.p, checkMap(f, h.hwpt, MOCK_APERTURE_START, f.len, f.buf));
    ok(f.p, checkRefs(f, f.buf, f.len, 1));
    const other = ioasAlloc(f);
    ok(f.p, testCmd(f, 11, acc.fd, [[16, 4, other]]).rc);
    expectErrno(f.p, destroyAccessPages(f, acc.fd, a.id), ENOENT); // replace unmapped everything it held
    ok(f.p, unmap(f, f.ioas, MOCK_APERTURE_START, f.len).rc);
    ok(f.p, destroy(f, src));
    ok(f.p, f.p.close(acc.fd));
    expectClean(f);
    expectNoLeaks(f);
  });

  it("42 replace: to a new IOAS (auto hwpt), old auto hwpt destroyed", () => {
    const f = md(nd, huge);
    const other = ioasAlloc(f);
    const oldHwpt = f.hw[0].hwpt;
    ok(f.p, replace(f, f.hw[0].stdev, other));
    if (nd === 1) expectErrno(f.p, replace(f, f.hw[0].stdev, oldHwpt), ENOENT);
    ok(f.p, replace(f, f.hw[0].stdev, other));
    if (nd === 2) {
      ok(f.p, replace(f, f.hw[0].stdev, f.hw[1].hwpt));
      ok(f.p, replace(f, f.hw[0].stdev, f.hw[1].hwpt));
    }
    ok(f.p, replace(f, f.hw[0].stdev, f.ioas));
    ok(f.p, destroy(f, other));
    expectClean(f);
    expectNoLeaks(f);
  });

  it("43 alloc_hwpt: flags, manual hwpts, EBUSY while attached", () => {
    const f = md(nd, huge);
    const alloc = (flags: number) =>
      call(f.p, f.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, { dev_id: f.hw[0].idev, pt_id: f.ioas, flags });
    expectErrno(f.p, alloc(~1 >>> 0).rc, EOPNOTSUPP);
    for (const fl of [0, 1]) {
      const h = alloc(fl);
      ok(f.p, h.rc);
      const id = Number(h.out.out_hwpt_id);
      ok(f.p, replace(f, f.hw[0].stdev, id));
      expectErrno(f.p, destroy(f, id), EBUSY);
      ok(f.p, replace(f, f.hw[0].stdev, f.ioas));
      ok(f.p, destroy(f, id));
    }
    const h = alloc(0);
    const d = mockDomain(f, Number(h.out.out_hwpt_id));
    ok(f.p, d.rc);
    expect(d.hwpt).toBe(Number(h.out.out_hwpt_id));
    expectClean(f);
    expectNoLeaks(f);
  });
});

describe("fixture iommufd_mock_domain file variants (37 basic, MAP_FILE)", () => {
  it("MAP_FILE of a memfd page, past EOF EINVAL, after truncate EINVAL", () => {
    const f = md(1, false);
    const mfd = f.p.memfdCreate("buf");
    ok(f.p, f.p.ftruncate(mfd, P));
    const mf = (len: bigint) =>
      call(f.p, f.fd, U.IOMMU_IOAS_MAP_FILE, U.iommu_ioas_map_file, {
        flags: RW,
        ioas_id: f.ioas,
        fd: mfd,
        start: 0n,
        length: len,
      });
    const r = mf(P);
    ok(f.p, r.rc);
    const before = state(f);
    expectErrno(f.p, mf(2n * P).rc, EINVAL);
    ok(f.p, f.p.ftruncate(mfd, 0n));
    expectErrno(f.p, mf(P).rc, EINVAL);
    expect(state(f)).toEqual(before);
    expectErrno(
      f.p,
      call(f.p, f.fd, U.IOMMU_IOAS_MAP_FILE, U.iommu_ioas_map_file, {
        flags: RW,
        ioas_id: f.ioas,
        fd: 99,
        length: P,
      }).rc,
      9,
    );
    ok(f.p, unmap(f, f.ioas, r.out.iova, P).rc);
    ok(f.p, f.p.close(mfd));
    expectNoLeaks(f);
  });

  it("12 change_process: EINVAL with a VA mapping; file-backed maps move", () => {
    const f = md(1, false);
    ok(f.p, map(f, f.ioas, f.buf, P).rc);
    const cp = () => call(f.p, f.fd, U.IOMMU_IOAS_CHANGE_PROCESS, U.iommu_ioas_change_process, {}).rc;
    expectErrno(f.p, cp(), EINVAL);
    ok(f.p, unmap(f, f.ioas, 0n, (1n << 64n) - 1n).rc);
    const mfd = f.p.memfdCreate("buf");
    ok(f.p, f.p.ftruncate(mfd, P));
    ok(
      f.p,
      call(f.p, f.fd, U.IOMMU_IOAS_MAP_FILE, U.iommu_ioas_map_file, {
        flags: RW,
        ioas_id: f.ioas,
        fd: mfd,
        length: P,
      }).rc,
    );
    ok(f.p, cp());
    expectClean(f);
    expectNoLeaks(f);
  });
});

describe("fixture iommufd_dirty_tracking", () => {
  function dt(bufLen: bigint, hugeIova: boolean) {
    const e = setup();
    const ioas = ioasAlloc(e);
    const huge = bufLen >= HUGE;
    const buf = e.p.mmap(0n, bufLen, 3, 0x22 | (huge ? 0x40000 : 0));
    touch(e, buf, bufLen);
    const d = mockDomain(e, ioas, hugeIova ? 2 : 0);
    ok(e.p, d.rc);
    const h = call(e.p, e.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
      dev_id: d.idev,
      pt_id: ioas,
      flags: 2,
    });
    ok(e.p, h.rc);
    const hwpt = Number(h.out.out_hwpt_id);
    ok(e.p, replace(e, d.stdev, hwpt));
    ok(e.p, map(e, ioas, buf, bufLen, MOCK_APERTURE_START).rc);
    return { ...e, ioas, buf, hwpt, d };
  }

  it("44 enforce_dirty: NO_DIRTY device refuses dirty HWPTs", () => {
    const f = dt(8n * P, false);
    expectErrno(f.p, mockDomain(f, f.hwpt, 1).rc, EINVAL);
    const nd = mockDomain(f, f.ioas, 1);
    ok(f.p, nd.rc);
    const r = call(f.p, f.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
      dev_id: nd.idev,
      pt_id: f.ioas,
      flags: 2,
    });
    expectErrno(f.p, r.rc, EOPNOTSUPP);
    expectNoLeaks(f);
  });

  it("45 set_dirty_tracking / 46 device_dirty_capability", () => {
    const f = dt(8n * P, false);
    const set = (flags: number) =>
      call(f.p, f.fd, U.IOMMU_HWPT_SET_DIRTY_TRACKING, U.iommu_hwpt_set_dirty_tracking, {
        hwpt_id: f.hwpt,
        flags,
      }).rc;
    ok(f.p, set(1));
    ok(f.p, set(0));
    expectErrno(f.p, set(2), EOPNOTSUPP);
    const hi = call(f.p, f.fd, U.IOMMU_GET_HW_INFO, U.iommu_hw_info, { dev_id: f.d.idev });
    expect(hi.out.out_capabilities & 1n).toBe(1n);
    expectNoLeaks(f);
  });

  const sizes: [string, bigint, boolean][] = [
    ["8k", 8192n, false],
    ["64k", 65536n, false],
    ["320k", 320n << 10n, false],
    ["4M_huge", 4n << 20n, true],
  ];
  it.each(sizes)("47/48 get_dirty_bitmap %s (clear and NO_CLEAR)", (_n, len, hugeIova) => {
    const f = dt(len, hugeIova);
    ok(
      f.p,
      call(f.p, f.fd, U.IOMMU_HWPT_SET_DIRTY_TRACKING, U.iommu_hwpt_set_dirty_tracking, {
        hwpt_id: f.hwpt,
        flags: 1,
      }).rc,
    );
    const nbits = Number(len / MOCK_PAGE);
    const bm = mmap(f, BigInt(Math.ceil(nbits / 8 / 4096) + 1) * P);
    for (const noClear of [false, true]) {
      // mark every other mock page dirty through the test op
      const marks = new Uint8Array(Math.ceil(nbits / 8)).fill(0x55);
      if (nbits % 8 !== 0) marks[marks.length - 1] &= (1 << (nbits % 8)) - 1;
      ok(f.p, f.p.writeMemory(bm, marks));
      const d = testCmd(f, 13, f.hwpt, [
        [24, 8, MOCK_APERTURE_START],
        [32, 8, len],
        [40, 8, MOCK_PAGE],
        [48, 8, bm],
      ]);
      ok(f.p, d.rc);
      for (let round = 0; round < 2; round++) {
        ok(f.p, f.p.writeMemory(bm, new Uint8Array(marks.length)));
        const g = call(f.p, f.fd, U.IOMMU_HWPT_GET_DIRTY_BITMAP, U.iommu_hwpt_get_dirty_bitmap, {
          hwpt_id: f.hwpt,
          flags: noClear ? 1 : 0,
          iova: MOCK_APERTURE_START,
          length: len,
          page_size: MOCK_PAGE,
          data: bm,
        });
        ok(f.p, g.rc);
        const got = f.p.readMemory(bm, marks.length) as Uint8Array;
        const anySet = got.some((x) => x !== 0);
        if (round === 0 || noClear) expect(anySet).toBe(true);
        else expect(anySet).toBe(false);
        if ((round === 0 || noClear) && !hugeIova) expect([...got]).toEqual([...marks]);
      }
    }
    expectClean(f);
    expectNoLeaks(f);
  });
});

describe.each([
  ["Ver1v2", V.VFIO_TYPE1v2_IOMMU],
  ["Ver1v0", V.VFIO_TYPE1_IOMMU],
])("fixture vfio_compat_mock_domain/%s", (_n, version) => {
  function vc(): Env & { ioas: number } {
    const e = setup();
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    ok(e.p, call(e.p, e.fd, U.IOMMU_VFIO_IOAS, U.iommu_vfio_ioas, { op: 1, ioas_id: ioas }).rc);
    ok(e.p, e.p.ioctl(e.fd, V.VFIO_SET_IOMMU, BigInt(version)));
    return { ...e, ioas };
  }
  const mapDma = (e: Env, va: bigint, iova: bigint, size: bigint) => {
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    v.setUint32(0, 32, true);
    v.setUint32(4, 3, true);
    v.setBigUint64(8, va, true);
    v.setBigUint64(16, iova, true);
    v.setBigUint64(24, size, true);
    return e.p.ioctl(e.fd, V.VFIO_IOMMU_MAP_DMA, b);
  };
  const unmapDma = (e: Env, iova: bigint, size: bigint, flags = 0) => {
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    v.setUint32(0, 24, true);
    v.setUint32(4, flags, true);
    v.setBigUint64(8, iova, true);
    v.setBigUint64(16, size, true);
    const rc = e.p.ioctl(e.fd, V.VFIO_IOMMU_UNMAP_DMA, b);
    return { rc, size: v.getBigUint64(16, true) };
  };

  it("49 simple_close", () => expectNoLeaks(vc()));

  it("50 option_huge_pages", () => {
    const e = vc();
    const r = call(e.p, e.fd, U.IOMMU_OPTION, U.iommu_option, { option_id: 1, op: 1, object_id: e.ioas });
    expect(r.out.val64).toBe(version === V.VFIO_TYPE1_IOMMU ? 0n : 1n);
    expectNoLeaks(e);
  });

  it("51 get_info: never writes past argsz; caps chain valid", () => {
    const e = vc();
    const buf = mmap(e, P);
    for (let argsz = 16; argsz <= 24 + 16 + 32; argsz += 4) {
      ok(e.p, e.p.writeMemory(buf, new Uint8Array(256).fill(0xcc)));
      const h = new Uint8Array(4);
      new DataView(h.buffer).setUint32(0, argsz, true);
      ok(e.p, e.p.writeMemory(buf, h));
      ok(e.p, e.p.ioctl(e.fd, V.VFIO_IOMMU_GET_INFO, buf));
      const got = e.p.readMemory(buf, 256) as Uint8Array;
      expect(got.subarray(argsz).every((x) => x === 0xcc)).toBe(true);
      const v = new DataView(got.buffer);
      expect(v.getUint32(4, true)).toBe(3);
      if (argsz >= 16) expect(v.getBigUint64(8, true)).not.toBe(0n);
      if (argsz >= 24) {
        expect(v.getUint32(0, true)).toBe(24 + 16 + 32);
        const capOff = v.getUint32(16, true);
        if (argsz >= 72) {
          expect(capOff).toBe(24);
          expect(v.getUint16(24, true)).toBe(3); // DMA_AVAIL
          const next = v.getUint32(28, true);
          expect(next).toBe(40);
          expect(v.getUint16(next, true)).toBe(1); // IOVA_RANGE
          expect(v.getUint32(next + 8, true)).toBe(1);
          expect(v.getBigUint64(next + 16, true)).toBe(MOCK_APERTURE_START);
          expect(v.getBigUint64(next + 24, true)).toBe(MOCK_APERTURE_LAST);
        } else expect(capOff).toBe(0);
      }
    }
    expectNoLeaks(e);
  });

  it("52 map: MAP_DMA/UNMAP_DMA sizes, FLAG_ALL rules, nothing-mapped unmap is 0", () => {
    const e = vc();
    const buf = mmap(e, 16n * P);
    touch(e, buf, 16n * P);
    ok(e.p, mapDma(e, buf, MOCK_APERTURE_START, 16n * P));
    let r = unmapDma(e, MOCK_APERTURE_START, 16n * P);
    ok(e.p, r.rc);
    expect(r.size).toBe(16n * P);
    ok(e.p, mapDma(e, buf, MOCK_APERTURE_START, 16n * P));
    expectErrno(e.p, unmapDma(e, 1n, 1n, 2).rc, EINVAL);
    r = unmapDma(e, 0n, 0n, 2);
    ok(e.p, r.rc);
    expect(r.size).toBe(16n * P);
    r = unmapDma(e, MOCK_APERTURE_START, P);
    ok(e.p, r.rc);
    expect(r.size).toBe(0n);
    const order = [5, 12, 0, 9, 3, 15, 7, 1, 14, 10, 2, 8, 13, 4, 11, 6];
    for (let i = 0n; i < 16n; i++) ok(e.p, mapDma(e, buf + i * P, MOCK_APERTURE_START + i * P, P));
    for (const i of order) {
      r = unmapDma(e, MOCK_APERTURE_START + BigInt(i) * P, P);
      ok(e.p, r.rc);
      expect(r.size).toBe(P);
    }
    expectClean(e);
    expectNoLeaks(e);
  });

  it("53 huge_map: TYPE1 splits, TYPE1v2 ENOENT", () => {
    const e = vc();
    const buf = e.p.mmap(0n, 2n * HUGE, 3, 0x22 | 0x40000);
    touch(e, buf, 2n * HUGE);
    ok(e.p, mapDma(e, buf, MOCK_APERTURE_START, 2n * HUGE));
    const chunk = (2n * HUGE) / 16n;
    for (const i of [3, 0, 15, 7, 8, 1, 14, 2, 13, 4, 12, 5, 11, 6, 10, 9]) {
      const r = unmapDma(e, MOCK_APERTURE_START + BigInt(i) * chunk, chunk);
      if (version === V.VFIO_TYPE1_IOMMU) {
        ok(e.p, r.rc);
        expect(r.size).toBe(chunk);
      } else expectErrno(e.p, r.rc, ENOENT);
      expectClean(e);
    }
    expectNoLeaks(e);
  });
});
