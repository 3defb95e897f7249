import { describe, expect, it } from "vitest";
import { iommufdCtxFromFile, iommufdDeviceBind, iommufdDeviceUnbind } from "../../src/iommufd/index.js";
import {
  E2BIG,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  EIO,
  ENOENT,
  ENXIO,
  EOPNOTSUPP,
  EOVERFLOW,
  ESPIPE,
} from "../../src/uapi/errno.js";
import {
  checkDevCache,
  checkIotlb,
  destroy,
  type Env,
  expectErrno,
  expectNoLeaks,
  FAULT_ID_VALID,
  faultAlloc,
  hwptAlloc,
  hwQueueAlloc,
  IOMMU_HW_QUEUE_TYPE_SELFTEST,
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_TEST_DEV_CACHE_DEFAULT,
  IOMMU_TEST_IOTLB_DEFAULT,
  IOMMU_VEVENTQ_TYPE_SELFTEST,
  IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
  IOMMU_VIOMMU_TYPE_SELFTEST,
  invalidate,
  ioasAlloc,
  map,
  mmap,
  mockDomain,
  NEST_PARENT,
  nestedAlloc,
  ok,
  P,
  replace,
  setup,
  snap,
  triggerIopf,
  triggerVevent,
  u32s,
  unmap,
  userBytes,
  vdeviceAlloc,
  veventqAlloc,
  viommuAlloc,
} from "./helpers.js";

// Catalogue Part B lines 54-60 (fixture iommufd_viommu, variants no_viommu
// and mock_viommu) and the IOPF parts of line 15, against
// tools/testing/selftests/iommu/iommufd.c. Every failing call is checked for
// its errno and for unchanged counters, open files and invariants.

interface Fx {
  e: Env;
  ioas: number;
  stdev: number;
  dev: number;
  hwpt: number;
  viommu: number;
  nested: number;
}

/** FIXTURE_SETUP(iommufd_viommu): a mock device, a NEST_PARENT HWPT, a SELFTEST vIOMMU and a nested HWPT on it. */
function fixture(variant: "no_viommu" | "mock_viommu"): Fx {
  const e = setup();
  const ioas = ioasAlloc(e);
  if (variant === "no_viommu") return { e, ioas, stdev: 0, dev: 0, hwpt: 0, viommu: 0, nested: 0 };
  const md = mockDomain(e, ioas);
  ok(e.p, md.rc);
  const parent = hwptAlloc(e, md.idev, ioas, NEST_PARENT);
  ok(e.p, parent.rc);
  const v = viommuAlloc(e, md.idev, parent.id, IOMMU_VIOMMU_TYPE_SELFTEST);
  ok(e.p, v.rc);
  const n = nestedAlloc(e, md.idev, v.id);
  ok(e.p, n.rc);
  return { e, ioas, stdev: md.stdev, dev: md.idev, hwpt: parent.id, viommu: v.id, nested: n.id };
}

/** A failing call leaves counters, open files and invariants as they were. */
function fails(e: Env, errno: number, fn: () => number | bigint): void {
  const before = snap(e);
  expectErrno(e.p, fn(), errno);
  expect(snap(e)).toEqual(before);
}

const MAP_SHARED = 0x01;

/** The selftest's event record: struct iommufd_vevent_header + struct iommu_viommu_event_selftest. */
function readVevent(e: Env, fd: number): { flags: number; seq: number; virtId: number; len: number } {
  const b = e.p.read(fd, 12);
  if (typeof b === "number") throw new Error(`read ${b}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return {
    flags: dv.getUint32(0, true),
    seq: dv.getUint32(4, true),
    virtId: b.length >= 12 ? dv.getUint32(8, true) : -1,
    len: b.length,
  };
}

/** _test_cmd_trigger_iopf(): raise a page request, read one record, answer SUCCESS with its cookie. */
function triggerAndServe(e: Env, dev: number, faultFd: number, pasid = 0) {
  ok(e.p, triggerIopf(e, dev, pasid, 0x2, 3, 0xdeadbeafn));
  const b = e.p.read(faultFd, 40);
  if (typeof b === "number") throw new Error(`read ${b}`);
  expect(b.length).toBe(40);
  const dv = new DataView(b.buffer, b.byteOffset, 40);
  const rec = {
    flags: dv.getUint32(0, true),
    devId: dv.getUint32(4, true),
    pasid: dv.getUint32(8, true),
    grpid: dv.getUint32(12, true),
    perm: dv.getUint32(16, true),
    addr: dv.getBigUint64(24, true),
    length: dv.getUint32(32, true),
    cookie: dv.getUint32(36, true),
  };
  expect(e.p.write(faultFd, u32s(rec.cookie, 0))).toBe(8);
  return rec;
}

describe("iommufd_viommu (54-60)", () => {
  for (const variant of ["no_viommu", "mock_viommu"] as const) {
    describe(variant, () => {
      it("54 viommu_auto_destroy: close frees the vIOMMU, nested HWPT and parent", () => {
        const f = fixture(variant);
        if (variant === "mock_viommu") expect(f.e.m.debug.counters().objects).toBeGreaterThanOrEqual(6);
        expectNoLeaks(f.e);
      });

      it("55 viommu_negative_tests", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          fails(e, ENOENT, () => viommuAlloc(e, f.dev, 0, IOMMU_VIOMMU_TYPE_SELFTEST).rc);
          const plain = hwptAlloc(e, f.dev, f.ioas);
          ok(e.p, plain.rc);
          fails(e, EINVAL, () => viommuAlloc(e, f.dev, plain.id, IOMMU_VIOMMU_TYPE_SELFTEST).rc);
          ok(e.p, destroy(e, plain.id));
          fails(e, EOPNOTSUPP, () => viommuAlloc(e, f.dev, f.hwpt, 0xdead).rc);
          // type DEFAULT and non-zero flags are refused before any lookup.
          fails(e, EOPNOTSUPP, () => viommuAlloc(e, 0, 0, 0).rc);
          fails(e, EBUSY, () => destroy(e, f.hwpt));
          fails(e, EBUSY, () => destroy(e, f.viommu));
          // a nested HWPT is not a paging HWPT: ENOENT from the paging lookup.
          fails(e, ENOENT, () => viommuAlloc(e, f.dev, f.nested, IOMMU_VIOMMU_TYPE_SELFTEST).rc);
        } else {
          fails(e, ENOENT, () => viommuAlloc(e, f.dev, f.hwpt, IOMMU_VIOMMU_TYPE_SELFTEST).rc);
        }
        expectNoLeaks(e);
      });

      it("56 viommu_alloc_nested_iopf", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          const fq = faultAlloc(e);
          ok(e.p, fq.rc);
          const data = { dataType: IOMMU_HWPT_DATA_SELFTEST, data: u32s(IOMMU_TEST_IOTLB_DEFAULT) };
          const d1 = userBytes(e, data.data);
          const d = { ...data, uptr: d1 };
          fails(
            e,
            ENOENT,
            () => hwptAlloc(e, f.dev, f.viommu, FAULT_ID_VALID, { ...d, faultId: 0xffffffff }).rc,
          );
          fails(
            e,
            EOPNOTSUPP,
            () => hwptAlloc(e, f.dev, f.viommu, FAULT_ID_VALID | (1 << 31), { ...d, faultId: fq.id }).rc,
          );
          const iopf = hwptAlloc(e, f.dev, f.viommu, FAULT_ID_VALID, { ...d, faultId: fq.id });
          ok(e.p, iopf.rc);
          // Must allocate the vDEVICE before attaching to a vIOMMU's nested HWPT.
          fails(e, ENOENT, () => replace(e, f.stdev, iopf.id));
          const vd = vdeviceAlloc(e, f.viommu, f.dev, 0x99n);
          ok(e.p, vd.rc);
          ok(e.p, replace(e, f.stdev, iopf.id));
          fails(e, EBUSY, () => destroy(e, iopf.id));
          fails(e, EBUSY, () => destroy(e, fq.id));
          const rec = triggerAndServe(e, f.dev, fq.fd);
          expect(rec).toMatchObject({
            flags: 2,
            devId: f.dev,
            pasid: 0,
            grpid: 2,
            perm: 3,
            addr: 0xdeadbeafn,
          });
          expect(rec.cookie).toBe(1);
          ok(e.p, replace(e, f.stdev, f.ioas));
          ok(e.p, destroy(e, iopf.id));
          ok(e.p, e.p.close(fq.fd));
          ok(e.p, destroy(e, fq.id));
        }
        expectNoLeaks(e);
      });

      it("57 viommu_alloc_with_data: out_data echoes in_data; mmap of the register page; EBUSY while mapped", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          const data = new Uint8Array(24);
          new DataView(data.buffer).setUint32(0, 0xbeef, true);
          const v = viommuAlloc(e, f.dev, f.hwpt, IOMMU_VIOMMU_TYPE_SELFTEST, data);
          ok(e.p, v.rc);
          const back = e.p.readMemory(v.uptr, 24);
          if (typeof back === "number") throw new Error("read");
          const dv = new DataView(back.buffer, back.byteOffset, 24);
          expect(dv.getUint32(4, true)).toBe(0xbeef);
          const off = dv.getBigUint64(8, true);
          const len = dv.getBigUint64(16, true);
          expect(len).toBe(2n * P);
          expect(off % P).toBe(0n);
          for (const [l, o] of [
            [len, off + P],
            [len, off + 2n * P],
            [len / 2n, off],
            [len * 2n, off],
          ]) {
            fails(e, ENXIO, () => e.p.mmap(0n, l, 3, MAP_SHARED, e.fd, o));
          }
          const va = e.p.mmap(0n, len, 3, MAP_SHARED, e.fd, off);
          expect(va).toBeGreaterThan(0n);
          const word = e.p.readMemory(va, 4);
          if (typeof word === "number") throw new Error("read");
          expect(new DataView(word.buffer, word.byteOffset, 4).getUint32(0, true)).toBe(0xbeef);
          fails(e, EBUSY, () => destroy(e, v.id));
          ok(e.p, e.p.munmap(va, len));
          ok(e.p, destroy(e, v.id));
          // The region went with its vIOMMU.
          fails(e, ENXIO, () => e.p.mmap(0n, len, 3, MAP_SHARED, e.fd, off));
          // Driver data short of out_data, or longer than the kernel's 24-byte struct (even
          // all zero: __iommu_copy_struct_from_user), is EINVAL.
          fails(e, EINVAL, () => viommuAlloc(e, f.dev, f.hwpt, IOMMU_VIOMMU_TYPE_SELFTEST, u32s(1)).rc);
          fails(
            e,
            EINVAL,
            () => viommuAlloc(e, f.dev, f.hwpt, IOMMU_VIOMMU_TYPE_SELFTEST, new Uint8Array(25)).rc,
          );
        }
        expectNoLeaks(e);
      });

      it("57b a live mapping keeps the context until munmap (exit releases everything)", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          const data = new Uint8Array(24);
          const v = viommuAlloc(e, f.dev, f.hwpt, IOMMU_VIOMMU_TYPE_SELFTEST, data);
          ok(e.p, v.rc);
          const back = e.p.readMemory(v.uptr, 24) as Uint8Array;
          const off = new DataView(back.buffer, back.byteOffset, 24).getBigUint64(8, true);
          const va = e.p.mmap(0n, 2n * P, 3, MAP_SHARED, e.fd, off);
          expect(va).toBeGreaterThan(0n);
          ok(e.p, e.p.close(e.fd));
          expect(e.m.debug.counters().iommufdContexts).toBe(1);
          ok(e.p, e.p.munmap(va, 2n * P));
          expect(e.m.debug.counters().iommufdContexts).toBe(0);
        }
        expectNoLeaks(e);
      });

      it("58 vdevice_alloc: one vDEVICE per device, vEVENTQ sequence numbers and the lost-events header", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          fails(e, ENOENT, () => replace(e, f.stdev, f.nested));
          const q = veventqAlloc(e, f.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2);
          ok(e.p, q.rc);
          fails(e, EEXIST, () => veventqAlloc(e, f.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2).rc);
          // read counts that cannot hold a header are EINVAL even on an empty queue
          for (const n of [0, 7]) {
            fails(e, EINVAL, () => {
              const r = e.p.read(q.fd, n);
              return typeof r === "number" ? r : r.length;
            });
          }
          const vd = vdeviceAlloc(e, f.viommu, f.dev, 0x99n);
          ok(e.p, vd.rc);
          ok(e.p, replace(e, f.stdev, f.nested));
          ok(e.p, triggerVevent(e, f.dev));
          let prev = -1;
          const r1 = readVevent(e, q.fd);
          expect(r1).toEqual({ flags: 0, seq: prev + 1, virtId: 0x99, len: 12 });
          prev = r1.seq;
          fails(e, EEXIST, () => vdeviceAlloc(e, f.viommu, f.dev, 0x99n).rc);
          fails(e, EEXIST, () => vdeviceAlloc(e, f.viommu, f.dev, 0x77n).rc);
          ok(e.p, replace(e, f.stdev, f.ioas));
          // Detached from the nested domain: no event source.
          fails(e, ENOENT, () => triggerVevent(e, f.dev));
          ok(e.p, destroy(e, vd.id));
          const vd2 = vdeviceAlloc(e, f.viommu, f.dev, 0x88n);
          ok(e.p, vd2.rc);
          ok(e.p, replace(e, f.stdev, f.nested));
          // Three events into a depth-2 queue: the third becomes a LOST_EVENTS header.
          for (let i = 0; i < 3; i++) ok(e.p, triggerVevent(e, f.dev));
          for (let i = 0; i < 2; i++) {
            const r = readVevent(e, q.fd);
            expect(r).toEqual({ flags: 0, seq: prev + 1, virtId: 0x88, len: 12 });
            prev = r.seq;
          }
          const lost = readVevent(e, q.fd);
          expect(lost).toMatchObject({ flags: 1, seq: prev + 1, len: 8 });
          prev = lost.seq;
          // Overflow is gone after the reads.
          ok(e.p, triggerVevent(e, f.dev));
          expect(readVevent(e, q.fd)).toEqual({ flags: 0, seq: prev + 1, virtId: 0x88, len: 12 });
          // Nothing queued: read returns 0 bytes; pread is ESPIPE.
          expect(e.p.read(q.fd, 12)).toEqual(new Uint8Array(0));
          fails(e, ESPIPE, () => Number(e.p.pread(q.fd, 12, 0n)));
          ok(e.p, e.p.close(q.fd));
          ok(e.p, replace(e, f.stdev, f.ioas));
          ok(e.p, destroy(e, vd2.id));
          ok(e.p, destroy(e, q.id));
        } else {
          fails(e, ENOENT, () => vdeviceAlloc(e, f.viommu, f.dev, 0x99n).rc);
        }
        expectNoLeaks(e);
      });

      it("58b vEVENTQ_ALLOC check order and a small buffer keeps the event queued", () => {
        const f = fixture(variant);
        const { e } = f;
        fails(e, EOPNOTSUPP, () => veventqAlloc(e, f.viommu, 0, 2).rc);
        fails(e, EINVAL, () => veventqAlloc(e, f.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 0).rc);
        // the depth cap, 1 << 19 (the 7.2 selftest's VEVENTQ_MAX_DEPTH + 1)
        fails(e, EINVAL, () => veventqAlloc(e, f.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, (1 << 19) + 1).rc);
        fails(e, ENOENT, () => veventqAlloc(e, 0xffff, IOMMU_VEVENTQ_TYPE_SELFTEST, 2).rc);
        if (f.dev !== 0) {
          const max = veventqAlloc(e, f.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 1 << 19);
          ok(e.p, max.rc);
          ok(e.p, e.p.close(max.fd));
          ok(e.p, destroy(e, max.id));
          // With no vEVENTQ of the selftest type the event has nowhere to go.
          ok(e.p, vdeviceAlloc(e, f.viommu, f.dev, 0x5n).rc);
          ok(e.p, replace(e, f.stdev, f.nested));
          fails(e, EOPNOTSUPP, () => triggerVevent(e, f.dev));
          const q = veventqAlloc(e, f.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 4);
          ok(e.p, q.rc);
          ok(e.p, triggerVevent(e, f.dev));
          // a header fits but the payload does not: EINVAL, the event stays queued
          expect(e.p.read(q.fd, 11)).toBe(-EINVAL);
          expect(readVevent(e, q.fd)).toMatchObject({ seq: 0, virtId: 5 });
          // The vEVENTQ holds the vIOMMU; the fd holds the vEVENTQ (closed: destroyable).
          fails(e, EBUSY, () => destroy(e, q.id));
          ok(e.p, e.p.close(q.fd));
          ok(e.p, triggerVevent(e, f.dev));
          ok(e.p, destroy(e, q.id));
          ok(e.p, replace(e, f.stdev, f.ioas));
        }
        expectNoLeaks(e);
      });

      it("59 vdevice_cache: HWPT_INVALIDATE on the vIOMMU clears the mock device cache", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          ok(e.p, vdeviceAlloc(e, f.viommu, f.dev, 0x99n).rc);
          const all = (v: number[]) => {
            for (const [i, x] of v.entries()) ok(e.p, checkDevCache(e, f.dev, i, x));
          };
          const D = IOMMU_TEST_DEV_CACHE_DEFAULT;
          all([D, D, D, D]);
          const T = IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST;
          const zero = new Uint8Array(24);
          let r = invalidate(e, f.viommu, T, 12, 0, zero);
          ok(e.p, r.rc);
          expect(r.num).toBe(0);
          const inv = (
            errno: number,
            type: number,
            len: number,
            num: number,
            data?: Uint8Array,
            want = 0,
          ) => {
            const before = snap(e);
            const x = invalidate(e, f.viommu, type, len, num, data);
            expectErrno(e.p, x.rc, errno);
            expect(x.num).toBe(want);
            expect(snap(e)).toEqual(before);
          };
          inv(EINVAL, 0xdadbeef, 12, 1, zero);
          inv(EINVAL, T, 13, 1, zero);
          inv(EINVAL, T, 1, 1, zero);
          inv(EOPNOTSUPP, T, 12, 1, u32s(0xffffffff, 0x99, 0));
          inv(EINVAL, T, 12, 1, undefined);
          inv(EINVAL, T, 0, 1, u32s(0, 0x99, 0));
          inv(EINVAL, T, 12, 1, u32s(0, 0x99, 4));
          inv(EINVAL, T, 12, 1, u32s(0, 0x9, 0));
          all([D, D, D, D]);
          // The first entry is applied, the second fails: entry_num 1.
          inv(EOPNOTSUPP, T, 12, 2, u32s(0, 0x99, 0, 0xffffffff, 0x99, 1), 1);
          all([0, D, D, D]);
          inv(EINVAL, T, 12, 2, u32s(0, 0x99, 1, 0, 0x99, 4), 1);
          all([0, 0, D, D]);
          r = invalidate(e, f.viommu, T, 12, 1, u32s(0, 0x99, 2));
          ok(e.p, r.rc);
          expect(r.num).toBe(1);
          all([0, 0, 0, D]);
          r = invalidate(e, f.viommu, T, 12, 1, u32s(1, 0x99, 0));
          ok(e.p, r.rc);
          all([0, 0, 0, 0]);
          fails(e, EINVAL, () => checkDevCache(e, f.dev, 4, 0));
        }
        expectNoLeaks(e);
      });

      // mock_viommu_cache_invalidate() reads the array with iommu_copy_struct_from_full_user_array(),
      // i.e. plain copy_struct_from_user() per entry: unlike the nested HWPT's entries (and the
      // VIOMMU_ALLOC data), a longer entry with a zero tail is taken and a short one zero-filled.
      it.skipIf(variant === "no_viommu")(
        "59b vIOMMU invalidation entries: copy_struct_from_user sizes",
        () => {
          const f = fixture(variant);
          const { e } = f;
          ok(e.p, vdeviceAlloc(e, f.viommu, f.dev, 0x99n).rc);
          const D = IOMMU_TEST_DEV_CACHE_DEFAULT;
          const cache = (v: number[]) => {
            for (const [i, x] of v.entries()) ok(e.p, checkDevCache(e, f.dev, i, x));
          };
          const T = IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST;
          const entry16 = (cacheId: number, tail: number) => u32s(0, 0x99, cacheId, tail);
          // 16-byte entries, tail zero: both applied
          let r = invalidate(e, f.viommu, T, 16, 2, new Uint8Array([...entry16(3, 0), ...entry16(2, 0)]));
          ok(e.p, r.rc);
          expect(r.num).toBe(2);
          cache([D, D, 0, 0]);
          // a non-zero byte past the kernel's 12: E2BIG before any entry is applied
          fails(
            e,
            E2BIG,
            () => invalidate(e, f.viommu, T, 16, 2, new Uint8Array([...entry16(1, 0), ...entry16(0, 1)])).rc,
          );
          r = invalidate(e, f.viommu, T, 16, 1, entry16(1, 0x100));
          expect(r).toEqual({ rc: -E2BIG, num: 0 });
          cache([D, D, 0, 0]);
          // an 8-byte entry: cache_id is zero-filled, so cache 0 is cleared
          r = invalidate(e, f.viommu, T, 8, 1, u32s(0, 0x99));
          ok(e.p, r.rc);
          expect(r.num).toBe(1);
          cache([0, D, 0, 0]);
          expectNoLeaks(e);
        },
      );

      it("60 hw_queue: check order, index chain, locked IOVA, dependency EBUSY", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          const T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
          let iova = 1n << 24n;
          fails(e, EOPNOTSUPP, () => hwQueueAlloc(e, f.viommu, 0, 0, iova, P).rc);
          fails(e, EINVAL, () => hwQueueAlloc(e, f.viommu, T, 0, iova, 0n).rc);
          fails(e, EOVERFLOW, () => hwQueueAlloc(e, f.viommu, T, 0, (1n << 64n) - 1n, P).rc);
          fails(e, ENOENT, () => hwQueueAlloc(e, f.viommu, T, 0, iova, P).rc);
          const buf = mmap(e, 2n * P);
          const m1 = map(e, f.ioas, buf, P);
          ok(e.p, m1.rc);
          iova = m1.iova;
          const m2 = map(e, f.ioas, buf + P, P);
          ok(e.p, m2.rc);
          fails(e, EIO, () => hwQueueAlloc(e, f.viommu, T, 1, iova, P).rc);
          fails(e, EINVAL, () => hwQueueAlloc(e, f.viommu, T, 2, iova, P).rc);
          const q0 = hwQueueAlloc(e, f.viommu, T, 0, iova, P);
          ok(e.p, q0.rc);
          fails(e, EEXIST, () => hwQueueAlloc(e, f.viommu, T, 0, iova, P).rc);
          fails(e, EBUSY, () => unmap(e, f.ioas, iova, P).rc);
          ok(e.p, unmap(e, f.ioas, m2.iova, P).rc);
          const q1 = hwQueueAlloc(e, f.viommu, T, 1, iova + P / 2n, P / 2n);
          ok(e.p, q1.rc);
          fails(e, EBUSY, () => destroy(e, q0.id));
          // The queues hold the vIOMMU and (through their pins) the IOAS.
          fails(e, EBUSY, () => destroy(e, f.viommu));
          ok(e.p, destroy(e, q1.id));
          ok(e.p, destroy(e, q0.id));
          ok(e.p, unmap(e, f.ioas, iova, P).rc);
          // Queue pages must be physically contiguous: two separate pages are EFAULT.
          const two = mmap(e, 2n * P);
          e.p.writeMemory(two, new Uint8Array([1]));
          e.p.writeMemory(two + P, new Uint8Array([1]));
          const far = mmap(e, 16n * P);
          e.p.writeMemory(far + 8n * P, new Uint8Array([1]));
          ok(e.p, map(e, f.ioas, two, P, 1n << 28n).rc);
          ok(e.p, map(e, f.ioas, far + 8n * P, P, (1n << 28n) + P).rc);
          fails(e, EFAULT, () => hwQueueAlloc(e, f.viommu, T, 0, 1n << 28n, 2n * P).rc);
        } else {
          fails(e, ENOENT, () => hwQueueAlloc(e, 1, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, 1n << 24n, P).rc);
        }
        expectNoLeaks(e);
      });

      it("nested HWPT through the vIOMMU: mock IOTLB, DESTROY order, device on another IOMMU", () => {
        const f = fixture(variant);
        const { e } = f;
        if (f.dev !== 0) {
          for (let i = 0; i < 4; i++) ok(e.p, checkIotlb(e, f.nested, i, IOMMU_TEST_IOTLB_DEFAULT));
          // Nested HWPTs through a vIOMMU take no driver data-less or NEST_PARENT requests.
          fails(
            e,
            EOPNOTSUPP,
            () =>
              hwptAlloc(e, f.dev, f.viommu, NEST_PARENT, {
                dataType: IOMMU_HWPT_DATA_SELFTEST,
                data: u32s(1),
              }).rc,
          );
          fails(e, EOPNOTSUPP, () => hwptAlloc(e, f.dev, f.viommu, 0, { dataType: 0xbad, data: u32s(1) }).rc);
          fails(e, EINVAL, () => hwptAlloc(e, f.dev, f.viommu, 0, { dataType: 0, data: u32s(1) }).rc);
          // The nested HWPT holds the vIOMMU, not the parent directly.
          fails(e, EBUSY, () => destroy(e, f.viommu));
          ok(e.p, destroy(e, f.nested));
          ok(e.p, destroy(e, f.viommu));
          ok(e.p, destroy(e, f.hwpt));
        }
        expectNoLeaks(e);
      });
    });
  }
});

describe("alloc_hwpt_nested IOPF parts (15) and the fault queue fd", () => {
  function parentFixture() {
    const e = setup();
    const ioas = ioasAlloc(e);
    const md = mockDomain(e, ioas);
    ok(e.p, md.rc);
    const parent = hwptAlloc(e, md.idev, ioas, NEST_PARENT);
    ok(e.p, parent.rc);
    return { e, ioas, md, parent: parent.id };
  }

  it("iopf nested HWPT: bad fault id ENOENT; replace, DESTROY EBUSY, trigger, read and respond", () => {
    const { e, ioas, md, parent } = parentFixture();
    const fq = faultAlloc(e);
    ok(e.p, fq.rc);
    fails(e, ENOENT, () => nestedAlloc(e, md.idev, parent, FAULT_ID_VALID, 0xffffffff).rc);
    // A paging HWPT takes no FAULT_ID_VALID.
    fails(e, EOPNOTSUPP, () => hwptAlloc(e, md.idev, ioas, FAULT_ID_VALID, { faultId: fq.id }).rc);
    const iopf = nestedAlloc(e, md.idev, parent, FAULT_ID_VALID, fq.id);
    ok(e.p, iopf.rc);
    ok(e.p, replace(e, md.stdev, iopf.id));
    fails(e, EBUSY, () => destroy(e, iopf.id));
    const rec = triggerAndServe(e, md.idev, fq.fd);
    expect(rec).toMatchObject({ flags: 2, devId: md.idev, grpid: 2, perm: 3, addr: 0xdeadbeafn, length: 0 });
    // The answered cookie is gone.
    fails(e, EINVAL, () => e.p.write(fq.fd, u32s(rec.cookie, 0)));
    ok(e.p, replace(e, md.stdev, parent));
    ok(e.p, destroy(e, iopf.id));
    ok(e.p, e.p.close(fq.fd));
    ok(e.p, destroy(e, fq.id));
    expectNoLeaks(e);
  });

  it("fault fd: record-sized reads and writes only, cookies lowest-free, bad responses, auto-response on detach", () => {
    const { e, md, parent } = parentFixture();
    fails(e, EOPNOTSUPP, () => faultAlloc(e, 1).rc);
    const fq = faultAlloc(e);
    ok(e.p, fq.rc);
    const iopf = nestedAlloc(e, md.idev, parent, FAULT_ID_VALID, fq.id);
    ok(e.p, iopf.rc);
    // Not attached: the core answers the request itself, nothing is queued.
    ok(e.p, triggerIopf(e, md.idev));
    expect(e.p.read(fq.fd, 40)).toEqual(new Uint8Array(0));
    ok(e.p, replace(e, md.stdev, iopf.id));
    for (let i = 0; i < 3; i++) ok(e.p, triggerIopf(e, md.idev, 0, i));
    fails(e, ESPIPE, () => Number(e.p.read(fq.fd, 39)));
    fails(e, ESPIPE, () => Number(e.p.pread(fq.fd, 40, 0n)));
    const two = e.p.read(fq.fd, 80) as Uint8Array;
    expect(two.length).toBe(80);
    const dv = new DataView(two.buffer, two.byteOffset, 80);
    expect([dv.getUint32(36, true), dv.getUint32(76, true)]).toEqual([1, 2]);
    expect([dv.getUint32(12, true), dv.getUint32(52, true)]).toEqual([0, 1]);
    fails(e, ESPIPE, () => e.p.write(fq.fd, new Uint8Array(7)));
    fails(e, EINVAL, () => e.p.write(fq.fd, u32s(1, 2)));
    fails(e, EINVAL, () => e.p.write(fq.fd, u32s(9, 0)));
    // A good response then a bad one: the good one counts, no error.
    expect(e.p.write(fq.fd, u32s(1, 1, 9, 0))).toBe(8);
    // Replace back: the delivered-but-unanswered cookie 2 and the queued third request are answered INVALID.
    ok(e.p, replace(e, md.stdev, parent));
    expect(e.p.read(fq.fd, 40)).toEqual(new Uint8Array(0));
    fails(e, EINVAL, () => e.p.write(fq.fd, u32s(2, 0)));
    ok(e.p, destroy(e, iopf.id));
    // The fd holds the queue: DESTROY is EBUSY until it is closed.
    fails(e, EBUSY, () => destroy(e, fq.id));
    ok(e.p, e.p.close(fq.fd));
    ok(e.p, destroy(e, fq.id));
    expectNoLeaks(e);
  });

  it("the fault fd keeps the iommufd context open; closing both releases everything", () => {
    const { e, md, parent } = parentFixture();
    const fq = faultAlloc(e);
    ok(e.p, fq.rc);
    const iopf = nestedAlloc(e, md.idev, parent, FAULT_ID_VALID, fq.id);
    ok(e.p, iopf.rc);
    ok(e.p, replace(e, md.stdev, iopf.id));
    ok(e.p, triggerIopf(e, md.idev));
    ok(e.p, e.p.close(e.fd));
    expect(e.m.debug.counters().iommufdContexts).toBe(1);
    expect((e.p.read(fq.fd, 40) as Uint8Array).length).toBe(40);
    ok(e.p, e.p.close(fq.fd));
    expect(e.m.debug.counters().iommufdContexts).toBe(0);
    expect(e.m.debug.counters().objects).toBe(0);
    expectNoLeaks(e);
  });
});

describe("vIOMMU uapi on amd and intel (no viommu_init in their drivers)", () => {
  for (const iommu of ["amd", "intel"] as const) {
    it(`${iommu}: VIOMMU_ALLOC EOPNOTSUPP; VDEVICE/VEVENTQ/HW_QUEUE fail the vIOMMU lookup; FAULT_QUEUE_ALLOC works`, () => {
      const e = setup({ iommu, kconfig: {} });
      const ioas = ioasAlloc(e);
      const dev = e.m.iommu.device("0000:00:04.0");
      const ictx = iommufdCtxFromFile(e.p.task.fdget(e.fd));
      const idev = iommufdDeviceBind(ictx, dev);
      const parent = hwptAlloc(e, idev.id, ioas, NEST_PARENT);
      ok(e.p, parent.rc);
      fails(e, EOPNOTSUPP, () => viommuAlloc(e, idev.id, parent.id, 1).rc);
      fails(e, EOPNOTSUPP, () => viommuAlloc(e, idev.id, parent.id, IOMMU_VIOMMU_TYPE_SELFTEST).rc);
      fails(e, ENOENT, () => vdeviceAlloc(e, parent.id, idev.id, 1n).rc);
      fails(e, ENOENT, () => veventqAlloc(e, parent.id, 1, 2).rc);
      fails(e, ENOENT, () => hwQueueAlloc(e, parent.id, 1, 0, 1n << 24n, P).rc);
      const fq = faultAlloc(e);
      ok(e.p, fq.rc);
      // No nested domains in these drivers: an IOPF-capable HWPT cannot be made.
      fails(
        e,
        EOPNOTSUPP,
        () =>
          hwptAlloc(e, idev.id, parent.id, FAULT_ID_VALID, {
            dataType: 1,
            data: u32s(0, 0, 0, 0),
            faultId: fq.id,
          }).rc,
      );
      ok(e.p, e.p.close(fq.fd));
      ok(e.p, destroy(e, fq.id));
      ok(e.p, destroy(e, parent.id));
      iommufdDeviceUnbind(idev);
      expectNoLeaks(e);
    });
  }
});
