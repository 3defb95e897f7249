import { describe, expect, it } from "vitest";
import { parseBridgeArgs } from "../../src/bridge/session.js";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

const NOIOMMU = ["--iommu", "none", "--param", "vfio.enable_unsafe_noiommu_mode=1"];

/** A noiommu cdev bound to an iommufd with an IOAS: map, GET_PA. */
const DEVICE = `
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4U
#endif
#define MFD_HUGE_2MB (21U << 26)
#define MFD_HUGE_1GB (30U << 26)
#define MFD_HUGE_64KB (16U << 26)
static void setup(void) { cdev_setup("/dev/vfio/devices/noiommu-vfio0", 0); }
`;

describe("exec: memfd_create(MFD_HUGETLB) from the model's hugetlb pool", () => {
  it("a hugetlb memfd's pages are physically contiguous 2 MiB folios; its bytes are the program's", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${DEVICE}
int main(void) {
  setup();
  int fd = memfd_create("seg", MFD_HUGETLB | MFD_HUGE_2MB);
  OUT("memfd", "%d", fd >= 0);
  OUT("ftruncate", "%d", ftruncate(fd, 4 << 20));
  /* a 2 MiB aligned address, as a hugetlb mapping has */
  uint8_t *area = mmap(NULL, 6 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *va = (uint8_t *)(((uintptr_t)area + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
  uint8_t *p = mmap(va, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0);
  OUT("mmap", "%d", p == va);
  strcpy((char *)p + 0x1ff000, "last page of the first folio");
  OUT("map", "%d", map(p, 4 << 20, 0x40000000));
  uint64_t pa0 = get_pa(0x40000000);
  int contiguous = 1;
  for (uint64_t off = 0; off < (2 << 20); off += 4096)
    contiguous &= get_pa(0x40000000 + off) == pa0 + off;
  OUT("contiguous", "%d", contiguous);
  OUT("aligned", "%d", (pa0 & ((2 << 20) - 1)) == 0);
  OUT("second_aligned", "%d", (get_pa(0x40200000) & ((2 << 20) - 1)) == 0);
  /* the device copies by physical address inside the program's memfd */
  uint64_t src = pa0 + 0x1ff000, dst = get_pa(0x40200000), len = 32;
  pwrite(dev, &src, 8, MCPY_SRC);
  pwrite(dev, &dst, 8, MCPY_DST);
  pwrite(dev, &len, 8, MCPY_LEN);
  uint16_t cmd = 0;
  pread(dev, &cmd, 2, (7ull << 40) + 4);
  cmd |= 4;
  pwrite(dev, &cmd, 2, (7ull << 40) + 4);
  uint32_t one = 1, st = 0;
  pwrite(dev, &one, 4, MCPY_DOORBELL);
  pread(dev, &st, 4, MCPY_STATUS);
  OUT("status", "%u", st);
  OUT("copied", "%s", (char *)p + (2 << 20));
  return 0;
}
`);
    const r = await execBin(bin, NOIOMMU);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o).toMatchObject({ memfd: "1", ftruncate: "0", mmap: "1", map: "0" });
    expect(o.contiguous).toBe("1");
    expect(o.aligned).toBe("1");
    expect(o.second_aligned).toBe("1");
    expect(o.status).toBe("2");
    expect(o.copied).toBe("last page of the first folio");
    expect(r.trace).toMatch(
      /memfd_create\("seg", MFD_HUGETLB\) = \d+ \(an ordinary memfd: its pages are 2\^21 byte folios/,
    );
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.ownedFrames).toBe(0);
  });

  it("mmap takes the pool's limit (ENOMEM), a huge-page-aligned offset (EINVAL); memfd_create refuses a size with no pool", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${DEVICE}
int main(void) {
  int fd = memfd_create("seg", MFD_HUGETLB);
  ftruncate(fd, 8 << 20);
  void *p = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  OUT("two_pages", "%d/%d", p == MAP_FAILED ? -1 : 0, p == MAP_FAILED ? errno : 0);
  p = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  OUT("one_page", "%d", p == MAP_FAILED ? -errno : 0);
  p = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
  OUT("offset", "%d/%d", p == MAP_FAILED ? -1 : 0, errno);
  int g = memfd_create("giant", MFD_HUGETLB | MFD_HUGE_1GB);
  p = mmap(NULL, 1 << 30, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
  OUT("gigantic", "%d/%d", p == MAP_FAILED ? -1 : 0, errno);
  int odd = memfd_create("odd", MFD_HUGETLB | MFD_HUGE_64KB);
  OUT("no_pool", "%d/%d", odd, errno);
  int plain = memfd_create("plain", 0);
  p = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, plain, 0);
  OUT("plain", "%d", p != MAP_FAILED);
  return 0;
}
`);
    const r = await execBin(bin, ["--hugepages", "2M=1"]);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.two_pages).toBe("-1/12");
    expect(o.one_page).toBe("0");
    expect(o.offset).toBe("-1/22");
    expect(o.gigantic).toBe("-1/12");
    expect(o.no_pool).toBe("-1/22");
    expect(o.plain).toBe("1");
    expect(r.trace).toMatch(
      /the model's pool of 2 MiB pages has 1 available, the mapping needs 2 \(hugetlb_reserve_pages\), errno 12/,
    );
    expect(r.trace).toMatch(/the model's pool of 1 GiB pages has 0 available, the mapping needs 1/);
    expect(r.trace).toMatch(/memfd_create\("odd", MFD_HUGETLB\) = -1 \(no hugetlb pool of 2\^16 bytes pages/);
  });

  it("--hugepages boots only the pools it names", () => {
    const ok = parseBridgeArgs(["--hugepages", "2M=256,1G=1", "--", "x"]);
    expect(typeof ok).toBe("object");
    if (typeof ok === "object") expect(ok.opts.machine.hugepages).toEqual({ "2M": 256, "1G": 1 });
    expect(parseBridgeArgs(["--hugepages", "4M=1", "--", "x"])).toMatch(/--hugepages takes SIZE=N/);
    expect(parseBridgeArgs(["--hugepages", "2M=", "--", "x"])).toMatch(/--hugepages takes SIZE=N/);
  });
});
