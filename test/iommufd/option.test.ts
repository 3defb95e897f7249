// IOMMU_OPTION_RLIMIT_MODE (iommufd_option_rlimit_mode, drivers/iommu/iommufd/main.c):
// object_id first (EOPNOTSUPP), GET needs nothing, an unknown op EOPNOTSUPP; SET checks
// CAP_SYS_RESOURCE (EPERM) before the context being empty (EBUSY), and that before the
// value (EINVAL). A refused SET leaves the mode as it was.
import { describe, expect, it } from "vitest";
import { EBUSY, EINVAL, EOPNOTSUPP, EPERM } from "../../src/uapi/errno.js";
import {
  call,
  destroy,
  type Env,
  expectErrno,
  expectNoLeaks,
  ioasAlloc,
  ok,
  setup,
  U,
} from "../conformance/helpers.js";

const RLIMIT_MODE = 0;
const OP_SET = 0;
const OP_GET = 1;

function opt(e: Env, v: Record<string, number | bigint>) {
  return call(e.p, e.fd, U.IOMMU_OPTION, U.iommu_option, { option_id: RLIMIT_MODE, ...v });
}

function mode(e: Env): bigint {
  const r = opt(e, { op: OP_GET });
  ok(e.p, r.rc);
  return r.out.val64 as bigint;
}

describe("IOMMU_OPTION RLIMIT_MODE check order", () => {
  it("without CAP_SYS_RESOURCE and with an object: EPERM, not EBUSY", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 1 }).rc, EPERM);
    // the value is not looked at before the capability either
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 7 }).rc, EPERM);
    // object_id and the op come before the capability
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 1, object_id: ioas }).rc, EOPNOTSUPP);
    expectErrno(e.p, opt(e, { op: 2, val64: 1 }).rc, EOPNOTSUPP);
    // GET needs no capability and the mode did not change
    expect(mode(e)).toBe(0n);
    ok(e.p, destroy(e, ioas));
    // still EPERM on an empty context
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 1 }).rc, EPERM);
    expect(mode(e)).toBe(0n);
    expectNoLeaks(e);
  });

  it("with CAP_SYS_RESOURCE: EBUSY while objects exist (even for a bad value), then EINVAL", () => {
    const e = setup({ caps: ["CAP_SYS_RESOURCE"] });
    const ioas = ioasAlloc(e);
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 1 }).rc, EBUSY);
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 2 }).rc, EBUSY);
    expect(mode(e)).toBe(0n);
    ok(e.p, destroy(e, ioas));
    expectErrno(e.p, opt(e, { op: OP_SET, val64: 2 }).rc, EINVAL);
    expect(mode(e)).toBe(0n);
    ok(e.p, opt(e, { op: OP_SET, val64: 1 }).rc);
    expect(mode(e)).toBe(1n);
    expectNoLeaks(e);
  });
});
