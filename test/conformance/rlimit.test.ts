// Pinning and accounting: RLIMIT_MEMLOCK per account mode (iommufd-semantics.md §11).
import { describe, expect, it } from "vitest";
import { ENOMEM } from "../../src/uapi/errno.js";
import {
  call,
  expectErrno,
  expectNoLeaks,
  ioasAlloc,
  map,
  mmap,
  mockDomain,
  ok,
  setup,
  state,
  touch,
  U,
} from "./helpers.js";

describe("RLIMIT_MEMLOCK accounting of pinned pages", () => {
  it("USER mode: a map over the limit is ENOMEM and leaves nothing pinned or charged", () => {
    const e = setup({ rlimitMemlock: 64n << 10n });
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    const buf = mmap(e, 32n * 4096n);
    touch(e, buf, 32n * 4096n);
    ok(e.p, map(e, ioas, buf, 16n * 4096n).rc);
    const before = state(e);
    expectErrno(e.p, map(e, ioas, buf + 16n * 4096n, 16n * 4096n).rc, ENOMEM);
    expect(state(e)).toEqual(before);
    const mm = e.p.task.mm as unknown as { pinnedVm: number; user: { lockedVm: number }; lockedVm: number };
    expect([mm.pinnedVm, mm.user.lockedVm]).toEqual([16, 16]);
    expect(e.m.debug.checkInvariants()).toEqual([]);
    expectNoLeaks(e);
    expect([mm.pinnedVm, mm.user.lockedVm]).toEqual([0, 0]);
  });

  it("CAP_IPC_LOCK: no limit, nothing charged to locked_vm", () => {
    const e = setup({ rlimitMemlock: 4096n, caps: ["CAP_IPC_LOCK"] });
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    const buf = mmap(e, 64n * 4096n);
    touch(e, buf, 64n * 4096n);
    ok(e.p, map(e, ioas, buf, 64n * 4096n).rc);
    const mm = e.p.task.mm as unknown as { pinnedVm: number; user: { lockedVm: number } };
    expect([mm.pinnedVm, mm.user.lockedVm]).toEqual([64, 0]);
    expectNoLeaks(e);
  });

  it("MM mode (RLIMIT_MODE=1): charged to mm->locked_vm", () => {
    const e = setup({ rlimitMemlock: 1n << 20n, caps: ["CAP_SYS_RESOURCE"] });
    ok(e.p, call(e.p, e.fd, U.IOMMU_OPTION, U.iommu_option, { option_id: 0, op: 0, val64: 1 }).rc);
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    const buf = mmap(e, 8n * 4096n);
    touch(e, buf, 8n * 4096n);
    ok(e.p, map(e, ioas, buf, 8n * 4096n).rc);
    const mm = e.p.task.mm as unknown as { pinnedVm: number; lockedVm: number; user: { lockedVm: number } };
    expect([mm.pinnedVm, mm.lockedVm, mm.user.lockedVm]).toEqual([8, 8, 0]);
    expectNoLeaks(e);
  });

  it("lazy pinning: no domain, garbage user_va maps without touching memory", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    ok(e.p, map(e, ioas, 1n << 31n, 1n << 20n, 1n << 24n).rc);
    expect(e.m.debug.counters().pinnedPages).toBe(0);
    // Attaching a domain now has to pin the garbage range: EFAULT, and the attach is undone.
    const before = state(e);
    expect(mockDomain(e, ioas).rc).toBe(-14);
    expect(state(e)).toEqual(before);
    expectNoLeaks(e);
  });
});
