import { describe, expect, it } from "vitest";
import { C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

describe("exec: a C program against the model", () => {
  it("opens /dev/iommu, allocates an IOAS, and gets the kernel's errnos with reasons in the trace", async () => {
    const bin = compileC(`${C_PRELUDE}
int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  OUT("fd_ok", "%d", fd >= 0);
  struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
  OUT("alloc", "%d", ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a));
  OUT("id", "%u", a.out_ioas_id);
  a.size = 8;
  int r = ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a);
  OUT("short", "%d/%d", r, errno);
  r = ioctl(fd, EX_IOMMU_IOAS_ALLOC, (void *)16);
  OUT("efault", "%d/%d", r, errno);
  r = ioctl(fd + 100, EX_IOMMU_IOAS_ALLOC, &a);
  OUT("ebadf", "%d/%d", r, errno);
  return 7;
}
`);
    const r = await execBin(bin);
    expect(r.status).toBe(7);
    const o = kv(r.stdout);
    expect(o.fd_ok).toBe("1");
    expect(o.alloc).toBe("0");
    expect(Number(o.id)).toBeGreaterThan(0);
    expect(o.short).toBe("-1/22");
    expect(o.efault).toBe("-1/14");
    expect(o.ebadf).toBe("-1/9");
    expect(r.trace).toMatch(
      /IOMMU_IOAS_ALLOC.* = -1 EINVAL \(iommu_ioas_alloc: size 8 is below the minimum 12/,
    );
    expect(r.trace).toMatch(/IOMMU_IOAS_ALLOC, 0x10\) = -1 EFAULT/);
    // never closed: the model released the fd and the IOAS when the process went
    expect(r.counters.objects).toBe(0);
    expect(r.counters.openFiles).toBe(0);
    expect(r.counters.processes).toBe(0);
    expect(r.session.server.internalErrors).toEqual([]);
  });

  it("shows sysfs as tools read it: links, attributes, directories, device numbers", async () => {
    const bin = compileC(`${C_PRELUDE}
#include <dirent.h>
#include <limits.h>
int main(void) {
  char buf[PATH_MAX];
  const char *dev = "/sys/bus/pci/devices/0000:00:04.0";
  char p[512];
  snprintf(p, sizeof p, "%s/iommu_group", dev);
  ssize_t n = readlink(p, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  OUT("group_link", "%s", buf);
  OUT("group_base", "%s", strrchr(buf, '/') + 1);
  snprintf(p, sizeof p, "%s/driver", dev);
  n = readlink(p, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  OUT("driver", "%s", strrchr(buf, '/') + 1);
  OUT("realpath", "%s", realpath(dev, buf) ? buf : "NULL");
  FILE *f = fopen("/sys/bus/pci/devices/0000:00:04.0/vendor", "r");
  unsigned v = 0, d = 0;
  OUT("fscanf", "%d", fscanf(f, "%x", &v));
  fclose(f);
  f = fopen("/sys/bus/pci/devices/0000:00:04.0/device", "r");
  fscanf(f, "%x", &d);
  fclose(f);
  OUT("vendor", "0x%04x", v);
  OUT("device", "0x%04x", d);
  DIR *dir = opendir("/sys/bus/pci/devices/0000:00:04.0/vfio-dev");
  struct dirent *e;
  char names[256] = "";
  while ((e = readdir(dir)) != NULL) if (e->d_name[0] != '.') strcat(names, e->d_name);
  closedir(dir);
  OUT("vfio_dev", "%s", names);
  snprintf(p, sizeof p, "%s/vfio-dev/%s/dev", dev, names);
  int fd = open(p, O_RDONLY);
  n = read(fd, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  close(fd);
  unsigned maj = 0, min = 0;
  sscanf(buf, "%u:%u", &maj, &min);
  snprintf(p, sizeof p, "/dev/vfio/devices/%s", names);
  struct stat st;
  OUT("stat", "%d", stat(p, &st));
  OUT("chr", "%d", S_ISCHR(st.st_mode));
  OUT("rdev_match", "%d", major(st.st_rdev) == maj && minor(st.st_rdev) == min);
  int cdev = open(p, O_RDWR);
  struct stat st2;
  OUT("fstat", "%d", fstat(cdev, &st2));
  OUT("fstat_rdev_match", "%d", st2.st_rdev == st.st_rdev);
  OUT("lstat_link", "%d", lstat(dev, &st) == 0 && S_ISLNK(st.st_mode));
  OUT("access", "%d", access("/dev/iommu", R_OK | W_OK));
  int ne = open("/sys/bus/pci/devices/0000:00:05.0/vendor", O_RDONLY);
  OUT("noent", "%d/%d", ne, errno);
  snprintf(p, sizeof p, "/sys/kernel/iommu_groups/%s/devices/0000:00:04.0", "0");
  OUT("group_dev", "%d", access(p, F_OK));
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const o = kv(r.stdout);
    expect(o.group_link).toBe("../../../kernel/iommu_groups/0");
    expect(o.driver).toBe("vfio-pci");
    expect(o.realpath).toBe("/sys/devices/pci0000:00/0000:00:04.0");
    expect(o.fscanf).toBe("1");
    expect(o.vendor).toBe("0x1de0");
    expect(o.device).toBe("0x0001");
    expect(o.vfio_dev).toBe("vfio0");
    expect(o.stat).toBe("0");
    expect(o.chr).toBe("1");
    expect(o.rdev_match).toBe("1");
    expect(o.fstat).toBe("0");
    expect(o.fstat_rdev_match).toBe("1");
    expect(o.lstat_link).toBe("1");
    expect(o.access).toBe("0");
    expect(o.noent).toBe("-1/2");
    expect(o.group_dev).toBe("0");
  });
});
