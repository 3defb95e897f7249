/*
 * The host kernel's cost of the system calls `npm run bench` times on the
 * model (src/bench/syscall-cases.ts), measured in the same run:
 *   ioctl_fail_ns        an ioctl the kernel refuses (ENOTTY: a request
 *                        eventfd does not know), struct argument in memory
 *   close_ebadf_ns       close() of an fd that is not open (EBADF)
 *   object_make_free_ns  a kernel object made and freed: eventfd() + close()
 * Prints one JSON line. Usage: syscallref [iterations]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  long bad = 0;
  int efd = eventfd(0, 0);
  if (efd < 0) return 1;
  /* an IOMMU_IOAS_ALLOC-sized argument: struct { u32 size, flags, out_ioas_id } */
  unsigned int arg[3] = {8, 0, 0};
  /* _IO(';', 0x81), the request number of IOMMU_IOAS_ALLOC: eventfd has no ioctl of that number */
  unsigned long req = (0x3bUL << 8) | 0x81;

  double t0 = now_ns();
  for (long i = 0; i < n; i++)
    if (ioctl(efd, req, arg) != -1 || errno != ENOTTY) bad++;
  double t1 = now_ns();
  for (long i = 0; i < n; i++)
    if (close(1 << 20) != -1 || errno != EBADF) bad++;
  double t2 = now_ns();
  for (long i = 0; i < n; i++) {
    int fd = eventfd(0, 0);
    if (fd < 0 || close(fd) != 0) bad++;
  }
  double t3 = now_ns();
  close(efd);
  if (bad) return 2;
  printf("{\"ioctl_fail_ns\":%.2f,\"close_ebadf_ns\":%.2f,\"object_make_free_ns\":%.2f}\n",
         (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
  return 0;
}
