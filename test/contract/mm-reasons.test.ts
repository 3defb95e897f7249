import { describe, expect, it } from "vitest";
import { iommufdCtxFromFile, iommufdDeviceAttach, iommufdDeviceBind } from "../../src/iommufd/index.js";
import { Machine } from "../../src/kernel/machine.js";
import type { MemFile } from "../../src/mm/index.js";
import { EAGAIN, EFAULT, ENODEV, ENOMEM, EPERM } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/iommufd.js";
import { encode } from "../../src/uapi/struct.js";

// src/mm fails as every layer above src/pt does (a KernelError with the
// rule); each failure that starts in mm must reach p.lastError() with its
// own reason, not a generic one and not the reason of an earlier call.
const RW = 3;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_LOCKED = 0x2000;
const MAP_HUGETLB = 0x40000;
const MFD_ALLOW_SEALING = 0x2;
const MFD_HUGETLB = 0x4;
const F_SEAL_WRITE = 0x8;
const M2 = 2n << 20n;

describe("a reason from mm reaches p.lastError()", () => {
  it("memfd seals: a write to a write-sealed memfd, and a shared writable mapping of it", () => {
    const m = new Machine({});
    const p = m.spawn();
    const fd = p.memfdCreate("sealed", MFD_ALLOW_SEALING);
    expect(p.ftruncate(fd, 4096n)).toBe(0);
    expect((p.task.fdget(fd).priv as MemFile).addSeals(F_SEAL_WRITE)).toBe(0);
    expect(p.pwrite(fd, new Uint8Array([1]), 0n)).toBe(-EPERM);
    expect(p.lastError()).toMatchObject({ call: "pwrite64", name: "EPERM", reason: "write: F_SEAL_WRITE" });
    expect(p.mmap(0n, 4096n, RW, MAP_SHARED, fd)).toBe(-BigInt(EPERM));
    expect(p.lastError()).toMatchObject({
      call: "mmap",
      reason: "mmap: shared writable mapping of a write-sealed memfd",
    });
    expect(p.task.mm.maps()).toHaveLength(0);
  });

  it("memfd_create of a huge page size the machine has no pool for says which (was a generic reason)", () => {
    const p = new Machine({}).spawn();
    expect(p.memfdCreate("huge", MFD_HUGETLB | (25 << 26))).toBe(-ENODEV);
    expect(p.lastError()?.reason).toMatch(
      /^huge: no hugetlb pool of the MFD_HUGE_\* size asked for \(2\^25 bytes/,
    );
  });

  it("RLIMIT_MEMLOCK: MAP_LOCKED over the limit is EAGAIN with the rule", () => {
    const p = new Machine({}).spawn({ rlimitMemlock: 64n << 10n });
    expect(p.mmap(0n, 1n << 20n, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED)).toBe(-BigInt(EAGAIN));
    expect(p.lastError()).toMatchObject({
      call: "mmap",
      name: "EAGAIN",
      reason: "mmap: MAP_LOCKED would exceed RLIMIT_MEMLOCK",
    });
  });

  it("EFAULT on pin: IOAS_MAP of memory that is not mapped names the address and the pin rule", () => {
    const m = new Machine({ iommu: "amd" });
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const fd = p.open("/dev/iommu");
    const alloc = encode(U.iommu_ioas_alloc, { size: 12 });
    expect(p.ioctl(fd, U.IOMMU_IOAS_ALLOC, alloc)).toBe(0);
    const ioas = new DataView(alloc.buffer).getUint32(8, true);
    // a device attached, so IOAS_MAP pins at once
    const idev = iommufdDeviceBind(iommufdCtxFromFile(p.task.fdget(fd)), m.iommu.device("0000:00:04.0"));
    iommufdDeviceAttach(idev, ioas);
    const va = p.mmap(0n, 2n * 4096n, RW, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(p.munmap(va + 4096n, 4096n)).toBe(0);
    const map = encode(U.iommu_ioas_map, { size: 40, flags: 6, ioas_id: ioas, user_va: va, length: 8192n });
    expect(p.ioctl(fd, U.IOMMU_IOAS_MAP, map)).toBe(-EFAULT);
    expect(p.lastError()?.reason).toMatch(
      new RegExp(
        `pinning pages 0\\.\\.1 of user memory at 0x${va.toString(16)}: pin: 0x${(va + 4096n).toString(16)} is not mapped$`,
      ),
    );
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("hugetlb ENOMEM: a mapping the pool cannot promise, with the pool's numbers", () => {
    const p = new Machine({ hugepages: { "2M": 2 } }).spawn();
    expect(p.mmap(0n, 4n * M2, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)).toBe(-BigInt(ENOMEM));
    expect(p.lastError()?.reason).toMatch(
      /^mmap: hugetlb_reserve_pages: 2 2048kB page\(s\) to reserve but 2 free|^mmap: hugetlb_reserve_pages: 4 .* page\(s\) to reserve but 2 free and unreserved/,
    );
  });

  it("the reason is the failing call's own, never an earlier call's", () => {
    const p = new Machine({}).spawn({ rlimitMemlock: 0n });
    expect(p.mmap(0n, 4096n, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED)).toBe(-BigInt(EPERM));
    expect(p.lastError()?.reason).toBe("mmap: MAP_LOCKED with RLIMIT_MEMLOCK 0");
    expect(p.munmap(1n, 4096n)).toBeLessThan(0);
    expect(p.lastError()).toMatchObject({ call: "munmap", reason: "munmap: address is not page aligned" });
    expect(p.mmap(0n, 0n, RW, MAP_PRIVATE | MAP_ANONYMOUS)).toBeLessThan(0n);
    expect(p.lastError()).toMatchObject({ call: "mmap", reason: "mmap: zero length" });
  });
});
