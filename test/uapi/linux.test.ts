import { describe, expect, it } from "vitest";
import * as uapi from "../../src/uapi/index.js";
import * as L from "../../src/uapi/linux.js";

describe("Linux x86-64 constants", () => {
  it("open flags", () => {
    expect([L.O_RDONLY, L.O_WRONLY, L.O_RDWR]).toEqual([0, 1, 2]);
    expect(L.O_CREAT).toBe(0x40);
    expect(L.O_EXCL).toBe(0x80);
    expect(L.O_TRUNC).toBe(0x200);
    expect(L.O_NONBLOCK).toBe(0x800);
    expect(L.O_DIRECTORY).toBe(0x10000);
    expect(L.O_CLOEXEC).toBe(0x80000);
    expect(L.O_SYNC).toBe(0x101000);
    expect(L.O_PATH).toBe(0x200000);
  });
  it("mmap", () => {
    expect([L.PROT_NONE, L.PROT_READ, L.PROT_WRITE, L.PROT_EXEC]).toEqual([0, 1, 2, 4]);
    expect(L.MAP_SHARED).toBe(1);
    expect(L.MAP_PRIVATE).toBe(2);
    expect(L.MAP_FIXED).toBe(0x10);
    expect(L.MAP_ANONYMOUS).toBe(0x20);
    expect(L.MAP_LOCKED).toBe(0x2000);
    expect(L.MAP_NORESERVE).toBe(0x4000);
    expect(L.MAP_POPULATE).toBe(0x8000);
    expect(L.MAP_HUGETLB).toBe(0x40000);
    expect(L.MAP_FIXED_NOREPLACE).toBe(0x100000);
    expect(L.MAP_HUGE_SHIFT).toBe(26);
    expect(L.MAP_HUGE_2MB).toBe(0x54000000);
    expect(L.MAP_HUGE_1GB).toBe(0x78000000);
  });
  it("memfd and eventfd", () => {
    expect([L.MFD_CLOEXEC, L.MFD_ALLOW_SEALING, L.MFD_HUGETLB]).toEqual([1, 2, 4]);
    expect(L.MFD_HUGE_2MB).toBe(L.MAP_HUGE_2MB);
    expect(L.EFD_CLOEXEC).toBe(0x80000);
    expect(L.EFD_NONBLOCK).toBe(0x800);
    expect(L.EFD_SEMAPHORE).toBe(1);
    expect(L.F_ADD_SEALS).toBe(1033);
    expect(L.F_GET_SEALS).toBe(1034);
  });
  it("limits and capabilities", () => {
    expect(L.PAGE_SIZE).toBe(4096);
    expect(L.U64_MAX).toBe(2n ** 64n - 1n);
    expect(L.CAP_SYS_RAWIO).toBe(17);
    expect(L.CAP_SYS_RESOURCE).toBe(24);
    expect(L.CAP_IPC_LOCK).toBe(14);
    expect(L.RLIMIT_MEMLOCK).toBe(8);
  });
  it("the index re-exports every module", () => {
    expect(uapi.EINVAL).toBe(22);
    expect(uapi.IOMMU_IOAS_MAP).toBe(0x3b85);
    expect(uapi.VFIO_DEVICE_BIND_IOMMUFD).toBe(0x3b76);
    expect(uapi.MAP_HUGETLB).toBe(0x40000);
    expect(typeof uapi.iommufdCopyIn).toBe("function");
    expect(typeof uapi._IO).toBe("function");
    expect(uapi.DEFAULT_KERNEL_PROFILE).toBe("latest");
    expect(uapi.errnoName(95)).toBe("EOPNOTSUPP");
    expect(uapi.errnoName(uapi.ENOIOCTLCMD)).toBe("ENOIOCTLCMD");
    expect(uapi.ENOMSG).toBe(42);
    expect(uapi.errnoValue("ENODATA")).toBe(61);
  });
});
