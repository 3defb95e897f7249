import { expect, it } from "vitest";
import { C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

// DPDK's lcores map and unmap DMA memory from their own threads while the
// main thread works (test/dpdk): the shim's fd table and its one socket are
// shared by every thread of the program.
it("exec: threads open, dup, ioctl and close model fds at once; every call reaches the model and nothing leaks", async () => {
  const bin = compileC(`${C_PRELUDE}#include <pthread.h>
#define VFIO_API_VERSION_IOCTL _IO(0x3b, 100)
static int bad[4];
static void *worker(void *arg) {
  int id = (int)(long)arg;
  for (int i = 0; i < 1000; i++) {
    int fd = open("/dev/vfio/vfio", O_RDWR);
    if (fd < 0) { bad[id]++; continue; }
    if (ioctl(fd, VFIO_API_VERSION_IOCTL) != 0) bad[id]++;
    int d = dup(fd);
    if (ioctl(d, VFIO_API_VERSION_IOCTL) != 0) bad[id]++;
    if (close(d) != 0 || close(fd) != 0) bad[id]++;
  }
  return NULL;
}
int main(void) {
  pthread_t t[4];
  for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  OUT("bad", "%d", bad[0] + bad[1] + bad[2] + bad[3]);
  /* a closed number is the program's again */
  int fd = open("/dev/vfio/vfio", O_RDWR);
  close(fd);
  int rc = ioctl(fd, VFIO_API_VERSION_IOCTL);
  OUT("after_close", "%d/%d", rc, errno);
  return 0;
}
`);
  const r = await execBin(bin);
  expect(r.stderr).toBe("");
  const o = kv(r.stdout);
  expect(o.bad).toBe("0");
  expect(o.after_close).toBe("-1/9");
  expect(r.trace.match(/VFIO_GET_API_VERSION\) = 0/g)).toHaveLength(8000);
  expect(r.counters.openFiles).toBe(0);
  expect(r.report).toContain("model errors: 0, invariant violations: 0");
});
