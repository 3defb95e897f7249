import { describe, expect, it } from "vitest";
import { errno, Machine, uapi } from "../../src/index.js";
import { KFile } from "../../src/kernel/file.js";
import { Tracer } from "../../src/kernel/trace.js";
import { encode } from "../../src/uapi/struct.js";

const { EBADF, EFAULT, EINVAL, EIO, ENOTTY } = errno;
const RW = uapi.PROT_READ | uapi.PROT_WRITE;
const ANON = uapi.MAP_PRIVATE | uapi.MAP_ANONYMOUS;

/**
 * The untraced syscall paths refuse without a throw (Task.refuse) and make
 * a trace event only when a call fails: they must say exactly what the
 * traced path says, keep a reason on every errno, and change nothing.
 */
describe.each([false, true])("syscall refusals (trace %s)", (trace) => {
  function setup() {
    const m = new Machine({ iommu: "amd", seed: 1, trace });
    const p = m.spawn();
    const fd = p.open("/dev/iommu");
    const va = p.mmap(0n, 8192n, RW, ANON);
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(va).toBeGreaterThan(0n);
    return { m, p, fd, va };
  }

  it("a struct below its minimum size: EINVAL with the rule, the event kept, nothing changed", () => {
    const { m, p, fd, va } = setup();
    expect(p.writeMemory(va, encode(uapi.iommu_ioas_alloc, { size: 8 }))).toBe(0);
    const before = m.debug.counters();
    const nFail = m.debug.failures().length;
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, va)).toBe(-EINVAL);
    expect(p.lastError()).toEqual({
      call: "ioctl",
      errno: EINVAL,
      name: "EINVAL",
      reason: "iommu_ioas_alloc: size 8 is below the minimum 12 (offsetofend of the last mandatory field)",
    });
    const ev = m.debug.failures().at(-1)!;
    expect(m.debug.failures().length).toBe(nFail + 1);
    expect(ev).toMatchObject({ call: "ioctl", args: [fd, uapi.IOMMU_IOAS_ALLOC, va], ret: -EINVAL });
    expect(ev.fdKind).toBe("iommufd");
    expect(m.debug.counters()).toEqual(before);
    if (trace) expect(m.debug.trace().at(-1)).toBe(ev);
  });

  it("an unknown iommufd command: ENOTTY with the rule, without a throw", () => {
    const { p, fd, va } = setup();
    expect(p.writeMemory(va, encode(uapi.iommu_ioas_alloc, { size: 12 }))).toBe(0);
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC | (1 << 16), va)).toBe(-ENOTTY);
    expect(p.lastError()?.reason).toMatch(/is not an iommufd command of this kernel/);
  });

  it("the struct's size word read from user memory: across a page boundary, and EFAULT past the mapping", () => {
    const { p, fd, va } = setup();
    // the size word straddles the two pages of the mapping: 12 read whole
    const at = va + 4096n - 2n;
    expect(p.writeMemory(at, encode(uapi.iommu_ioas_alloc, { size: 12 }))).toBe(0);
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, at)).toBe(0);
    // past the end of the mapping: EFAULT with the address
    expect(p.munmap(va + 4096n, 4096n)).toBe(0);
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, at)).toBe(-EFAULT);
    expect(p.lastError()?.reason).toMatch(/cannot read 4 bytes of user memory at 0x/);
    // an untouched page reads as zeros: size 0 is below the minimum
    const fresh = p.mmap(0n, 4096n, RW, ANON);
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, fresh)).toBe(-EINVAL);
    expect(p.lastError()?.reason).toMatch(/size 0 is below the minimum 12/);
  });

  it("close and ioctl of a bad fd: EBADF with the fd and pid", () => {
    const { m, p } = setup();
    const before = m.debug.counters();
    expect(p.close(1 << 20)).toBe(-EBADF);
    expect(p.lastError()).toMatchObject({
      call: "close",
      reason: `fd ${1 << 20} is not open in pid ${p.pid}`,
    });
    expect(p.ioctl(-1, uapi.IOMMU_IOAS_ALLOC, 0n)).toBe(-EBADF);
    expect(p.ioctl(1.5, uapi.IOMMU_IOAS_ALLOC, 0n)).toBe(-EBADF);
    expect(p.lastError()).toMatchObject({ call: "ioctl", reason: `fd 1.5 is not open in pid ${p.pid}` });
    expect(m.debug.counters()).toEqual(before);
  });

  it("a handler's -errno without a reason is a model bug: EIO, counted, with the reason saying so", () => {
    const { m, p } = setup();
    const withReason = p.task.fdInstall(
      new KFile(
        { kind: "probe", ioctl: (_f, task) => task.refuse(EINVAL, "probe says no") },
        undefined,
        "/x",
        2,
      ),
    );
    const without = p.task.fdInstall(new KFile({ kind: "probe", ioctl: () => -EINVAL }, undefined, "/y", 2));
    expect(p.ioctl(withReason, 1)).toBe(-EINVAL);
    expect(p.lastError()?.reason).toBe("probe says no");
    expect(m.debug.internalErrors()).toEqual([]);
    expect(p.ioctl(without, 1)).toBe(-EIO);
    expect(p.lastError()?.reason).toMatch(
      /internal model error in ioctl: a handler returned -22 without a reason/,
    );
    expect(m.debug.internalErrors()).toHaveLength(1);
    // a refusal left by an earlier call is not taken by a later one
    expect(p.ioctl(withReason, 1)).toBe(-EINVAL);
    expect(p.ioctl(without, 1)).toBe(-EIO);
  });
});

it("failures() keeps the newest failed calls, bounded", () => {
  const m = new Machine();
  const p = m.spawn();
  for (let i = 0; i < Tracer.MAX_FAILURES * 3; i++) expect(p.close(1000 + i)).toBe(-EBADF);
  const f = m.debug.failures();
  expect(f.length).toBeGreaterThanOrEqual(Tracer.MAX_FAILURES);
  expect(f.length).toBeLessThanOrEqual(Tracer.MAX_FAILURES + 256);
  expect(f.at(-1)?.args).toEqual([1000 + Tracer.MAX_FAILURES * 3 - 1]);
  const seqs = f.map((e) => e.seq);
  expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
});
