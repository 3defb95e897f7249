// IOMMU_IOAS_MAP_FILE of the program's real shmem files through the bridge: the pinned pages
// are the file's pages (the same frames as the program's MAP_SHARED mappings of it), the
// device and the program see and change one set of bytes, the pins outlive the program's close
// of the fd, and a bad fd or range fails with the kernel's errno and leaves nothing behind.
import { describe, expect, it } from "vitest";
import { C_CDEV, C_PRELUDE, compileC, execBin, expectNothingHeld, kv } from "./helpers.js";

/** setup(cdev): C_CDEV's cdev_setup with bus mastering on. */
const DEVICE = `${C_CDEV}
static void setup(const char *cdev) { cdev_setup(cdev, 4); }
`;

const NOIOMMU = ["--iommu", "none", "--param", "vfio.enable_unsafe_noiommu_mode=1"];

const MAP_FILE = `
struct map_file { uint32_t size, flags, ioas_id; int32_t fd; uint64_t start, length, iova; };
static int map_file(int fd, uint64_t start, uint64_t length, uint64_t iova) {
  struct map_file m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .fd = fd, .start = start, .length = length, .iova = iova };
  return ioctl(iommufd, _IO(';', 0x8f), &m);
}
static int unmap(uint64_t iova, uint64_t length) {
  struct ex_iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = length };
  return ioctl(iommufd, EX_IOMMU_IOAS_UNMAP, &u);
}
`;

describe("exec: IOMMU_IOAS_MAP_FILE of the program's real files", () => {
  it("a memfd's pages are the frames of the program's MAP_SHARED mapping of it; DMA and the program share its bytes both ways", async () => {
    const bin = compileC(`${C_PRELUDE}${DEVICE}${MAP_FILE}
int main(void) {
  setup("/dev/vfio/devices/noiommu-vfio0");
  int mfd = memfd_create("guest-ram", 0);
  ftruncate(mfd, 3 * 4096);
  char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  OUT("map_file", "%d", map_file(mfd, 0, 3 * 4096, 0x100000));
  OUT("map_va", "%d", map(p, 3 * 4096, 0x200000));
  uint64_t f0 = get_pa(0x100000), f1 = get_pa(0x101000), f2 = get_pa(0x102000);
  OUT("same_frames", "%d", f0 == get_pa(0x200000) && f1 == get_pa(0x201000) && f2 == get_pa(0x202000));
  OUT("distinct", "%d", f0 != f1 && f1 != f2);
  /* the program stores, the device reads it */
  strcpy(p, "stored by the program");
  OUT("status1", "%u", copy(f0, f1, 32));
  OUT("seen_in_map", "%s", p + 4096);
  char buf[32] = { 0 };
  pread(mfd, buf, 31, 4096);
  OUT("seen_by_pread", "%s", buf);
  /* the program writes the file with pwrite, the device copies it, the program reads its mapping */
  pwrite(mfd, "pwritten by the program", 24, 4096);
  OUT("status2", "%u", copy(f1, f2, 32));
  OUT("copied", "%s", p + 8192);
  OUT("unmap_va", "%d", unmap(0x200000, 3 * 4096));
  /* the fd closed and the mapping gone: the pins of MAP_FILE keep the file and its pages */
  close(mfd);
  OUT("munmap", "%d", munmap(p, 3 * 4096));
  OUT("status3", "%u", copy(f0, f2, 8));
  OUT("same_after_close", "%d", get_pa(0x100000) == f0);
  return 0;
}
`);
    const r = await execBin(bin, NOIOMMU);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map_file).toBe("0");
    expect(o.map_va).toBe("0");
    expect(o.same_frames).toBe("1");
    expect(o.distinct).toBe("1");
    expect(o.status1).toBe("2");
    expect(o.seen_in_map).toBe("stored by the program");
    expect(o.seen_by_pread).toBe("stored by the program");
    expect(o.status2).toBe("2");
    expect(o.copied).toBe("pwritten by the program");
    expect(o.unmap_va).toBe("0");
    expect(o.munmap).toBe("0");
    expect(o.status3).toBe("2");
    expect(o.same_after_close).toBe("1");
    // the program exited with the MAP_FILE area in place: the pins, the file and its frames went with it
    expectNothingHeld(r);
    expect(r.counters.objects).toBe(0);
  });

  it("a tmpfs file: the device's write through the IOMMU is in the file after the program closed its fd", async () => {
    const bin = compileC(`${C_PRELUDE}${DEVICE}${MAP_FILE}
int main(void) {
  setup("/dev/vfio/devices/vfio0");
  char path[64];
  snprintf(path, sizeof(path), "/dev/shm/iommufd-sim-map-file-%d", getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) { perror(path); return 2; }
  ftruncate(fd, 8192);
  pwrite(fd, "in the tmpfs file", 18, 0);
  OUT("map_file", "%d", map_file(fd, 0, 8192, 0x100000));
  close(fd);
  OUT("status", "%u", copy(0x100000, 0x101000, 18));
  char buf[32] = { 0 };
  int fd2 = open(path, O_RDONLY);
  pread(fd2, buf, 18, 4096);
  OUT("reopened", "%s", buf);
  close(fd2);
  unlink(path);
  OUT("unmap", "%d", unmap(0x100000, 8192));
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map_file).toBe("0");
    expect(o.status).toBe("2");
    expect(o.reopened).toBe("in the tmpfs file");
    expect(o.unmap).toBe("0");
    expectNothingHeld(r);
  });

  it("bad fds and ranges: EBADF, EINVAL (past EOF, after truncate, not shmem), nothing mapped or pinned after each", async () => {
    const bin = compileC(`${C_PRELUDE}${DEVICE}${MAP_FILE}
static void err(const char *k, int r) { OUT(k, "%d/%d", r, r < 0 ? errno : 0); }
int main(void) {
  setup("/dev/vfio/devices/vfio0");
  int mfd = memfd_create("small", 0);
  ftruncate(mfd, 8192);
  err("past_eof", map_file(mfd, 0, 3 * 4096, 0x100000));
  err("start_past_eof", map_file(mfd, 8192, 4096, 0x100000));
  err("no_fd", map_file(999, 0, 4096, 0x100000));
  err("negative_fd", map_file(-1, 0, 4096, 0x100000));
  int pipefd[2];
  pipe(pipefd);
  err("pipe", map_file(pipefd[0], 0, 4096, 0x100000));
  int regular = open("/etc/passwd", O_RDONLY);
  err("regular", map_file(regular, 0, 4096, 0x100000));
  int closed = memfd_create("closed", 0);
  ftruncate(closed, 4096);
  close(closed);
  err("closed", map_file(closed, 0, 4096, 0x100000));
  /* the IOVA is free after every failure: the whole file maps there */
  err("whole", map_file(mfd, 0, 8192, 0x100000));
  err("unmap", unmap(0x100000, 8192));
  ftruncate(mfd, 0);
  err("truncated", map_file(mfd, 0, 4096, 0x100000));
  err("unmap_nothing", unmap(0x100000, 4096));
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.past_eof).toBe("-1/22");
    expect(o.start_past_eof).toBe("-1/22");
    expect(o.no_fd).toBe("-1/9");
    expect(o.negative_fd).toBe("-1/9");
    expect(o.pipe).toBe("-1/22");
    expect(o.regular).toBe("-1/22");
    expect(o.closed).toBe("-1/9");
    expect(o.whole).toBe("0/0");
    expect(o.unmap).toBe("0/0");
    expect(o.truncated).toBe("-1/22");
    expect(o.unmap_nothing).toBe("-1/2");
    expect(r.trace).toMatch(/IOMMU_IOAS_MAP_FILE, .*fd=999.*= -1 EBADF \(fd 999 is not open\)/);
    expect(r.trace).toMatch(/fd=\d+, start=0x0, length=0x3000.*= -1 EINVAL \(.*past EOF/);
    expect(r.trace).toMatch(/= -1 EINVAL \(.*neither shmem nor hugetlbfs/);
    expectNothingHeld(r);
  });
});
