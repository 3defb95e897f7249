import { describe, expect, it } from "vitest";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

const NOIOMMU = ["--iommu", "none", "--param", "vfio.enable_unsafe_noiommu_mode=1"];

/** The PFN /proc/self/pagemap gives for va (0: none), and the raw entry. */
const PAGEMAP = `
#define MFD_HUGE_2MB (21U << 26)
static uint64_t entry(void *va) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t e = 0;
  if (pread(fd, &e, 8, ((uintptr_t)va / 4096) * 8) != 8) e = ~0ull;
  close(fd);
  return e;
}
static uint64_t pfn(void *va) { return entry(va) & ((1ull << 55) - 1); }
static void setup(void) { cdev_setup("/dev/vfio/devices/noiommu-vfio0", 4); }
`;

describe("exec: /proc/self/pagemap gives the model's frame numbers", () => {
  it("a pinned page's PFN is IOMMU_IOAS_NOIOMMU_GET_PA's; present bits are the kernel's; reads are whole entries", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${PAGEMAP}
int main(void) {
  setup();
  uint8_t *buf = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  buf[0] = 1; buf[4096] = 2;
  struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 8192, .iova = 0x100000 };
  OUT("map", "%d", ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m));
  struct ex_iommu_ioas_noiommu_get_pa g = { .size = sizeof(g), .ioas_id = ioas, .iova = 0x101000, .length = 4096 };
  ioctl(iommufd, EX_IOMMU_IOAS_NOIOMMU_GET_PA, &g);
  OUT("same", "%d", pfn(buf + 4096) * 4096 == g.out_phys);
  OUT("present", "%d", (int)(entry(buf) >> 63));
  /* never touched: not present, no frame */
  OUT("untouched", "%llx", (unsigned long long)entry(buf + 8192));
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t e[2];
  int r1 = (int)pread(fd, e, 4, ((uintptr_t)buf / 4096) * 8);
  int e1 = errno;
  int r2 = (int)pread(fd, e, 8, ((uintptr_t)buf / 4096) * 8 + 4);
  int e2 = errno;
  OUT("short", "%d/%d", r1, e1);
  OUT("unaligned", "%d/%d", r2, e2);
  /* lseek + read, as DPDK's rte_mem_virt2phy does: two entries at once */
  lseek(fd, ((uintptr_t)buf / 4096) * 8, SEEK_SET);
  OUT("read", "%d", (int)read(fd, e, 16));
  OUT("both", "%d", (e[0] & ((1ull << 55) - 1)) == pfn(buf) && (e[1] & ((1ull << 55) - 1)) == pfn(buf + 4096));
  close(fd);
  return 0;
}
`);
    const r = await execBin(bin, NOIOMMU);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map).toBe("0");
    expect(o.same).toBe("1");
    expect(o.present).toBe("1");
    expect(o.untouched).toBe("0");
    expect(o.short).toBe("-1/22");
    expect(o.unaligned).toBe("-1/22");
    expect(o.read).toBe("16");
    expect(o.both).toBe("1");
    expect(r.counters.ownedFrames).toBe(0);
  });

  it("a hugetlb page's PFNs are its 2 MiB folio's, unpinned; the device copies there by physical address (noiommu)", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${PAGEMAP}
int main(void) {
  setup();
  int fd = memfd_create("seg", MFD_HUGETLB | MFD_HUGE_2MB);
  ftruncate(fd, 2 << 20);
  uint8_t *area = mmap(NULL, 4 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *va = (uint8_t *)(((uintptr_t)area + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
  uint8_t *p = mmap(va, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  memset(p, 0, 2 << 20);
  strcpy((char *)p + 100, "found by its physical address");
  uint64_t base = pfn(p) * 4096;
  OUT("aligned", "%d", base != 0 && (base & ((2 << 20) - 1)) == 0);
  OUT("contiguous", "%d", pfn(p + 0x1ff000) * 4096 == base + 0x1ff000);
  OUT("status", "%u", copy(base + 100, base + 0x100000, 32));
  OUT("copied", "%s", (char *)p + 0x100000);
  return 0;
}
`);
    const r = await execBin(bin, NOIOMMU);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.aligned).toBe("1");
    expect(o.contiguous).toBe("1");
    expect(o.status).toBe("2");
    expect(o.copied).toBe("found by its physical address");
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.ownedFrames).toBe(0);
  });
});
