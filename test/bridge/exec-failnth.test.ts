import { expect, it } from "vitest";
import { C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

it("fail-nth and the debugfs fault-injection knobs work as the iommufd_fail_nth selftest uses them", async () => {
  const bin = compileC(`${C_PRELUDE}
#include <dirent.h>
static int writeat(int dfd, const char *fn, const char *val) {
  int fd = openat(dfd, fn, O_WRONLY | O_TRUNC);
  if (fd == -1) return -1;
  ssize_t r = write(fd, val, strlen(val));
  close(fd);
  return r == (ssize_t)strlen(val) ? 0 : -1;
}
int main(void) {
  DIR *dbg = opendir("/sys/kernel/debug/");
  OUT("opendir", "%d", dbg != NULL);
  OUT("failslab", "%d", writeat(dirfd(dbg), "failslab/ignore-gfp-wait", "N"));
  int n = 0;
  struct dirent *e;
  char fn[300];
  while ((e = readdir(dbg))) {
    if (strncmp(e->d_name, "fail", 4) != 0) continue;
    snprintf(fn, sizeof fn, "%s/verbose", e->d_name);
    if (writeat(dirfd(dbg), fn, "0") == 0) n++;
  }
  closedir(dbg);
  OUT("verbose_dirs", "%d", n);
  char path[100];
  snprintf(path, sizeof path, "/proc/self/task/%d/fail-nth", (int)gettid());
  int nth = open(path, O_RDWR);
  OUT("nth_open", "%d", nth >= 0);
  int fd = open("/dev/iommu", O_RDWR);
  /* the first fault point hit fails: copy_from_user of the struct (fail_usercopy) */
  OUT("arm", "%zd", pwrite(nth, "1", 1, 0));
  struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
  int r = ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a);
  OUT("alloc", "%d/%d", r, errno);
  char buf[32] = { 0 };
  pread(nth, buf, sizeof buf - 1, 0);
  OUT("after", "%d", atoi(buf));
  OUT("disarm", "%zd", pwrite(nth, "0", 1, 0));
  OUT("alloc_ok", "%d", ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a));
  /* armed far away: nothing fails, the count left is not 0 */
  pwrite(nth, "1000", 4, 0);
  ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a);
  memset(buf, 0, sizeof buf);
  pread(nth, buf, sizeof buf - 1, 0);
  OUT("left", "%d", atoi(buf) > 0 && atoi(buf) < 1000);
  return 0;
}
`);
  const r = await execBin(bin, ["--iommu", "mock", "--kconfig", "IOMMUFD_TEST=y"]);
  expect(r.stderr).toBe("");
  const o = kv(r.stdout);
  expect(o.opendir).toBe("1");
  expect(o.failslab).toBe("0");
  expect(o.verbose_dirs).toBe("3");
  expect(o.nth_open).toBe("1");
  expect(o.arm).toBe("1");
  expect(o.alloc).toBe("-1/14");
  expect(o.after).toBe("0");
  expect(o.disarm).toBe("1");
  expect(o.alloc_ok).toBe("0");
  expect(o.left).toBe("1");
});
