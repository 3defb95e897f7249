import { describe, expect, it } from "vitest";
import { errno, Machine, uapi } from "../../src/index.js";

const { EBADF, EFAULT, EINVAL, ENOENT, ENOMEM, ESRCH, EEXIST, EISDIR } = errno;
const { PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MAP_FIXED, MAP_HUGETLB } = uapi;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

describe("the syscall contract", () => {
  it("EBADF for fds that were never open or are closed, with a reason", () => {
    const m = new Machine();
    const p = m.spawn();
    expect(p.close(3)).toBe(-EBADF);
    expect(p.lastError()).toMatchObject({ call: "close", errno: EBADF, name: "EBADF" });
    expect(p.lastError()?.reason).toMatch(/fd 3 is not open/);
    const fd = p.eventfd();
    expect(fd).toBe(0);
    expect(p.close(fd)).toBe(0);
    expect(p.close(fd)).toBe(-EBADF);
    expect(p.ioctl(fd, 0x3b80, 0n)).toBe(-EBADF);
    expect(p.pread(fd, 8, 0n)).toBe(-EBADF);
    expect(p.ioctl(-1, 0x3b80)).toBe(-EBADF);
  });

  it("ENOENT for missing paths; directories open read-only only", () => {
    const m = new Machine();
    const p = m.spawn();
    expect(p.open("/dev/nonexistent")).toBe(-ENOENT);
    expect(p.lastError()?.reason).toMatch(/\/dev\/nonexistent does not exist/);
    expect(p.open("/sys/module/vfio/parameters", 2)).toBe(-EISDIR);
    expect(p.open("/sys/module/vfio/parameters", 0)).toBeGreaterThanOrEqual(0);
  });

  it("fds are the lowest free number and per process", () => {
    const m = new Machine();
    const a = m.spawn();
    const b = m.spawn();
    expect([a.eventfd(), a.eventfd(), a.eventfd()]).toEqual([0, 1, 2]);
    expect(a.close(1)).toBe(0);
    expect(a.eventfd()).toBe(1);
    expect(b.close(0)).toBe(-EBADF);
    expect(b.eventfd()).toBe(0);
  });

  it("EINVAL for bad mmap arguments, nothing mapped", () => {
    const m = new Machine();
    const p = m.spawn();
    expect(p.mmap(0n, 0n, RW, ANON)).toBe(-BigInt(EINVAL));
    expect(p.mmap(0n, 4096n, RW, MAP_ANONYMOUS)).toBe(-BigInt(EINVAL));
    expect(p.mmap(0x1001n, 4096n, RW, ANON | MAP_FIXED)).toBe(-BigInt(EINVAL));
    expect(p.mmap(0n, 4096n, RW, ANON, -1, 1n)).toBe(-BigInt(EINVAL));
    expect(p.mmap(0n, 4096n, RW, MAP_SHARED, 77)).toBe(-BigInt(EBADF));
    expect(p.munmap(0x1001n, 4096n)).toBe(-EINVAL);
    expect(p.task.mm.counters().vmas).toBe(0);
  });

  it("memory reads and writes: EFAULT outside mappings, bytes back inside", () => {
    const m = new Machine();
    const p = m.spawn();
    const va = p.mmap(0n, 8192n, RW, ANON);
    expect(va).toBeGreaterThan(0n);
    expect(p.writeMemory(va + 4090n, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8))).toBe(0);
    expect(p.readMemory(va + 4090n, 8)).toEqual(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    expect(p.readMemory(va + 8190n, 4)).toBe(-EFAULT);
    expect(p.writeMemory(0x1000n, Uint8Array.of(1))).toBe(-EFAULT);
    expect(p.munmap(va, 4096n)).toBe(0);
    expect(p.readMemory(va, 1)).toBe(-EFAULT);
    expect(p.readMemory(va + 4096n, 2)).toEqual(Uint8Array.of(7, 8));
  });

  it("memfd: shared between mappings, pread/pwrite, ftruncate", () => {
    const m = new Machine();
    const p = m.spawn();
    const fd = p.memfdCreate("guest-ram");
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(p.ftruncate(fd, 1n << 20n)).toBe(0);
    const a = p.mmap(0n, 1n << 20n, RW, MAP_SHARED, fd);
    const b = p.mmap(0n, 1n << 20n, RW, MAP_SHARED, fd);
    expect(p.writeMemory(a + 100n, Uint8Array.of(9, 8, 7))).toBe(0);
    expect(p.readMemory(b + 100n, 3)).toEqual(Uint8Array.of(9, 8, 7));
    expect(p.pread(fd, 3, 100n)).toEqual(Uint8Array.of(9, 8, 7));
    expect(p.pwrite(fd, Uint8Array.of(1), 101n)).toBe(1);
    expect(p.readMemory(a + 100n, 3)).toEqual(Uint8Array.of(9, 1, 7));
    expect(p.ftruncate(p.eventfd(), 0n)).toBe(-EINVAL);
    expect(p.memfdCreate("x", 0x100)).toBe(-EINVAL);
  });

  it("hugetlb mappings are 2 MiB aligned", () => {
    const m = new Machine();
    const p = m.spawn();
    const va = p.mmap(0n, 4n << 20n, RW, ANON | MAP_HUGETLB);
    expect(va > 0n && va % (2n << 20n) === 0n).toBe(true);
    expect(p.writeMemory(va + (3n << 20n), Uint8Array.of(5))).toBe(0);
    expect(m.debug.counters().usedFrames).toBeGreaterThanOrEqual(512);
  });

  it("ENOMEM over RLIMIT_MEMLOCK through the pin API; CAP_IPC_LOCK bypasses", async () => {
    const { accountLockedVm, iommufdDefaultAccountMode, IOPT_PAGES_ACCOUNT_USER, unaccountLockedVm } =
      await import("../../src/mm/index.js");
    const m = new Machine();
    const p = m.spawn({ rlimitMemlock: 64n << 10n });
    const va = p.mmap(0n, 1n << 20n, RW, ANON);
    const runs = p.task.mm.pinUserPages(va, 32, true);
    expect(typeof runs).not.toBe("number");
    expect(m.debug.counters().pinnedPages).toBe(32);
    expect(accountLockedVm(p.task.mm, 16, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    expect(accountLockedVm(p.task.mm, 1, IOPT_PAGES_ACCOUNT_USER)).toBe(-ENOMEM);
    expect(p.task.mm.user.lockedVm).toBe(16);
    unaccountLockedVm(p.task.mm, 16, IOPT_PAGES_ACCOUNT_USER);
    if (typeof runs !== "number") p.task.mm.unpinUserPages(runs);
    expect(m.debug.counters().pinnedPages).toBe(0);
    const root = m.spawn({ caps: ["CAP_IPC_LOCK"], rlimitMemlock: 0n });
    // iommufd honours CAP_IPC_LOCK by not charging at all (iopt_alloc_pages)
    const mode = iommufdDefaultAccountMode(root.task.cred);
    expect(accountLockedVm(root.task.mm, 1000, mode)).toBe(0);
    expect(root.task.mm.user.lockedVm).toBe(0);
    expect(iommufdDefaultAccountMode(p.task.cred)).toBe(IOPT_PAGES_ACCOUNT_USER);
  });

  it("a pinned frame outlives munmap and exit until unpinned", () => {
    const m = new Machine();
    const boot = m.debug.counters();
    const p = m.spawn();
    const va = p.mmap(0n, 4096n, RW, ANON);
    expect(p.writeMemory(va, Uint8Array.of(0xaa))).toBe(0);
    const runs = p.task.mm.pinUserPages(va, 1, true);
    if (typeof runs === "number") throw new Error("pin failed");
    const pa = BigInt(runs.pfn[0]) << 12n;
    expect(p.munmap(va, 4096n)).toBe(0);
    expect(m.debug.readPhys(pa, 1)).toEqual(Uint8Array.of(0xaa));
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(1);
    p.task.mm.unpinUserPages(runs);
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.counters().usedFrames).toBe(boot.usedFrames);
  });

  it("after exit nothing is held, and every call is ESRCH", () => {
    const m = new Machine();
    const base = m.debug.counters();
    const p = m.spawn();
    p.eventfd();
    const fd = p.memfdCreate("x");
    p.ftruncate(fd, 8192n);
    const va = p.mmap(0n, 8192n, RW, MAP_SHARED, fd);
    p.writeMemory(va, Uint8Array.of(1));
    p.mmap(0n, 4n << 20n, RW, ANON | MAP_HUGETLB);
    expect(m.debug.counters().openFiles).toBe(2);
    p.exit();
    const c = m.debug.counters();
    expect(c.openFiles).toBe(0);
    expect(c.pinnedPages).toBe(0);
    expect(c.objects).toBe(0);
    expect(c.usedFrames).toBe(base.usedFrames);
    expect(c.memFiles).toBe(0);
    expect(c.internalErrors).toBe(0);
    expect(p.open("/dev/iommu")).toBe(-ESRCH);
    expect(p.readMemory(va, 1)).toBe(-ESRCH);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("ioctl with a Uint8Array copies the struct in and back in place", () => {
    const m = new Machine();
    const p = m.spawn();
    const fd = p.eventfd();
    const buf = new Uint8Array(16);
    expect(p.ioctl(fd, 0x1234, buf)).toBe(-25);
    expect(p.lastError()?.name).toBe("ENOTTY");
  });

  it("module parameters through setParam and sysfs; root only writes", () => {
    const m = new Machine();
    const path = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";
    expect(m.readFile(path)).toBe("N\n");
    expect(m.setParam("vfio.enable_unsafe_noiommu_mode", true)).toBe(0);
    expect(m.readFile(path)).toBe("Y\n");
    expect(m.setParam("vfio.nope", true)).toBe(-ENOENT);
    const user = m.spawn();
    const fd = user.open(path, 2);
    expect(user.write(fd, new TextEncoder().encode("0"))).toBe(-errno.EPERM);
    const root = m.spawn({ uid: 0 });
    const rfd = root.open(path, 2);
    expect(root.write(rfd, new TextEncoder().encode("0"))).toBe(1);
    expect(m.getParam("vfio.enable_unsafe_noiommu_mode")).toBe(false);
    expect(new TextDecoder().decode(root.pread(rfd, 10, 0n) as Uint8Array)).toBe("N\n");
    expect(EEXIST).toBe(17);
  });

  it("the same seed gives the same physical addresses", () => {
    const run = () => {
      const m = new Machine({ seed: 42 });
      const p = m.spawn();
      const va = p.mmap(0n, 1n << 20n, RW, ANON);
      p.writeMemory(va, new Uint8Array(1 << 20).fill(1));
      const runs = p.task.mm.pinUserPages(va, 256, false);
      if (typeof runs === "number") throw new Error("pin");
      return Array.from(runs.pfn.subarray(0, runs.count));
    };
    expect(run()).toEqual(run());
  });
});
