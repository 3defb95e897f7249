import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

/** The host has no free huge pages here: the model's pool backs MAP_HUGETLB (docs/exec.md). */
const hostHuge = Number(/^HugePages_Free:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? "0");

const SRC = `${C_PRELUDE}${C_CDEV}
#include <linux/mman.h>
static void setup(void) { cdev_setup("/dev/vfio/devices/vfio0", 6); }
static long attr(const char *name) {
  char p[128], b[32] = { 0 };
  snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-2048kB/%s", name);
  int fd = open(p, O_RDONLY);
  read(fd, b, sizeof(b) - 1);
  close(fd);
  return atol(b);
}
int main(void) {
  setup();
  int r;
  const int H2 = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB;
  /* first: a 1 GiB page needs a whole free GiB of the model's memory */
  char *g = mmap(NULL, 1ul << 30, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_1GB, -1, 0);
  OUT("g_aligned", "%d", g != MAP_FAILED && ((uintptr_t)g & ((1ul << 30) - 1)) == 0);
  r = map(g, 1ul << 30, 0x80000000);
  OUT("map1g", "%d/%d", r, r ? errno : 0);
  /* a pool of 1 page: 2 pages do not fit; 1 does, and is reserved until it is faulted */
  int fd = open("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", O_WRONLY);
  OUT("set_pool", "%zd", write(fd, "1", 1));
  close(fd);
  void *two = mmap(NULL, 4ul << 20, PROT_READ | PROT_WRITE, H2, -1, 0);
  OUT("two", "%d/%d", two == MAP_FAILED, errno);
  void *one = mmap(NULL, 2ul << 20, PROT_READ | PROT_WRITE, H2, -1, 0);
  OUT("one", "%d", one != MAP_FAILED);
  OUT("resv", "%ld/%ld", attr("free_hugepages"), attr("resv_hugepages"));
  OUT("munmap_one", "%d", munmap(one, 4096)); /* the length rounds up to the huge page */
  OUT("resv_after", "%ld/%ld", attr("free_hugepages"), attr("resv_hugepages"));
  fd = open("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", O_WRONLY);
  write(fd, "8", 1);
  close(fd);
  char *p = mmap(NULL, 4ul << 20, PROT_READ | PROT_WRITE, H2, -1, 0);
  OUT("p_aligned", "%d", p != MAP_FAILED && ((uintptr_t)p & ((2ul << 20) - 1)) == 0);
  strcpy(p + 4096, "inside a 2 MiB page");
  OUT("map2m", "%d", map(p, 4ul << 20, 0x40000000));
  OUT("copy", "%u", copy(0x40001000, 0x80000000 + (512ul << 20), 32));
  OUT("copied", "%s", g + (512ul << 20));
  r = munmap(p + 4096, 4096);
  OUT("munmap_unaligned", "%d/%d", r, errno);
  /* a bad huge page size is the kernel's EINVAL, not the model's business */
  void *bad = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (25 << MAP_HUGE_SHIFT), -1, 0);
  OUT("bad_size", "%d/%d", bad == MAP_FAILED, errno);
  return 0;
}
`;

describe("exec: MAP_HUGETLB backed by the model's hugetlb pool", () => {
  it.skipIf(hostHuge > 0)(
    "2 MiB and 1 GiB pages map aligned, pin as huge folios for DMA, follow the model's pool and hugetlb munmap rules",
    async () => {
      const r = await execBin(compileC(SRC), ["--iommu", "intel"]);
      expect(r.stderr).toBe("");
      expect(kv(r.stdout)).toEqual({
        set_pool: "1",
        two: "1/12",
        one: "1",
        resv: "1/1",
        munmap_one: "0",
        resv_after: "1/0",
        g_aligned: "1",
        p_aligned: "1",
        map2m: "0",
        map1g: "0/0",
        copy: "2",
        copied: "inside a 2 MiB page",
        munmap_unaligned: "-1/22",
        bad_size: "1/22",
      });
      expect(r.status).toBe(0);
      expect(r.counters.pinnedPages).toBe(0);
      expect(r.counters.objects).toBe(0);
    },
  );
});
