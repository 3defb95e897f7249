import { expect, it } from "vitest";
import { EINVAL, fail, KernelError } from "../../src/uapi/errno.js";

function thrown(fn: () => void): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("did not throw");
}

it("a KernelError is an Error to anyone who catches it, with its errno, reason and message", () => {
  const e = thrown(() => fail(EINVAL, "size 8 is below the minimum 12")) as KernelError;
  expect(e).toBeInstanceOf(KernelError);
  expect(e).toBeInstanceOf(Error);
  expect(e.errno).toBe(EINVAL);
  expect(e.reason).toBe("size 8 is below the minimum 12");
  expect(e.message).toBe("EINVAL: size 8 is below the minimum 12");
  expect(e.name).toBe("KernelError");
  expect(String(e)).toBe("KernelError: EINVAL: size 8 is below the minimum 12");
  expect(() => fail(EINVAL, "x")).toThrow(/EINVAL: x/);
});

it("captures no stack trace unless asked to (a failing syscall must stay cheap)", () => {
  const e = thrown(() => fail(EINVAL, "x")) as KernelError;
  expect(e.stack).toBeUndefined();
  KernelError.captureStacks = true;
  try {
    const d = thrown(() => fail(EINVAL, "y")) as KernelError;
    expect(d.stack).toMatch(/KernelError: EINVAL: y\n\s+at /);
  } finally {
    KernelError.captureStacks = false;
  }
});
