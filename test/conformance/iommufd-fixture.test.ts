// selftest-catalogue.md Part B, fixture `iommufd` (tests 1-11).
import { describe, expect, it } from "vitest";
import { E2BIG, EFAULT, EINVAL, ENODEV, ENOENT, ENOTTY, EPERM } from "../../src/uapi/errno.js";
import { _IO } from "../../src/uapi/ioc.js";
import { encode, type StructDef } from "../../src/uapi/struct.js";
import * as V from "../../src/uapi/vfio.js";
import { call, expectErrno, expectNoLeaks, ioasAlloc, ok, setup, state, U } from "./helpers.js";

describe("fixture iommufd", () => {
  it("1 simple_close", () => {
    const e = setup();
    expect(e.p.close(e.fd)).toBe(0);
    expect(e.m.debug.counters().iommufdContexts).toBe(0);
    expectNoLeaks(e);
  });

  it("2 cmd_fail: DESTROY 0 ENOENT, NULL arg EFAULT, nr BASE-1 ENOTTY", () => {
    const e = setup();
    expectErrno(e.p, call(e.p, e.fd, U.IOMMU_DESTROY, U.iommu_destroy, { id: 0 }).rc, ENOENT);
    expectErrno(e.p, e.p.ioctl(e.fd, U.IOMMU_DESTROY, 0n), EFAULT);
    expectErrno(e.p, e.p.ioctl(e.fd, _IO(0x3b, 0x7f), 0n), ENOTTY);
    expectNoLeaks(e);
  });

  // Each command with a valid-enough body: size min-1 EINVAL; sizeof+1 with a non-zero byte E2BIG;
  // sizeof+1 with a zero byte behaves exactly as sizeof.
  const cmds: [string, number, () => Record<string, bigint | number>][] = [
    ["IOMMU_DESTROY", U.IOMMU_DESTROY, () => ({ id: 0 })],
    ["IOMMU_GET_HW_INFO", U.IOMMU_GET_HW_INFO, () => ({ dev_id: 0 })],
    ["IOMMU_HWPT_ALLOC", U.IOMMU_HWPT_ALLOC, () => ({})],
    ["IOMMU_HWPT_INVALIDATE", U.IOMMU_HWPT_INVALIDATE, () => ({})],
    ["IOMMU_IOAS_ALLOC", U.IOMMU_IOAS_ALLOC, () => ({})],
    ["IOMMU_IOAS_IOVA_RANGES", U.IOMMU_IOAS_IOVA_RANGES, () => ({ ioas_id: 0 })],
    ["IOMMU_IOAS_ALLOW_IOVAS", U.IOMMU_IOAS_ALLOW_IOVAS, () => ({ ioas_id: 0 })],
    ["IOMMU_IOAS_MAP", U.IOMMU_IOAS_MAP, () => ({ ioas_id: 0, flags: 6, length: 4096 })],
    ["IOMMU_IOAS_COPY", U.IOMMU_IOAS_COPY, () => ({ flags: 6, length: 4096 })],
    ["IOMMU_IOAS_UNMAP", U.IOMMU_IOAS_UNMAP, () => ({ length: 4096 })],
    ["IOMMU_OPTION", U.IOMMU_OPTION, () => ({ option_id: 0, op: 1 })],
    ["IOMMU_VFIO_IOAS", U.IOMMU_VFIO_IOAS, () => ({ op: 0 })],
    ["IOMMU_IOAS_MAP_FILE", U.IOMMU_IOAS_MAP_FILE, () => ({ flags: 6, length: 4096, fd: -1 })],
    ["IOMMU_VIOMMU_ALLOC", U.IOMMU_VIOMMU_ALLOC, () => ({ type: 1 })],
    ["IOMMU_VDEVICE_ALLOC", U.IOMMU_VDEVICE_ALLOC, () => ({})],
    ["IOMMU_IOAS_CHANGE_PROCESS", U.IOMMU_IOAS_CHANGE_PROCESS, () => ({})],
  ];
  it.each(cmds)("3 cmd_length %s", (name, req, body) => {
    const def = U.iommufdIoctlByName(name)!;
    const e = setup();
    const before = state(e);
    expectErrno(e.p, call(e.p, e.fd, req, def.struct, body(), def.minSize - 1).rc, EINVAL);
    const big = U.IOMMUFD_IOCTLS.find((d) => d.name === name)!.struct.size + 1;
    // non-zero trailing byte
    const b1 = new Uint8Array(big);
    const enc = callBuf(def.struct, body());
    b1.set(enc);
    b1[big - 1] = 0xaa;
    new DataView(b1.buffer).setUint32(0, big, true);
    expectErrno(e.p, e.p.ioctl(e.fd, req, b1), E2BIG);
    // zero trailing byte = same as exact size (fresh contexts so IDs line up)
    const e1 = setup();
    const e2 = setup();
    const exact = callBuf(def.struct, body());
    const rc1 = e1.p.ioctl(e1.fd, req, exact);
    const b2 = new Uint8Array(big);
    b2.set(callBuf(def.struct, body()));
    new DataView(b2.buffer).setUint32(0, big, true);
    const rc2 = e2.p.ioctl(e2.fd, req, b2);
    expect(rc2).toBe(rc1);
    expect(state(e)).toEqual(before);
    expectNoLeaks(e);
    expectNoLeaks(e1);
    expectNoLeaks(e2);
  });

  it("4 cmd_ex_fail: DESTROY with a longer struct", () => {
    const e = setup();
    const d = U.iommu_destroy;
    const longer = (tail: number) => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setUint32(0, 16, true);
      v.setUint32(4, 0, true);
      b[12] = tail;
      return b;
    };
    expectErrno(e.p, e.p.ioctl(e.fd, U.IOMMU_DESTROY, longer(0)), ENOENT);
    expectErrno(e.p, e.p.ioctl(e.fd, U.IOMMU_DESTROY, longer(1)), E2BIG);
    expectErrno(e.p, call(e.p, e.fd, U.IOMMU_DESTROY, d, { id: 0 }).rc, ENOENT);
    expectErrno(e.p, call(e.p, e.fd, U.IOMMU_DESTROY, d, { id: 0 }, 7).rc, EINVAL);
    expectNoLeaks(e);
  });

  it("5 global_options: RLIMIT_MODE get/set, HUGE_PAGES with object 0", () => {
    const e = setup({ caps: ["CAP_SYS_RESOURCE"] });
    const opt = (v: Record<string, number | bigint>) => call(e.p, e.fd, U.IOMMU_OPTION, U.iommu_option, v);
    let r = opt({ option_id: 0, op: 1 });
    ok(e.p, r.rc);
    expect(r.out.val64).toBe(0n);
    ok(e.p, opt({ option_id: 0, op: 0, val64: 1 }).rc);
    expectErrno(e.p, opt({ option_id: 0, op: 0, val64: 2 }).rc, EINVAL);
    r = opt({ option_id: 0, op: 1 });
    expect(r.out.val64).toBe(1n);
    ok(e.p, opt({ option_id: 0, op: 0, val64: 0 }).rc);
    expectErrno(e.p, opt({ option_id: 1, op: 1, object_id: 0 }).rc, ENOENT);
    expectErrno(e.p, opt({ option_id: 1, op: 0, object_id: 0, val64: 1 }).rc, ENOENT);
    // Without CAP_SYS_RESOURCE: EPERM; with an object: EBUSY.
    const u = setup();
    expectErrno(
      u.p,
      call(u.p, u.fd, U.IOMMU_OPTION, U.iommu_option, { option_id: 0, op: 0, val64: 1 }).rc,
      EPERM,
    );
    ioasAlloc(e);
    expectErrno(e.p, opt({ option_id: 0, op: 0, val64: 1 }).rc, 16);
    expect(opt({ option_id: 0, op: 1 }).out.val64).toBe(0n);
    expectNoLeaks(e);
    expectNoLeaks(u);
  });

  it("6 simple_ioctls: VFIO API version and TYPE1v2 extension", () => {
    const e = setup();
    expect(e.p.ioctl(e.fd, V.VFIO_GET_API_VERSION)).toBe(V.VFIO_API_VERSION);
    expect(e.p.ioctl(e.fd, V.VFIO_CHECK_EXTENSION, BigInt(V.VFIO_TYPE1v2_IOMMU))).toBe(1);
    expectNoLeaks(e);
  });

  it("7 unmap_cmd", () => {
    const e = setup();
    const um = (argsz: number, flags: number) => {
      const b = new Uint8Array(24);
      const v = new DataView(b.buffer);
      v.setUint32(0, argsz, true);
      v.setUint32(4, flags, true);
      v.setBigUint64(16, 4096n, true);
      return e.p.ioctl(e.fd, V.VFIO_IOMMU_UNMAP_DMA, b);
    };
    expectErrno(e.p, um(1, 0), EINVAL);
    expectErrno(e.p, um(24, 1 << 31), EINVAL);
    expectErrno(e.p, um(24, 0), ENODEV);
    expectNoLeaks(e);
  });

  it("8 map_cmd", () => {
    const e = setup();
    const mp = (argsz: number, flags: number) => {
      const b = new Uint8Array(32);
      const v = new DataView(b.buffer);
      v.setUint32(0, argsz, true);
      v.setUint32(4, flags, true);
      v.setBigUint64(24, 4096n, true);
      return e.p.ioctl(e.fd, V.VFIO_IOMMU_MAP_DMA, b);
    };
    expectErrno(e.p, mp(1, 3), EINVAL);
    expectErrno(e.p, mp(32, 1 << 31), EINVAL);
    expectErrno(e.p, mp(32, 3), ENODEV);
    expectNoLeaks(e);
  });

  it("9 info_cmd", () => {
    const e = setup();
    const b = new Uint8Array(24);
    new DataView(b.buffer).setUint32(0, 1, true);
    expectErrno(e.p, e.p.ioctl(e.fd, V.VFIO_IOMMU_GET_INFO, b), EINVAL);
    new DataView(b.buffer).setUint32(0, 24, true);
    expectErrno(e.p, e.p.ioctl(e.fd, V.VFIO_IOMMU_GET_INFO, b), ENODEV);
    expectNoLeaks(e);
  });

  it("10 set_iommu_cmd", () => {
    const e = setup();
    expectErrno(e.p, e.p.ioctl(e.fd, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1v2_IOMMU)), ENODEV);
    expectErrno(e.p, e.p.ioctl(e.fd, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1_IOMMU)), ENODEV);
    expectNoLeaks(e);
  });

  it("11 vfio_ioas", () => {
    const e = setup();
    const vi = (op: number, id = 0) =>
      call(e.p, e.fd, U.IOMMU_VFIO_IOAS, U.iommu_vfio_ioas, { op, ioas_id: id });
    expectErrno(e.p, vi(0).rc, ENODEV);
    expectErrno(e.p, vi(1, 0).rc, ENOENT);
    const id = ioasAlloc(e);
    ok(e.p, vi(1, id).rc);
    const g = vi(0);
    ok(e.p, g.rc);
    expect(Number(g.out.ioas_id)).toBe(id);
    ok(e.p, vi(2).rc);
    expectErrno(e.p, vi(0).rc, ENODEV);
    expectNoLeaks(e);
  });
});

function callBuf(def: StructDef, v: Record<string, number | bigint>): Uint8Array {
  return encode(def, { size: def.size, ...v });
}
