// selftest-catalogue.md Part B: 12 change_process.basic (the forked-child
// part), 31 iommufd_ioas.fork_gone, 32 iommufd_ioas.fork_present — the
// selftest's fork() is p.fork(); the child uses the inherited /dev/iommu fd.
import { describe, expect, it } from "vitest";
import type { Process } from "../../src/kernel/process.js";
import { EFAULT } from "../../src/uapi/errno.js";
import {
  accessRw,
  call,
  createAccess,
  type Env,
  expectClean,
  expectErrno,
  expectNoLeaks,
  ioasAlloc,
  MOCK_APERTURE_START,
  map,
  mockDomain,
  ok,
  P,
  RW,
  setup,
  U,
} from "./helpers.js";

/** iommufd.c's global `buffer`: 16 pages, MAP_SHARED | MAP_ANONYMOUS, mapped before any fork. */
const BUFFER_SIZE = 16n * P;
const MAP_SHARED_ANON = 0x21;
const MOCK_ACCESS_RW_WRITE = 1;

function fork(p: Process): Process {
  const c = p.fork();
  if (typeof c === "number") throw new Error(`fork: ${c} ${p.lastError()?.reason}`);
  return c;
}

/** The same fixture state seen from the child process (same fd numbers). */
const as = (e: Env, p: Process): Env => ({ ...e, p });

/** A deterministic rand(): the selftest's values do not matter, only that they differ. */
function rng(seed: number) {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 16;
  };
}

/**
 * check_access_rw(): fill `buffer`, then for every iova in [iova+P-50,
 * iova+P+50) and every length 1..63 read through the access and compare
 * with the buffer, write random bytes through it and compare again; last
 * one BUFFER_SIZE read.
 */
function checkAccessRw(e: Env, accessFd: number, buffer: bigint, iova: bigint): void {
  const rand = rng(7);
  const fill = new Uint8Array(Number(BUFFER_SIZE)).map(() => rand() & 0xff);
  ok(e.p, e.p.writeMemory(buffer, fill));
  const tmp = e.p.mmap(0n, P, 3, 0x22);
  expect(tmp > 0n).toBe(true);
  for (let at = iova + P - 50n; at < iova + P + 50n; at++) {
    for (let len = 1; len < 64; len++) {
      ok(e.p, accessRw(e, accessFd, at, BigInt(len), tmp, 0));
      expect(e.p.readMemory(tmp, len)).toEqual(e.p.readMemory(buffer + (at - iova), len));
      const rnd = new Uint8Array(64).map(() => rand() & 0xff);
      ok(e.p, e.p.writeMemory(tmp, rnd));
      ok(e.p, accessRw(e, accessFd, at, BigInt(len), tmp, MOCK_ACCESS_RW_WRITE));
      expect(e.p.readMemory(buffer + (at - iova), len)).toEqual(rnd.subarray(0, len));
    }
  }
  const tmp2 = e.p.mmap(0n, BUFFER_SIZE, 3, 0x22);
  ok(e.p, accessRw(e, accessFd, iova, BUFFER_SIZE, tmp2, 0));
  expect(e.p.readMemory(tmp2, Number(BUFFER_SIZE))).toEqual(e.p.readMemory(buffer, Number(BUFFER_SIZE)));
  ok(e.p, e.p.munmap(tmp, P));
  ok(e.p, e.p.munmap(tmp2, BUFFER_SIZE));
}

function ioasFixture(domains: number) {
  const e = setup();
  const buffer = e.p.mmap(0n, BUFFER_SIZE, 3, MAP_SHARED_ANON);
  expect(buffer > 0n).toBe(true);
  const ioas = ioasAlloc(e);
  for (let i = 0; i < domains; i++) ok(e.p, mockDomain(e, ioas).rc);
  return { ...e, ioas, buffer };
}

const variants: [string, number][] = [
  ["no_domain", 0],
  ["mock_domain", 1],
  ["two_mock_domain", 2],
];

describe.each(variants)("fixture iommufd_ioas/%s", (_name, nd) => {
  it("31 fork_gone: the child maps and exits; a new domain copies from an existing one, else EFAULT", () => {
    const f = ioasFixture(nd);
    const acc = createAccess(f, f.ioas, false);
    ok(f.p, acc.rc);
    const child = fork(f.p);
    ok(child, map(as(f, child), f.ioas, f.buffer, BUFFER_SIZE, MOCK_APERTURE_START).rc);
    child.exit();
    if (nd > 0) {
      // everything was pinned within the child: the new domain is filled from the existing one
      ok(f.p, mockDomain(f, f.ioas).rc);
      checkAccessRw(f, acc.fd, f.buffer, MOCK_APERTURE_START);
    } else {
      // pinning now needs the child's mm, which is gone
      const before = f.m.debug.counters();
      expectErrno(f.p, mockDomain(f, f.ioas).rc, EFAULT);
      const after = f.m.debug.counters();
      expect([after.objects, after.pinnedPages, after.ptFrames]).toEqual([
        before.objects,
        before.pinnedPages,
        before.ptFrames,
      ]);
    }
    expectClean(f);
    ok(f.p, f.p.close(acc.fd));
    expectNoLeaks(f);
  });

  it("32 fork_present: the child maps and stays; the parent's new domain pins from the child's mm", () => {
    const f = ioasFixture(nd);
    const acc = createAccess(f, f.ioas, false);
    ok(f.p, acc.rc);
    const efd = f.p.eventfd(0);
    const child = fork(f.p);
    ok(child, map(as(f, child), f.ioas, f.buffer, BUFFER_SIZE, MOCK_APERTURE_START).rc);
    const one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(child.write(efd, one)).toBe(8);
    expect(f.p.read(efd, 8)).toEqual(one);
    // read pages from the remote process
    ok(f.p, mockDomain(f, f.ioas).rc);
    // the pins are the child's: its mm is charged, the parent's is not
    expect(child.task.mm.pinnedVm).toBe(Number(BUFFER_SIZE / P));
    expect(f.p.task.mm.pinnedVm).toBe(0);
    checkAccessRw(f, acc.fd, f.buffer, MOCK_APERTURE_START);
    expectClean(f);
    child.exit();
    expectClean(f);
    ok(f.p, f.p.close(acc.fd));
    expectNoLeaks(f);
  });
});

// Fixture change_process: CAP_IPC_LOCK dropped (CAP_SYS_RESOURCE kept to set
// RLIMIT_MODE); IOAS + one mock domain so MAP_FILE pins at once.
const accounting: [string, number | undefined][] = [
  ["account_none", undefined],
  ["account_user", 0],
  ["account_mm", 1],
];

describe.each(accounting)("fixture change_process/%s", (name, rlimitMode) => {
  it("12 change_process.basic: in a forked child the pinned and locked counts move from parent to child", () => {
    const e = setup({ caps: ["CAP_SYS_RESOURCE"] });
    if (rlimitMode !== undefined) {
      ok(e.p, call(e.p, e.fd, U.IOMMU_OPTION, U.iommu_option, { option_id: 0, op: 0, val64: rlimitMode }).rc);
    }
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    const cp = (p: Process) => call(p, e.fd, U.IOMMU_IOAS_CHANGE_PROCESS, U.iommu_ioas_change_process, {}).rc;
    const mfd = e.p.memfdCreate("change_process");
    ok(e.p, e.p.ftruncate(mfd, P));
    ok(
      e.p,
      call(e.p, e.fd, U.IOMMU_IOAS_MAP_FILE, U.iommu_ioas_map_file, {
        flags: RW,
        ioas_id: ioas,
        fd: mfd,
        length: P,
      }).rc,
    );
    ok(e.p, cp(e.p));
    const mmMode = name === "account_mm";
    // VmPin / VmLck in pages (the selftest reads P/1024 kB)
    const vm = (p: Process) => [p.task.mm.pinnedVm, p.task.mm.lockedVm];
    const child = fork(e.p);
    expect(vm(e.p)).toEqual([1, mmMode ? 1 : 0]);
    expect(vm(child)).toEqual([0, 0]);
    ok(child, cp(child));
    expect(vm(e.p)).toEqual([0, 0]);
    expect(vm(child)).toEqual([1, mmMode ? 1 : 0]);
    expectClean(e);
    child.exit();
    // the pins stay (charged to an exited mm) until the area goes with the parent's fd
    expectClean(e);
    ok(e.p, e.p.close(mfd));
    expectNoLeaks(e);
  });
});
