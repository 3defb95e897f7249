import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const NOIOMMU = ["--iommu", "none", "--param", "vfio.enable_unsafe_noiommu_mode=1"];

/** setup(cdev): C_CDEV's cdev_setup with bus mastering on (map, get_pa and copy come from C_CDEV). */
const DEVICE = `
static void setup(const char *cdev) { cdev_setup(cdev, 4); }
`;

describe("exec: the program's real memory", () => {
  it("runs examples/c/noiommu-memcpy.c: the device copies by physical address inside the program's memory", async () => {
    const src = readFileSync(join(ROOT, "examples/c/noiommu-memcpy.c"), "utf8");
    const r = await execBin(compileC(src), NOIOMMU);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain('copy ok: "hello from user space, copied by the device"');
    expect(r.status).toBe(0);
    expect(r.trace).toMatch(/IOMMU_IOAS_NOIOMMU_GET_PA, \{size=40, .*out_phys=0x[0-9a-f]+\}\) = 0/);
    expect(r.trace).toMatch(/pwrite64\(4, <4 bytes>, 0x20\) = 4/);
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.report).toContain("DMA: 2 transfers, 0 faults");
  });

  it("a device write through the IOMMU is in the program's memory at once; the bytes it read are the program's", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${DEVICE}
int main(void) {
  setup("/dev/vfio/devices/vfio0");
  uint8_t *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  OUT("map", "%d", map(buf, 8192, 0x100000));
  strcpy((char *)buf, "stored after the map, before the doorbell");
  OUT("status", "%u", copy(0x100000, 0x101000, 64));
  OUT("dst", "%s", (char *)buf + 4096);
  /* a fault: the IOVA is not mapped, nothing is written */
  OUT("fault", "%u", copy(0x100000, 0x900000, 16));
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map).toBe("0");
    expect(o.status).toBe("2");
    expect(o.dst).toBe("stored after the map, before the doorbell");
    expect(o.fault).toBe("3");
    expect(r.report).toMatch(/1 faults or sanitizer findings/);
    expect(r.report).toMatch(/pid \d+: 2 fd\(s\) open, 2 page\(s\) pinned/);
    // the process exited with the mapping in place: every pin and object went with it
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.objects).toBe(0);
    expect(r.counters.ownedFrames).toBe(0);
  });

  it("a pinned page outlives munmap with the contents it had (the model keeps a copy)", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${DEVICE}
int main(void) {
  setup("/dev/vfio/devices/noiommu-vfio0");
  uint8_t *a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  map(a, 4096, 0x100000);
  map(b, 4096, 0x200000);
  uint64_t pa = get_pa(0x100000), pb = get_pa(0x200000);
  strcpy((char *)a, "kept by the pin");
  OUT("munmap", "%d", munmap(a, 4096));
  /* a new mapping may reuse the address: it is not the pinned page */
  uint8_t *c = mmap(a, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  strcpy((char *)c, "a different page");
  OUT("status", "%u", copy(pa, pb, 16));
  OUT("b", "%s", (char *)b);
  return 0;
}
`);
    const r = await execBin(bin, NOIOMMU);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.munmap).toBe("0");
    expect(o.status).toBe("2");
    expect(o.b).toBe("kept by the pin");
    expect(r.counters.pinnedPages).toBe(0);
  });

  it("EFAULT from the program's real mappings: an IOAS_MAP of unmapped memory, a struct past the end of a mapping", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}${DEVICE}
int main(void) {
  setup("/dev/vfio/devices/vfio0");
  uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(buf + 4096, 4096);
  int r = map(buf, 8192, 0x100000);
  OUT("map_hole", "%d/%d", r, errno);
  struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)ro, .length = 4096, .iova = 0x300000 };
  r = ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m);
  OUT("map_ro_write", "%d/%d", r, errno);
  m.flags = 5;
  OUT("map_ro_read", "%d", ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m));
  /* the struct's last bytes fall in the unmapped page */
  struct ex_iommu_ioas_alloc *a = (void *)(buf + 4096 - 8);
  a->size = 12;
  r = ioctl(iommufd, EX_IOMMU_IOAS_ALLOC, a);
  OUT("alloc_edge", "%d/%d", r, errno);
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map_hole).toBe("-1/14");
    expect(o.map_ro_write).toBe("-1/14");
    expect(o.map_ro_read).toBe("0");
    expect(o.alloc_edge).toBe("-1/14");
    expect(r.trace).toMatch(/IOMMU_IOAS_MAP.* = -1 EFAULT \(.*pin: 0x[0-9a-f]+ is not mapped\)/);
    expect(r.trace).toMatch(/= -1 EFAULT \(.*pin: write pin of a mapping without PROT_WRITE\)/);
  });
});
