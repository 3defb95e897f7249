import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { encodeRequest, OP, REP_SIZE } from "../../src/bridge/protocol.js";
import { BridgeSession, parseBridgeArgs } from "../../src/bridge/session.js";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

const DESTROY = `
struct destroy { uint32_t size; uint32_t id; };
#define EX_IOMMU_DESTROY _IO(';', 0x80)
static uint32_t alloc_ioas(int fd) {
  struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
  return ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a) ? 0 : a.out_ioas_id;
}
static int destroy(int fd, uint32_t id) {
  struct destroy d = { .size = sizeof(d), .id = id };
  return ioctl(fd, EX_IOMMU_DESTROY, &d);
}
`;

describe("exec: processes and threads", () => {
  it("fork gives the child the parent's open files (twice, as the kselftest harness forks); the child's exit closes only its references", async () => {
    const bin = compileC(`${C_PRELUDE}${DESTROY}
int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  uint32_t a = alloc_ioas(fd);
  pid_t pid = fork();
  if (pid == 0) {
    pid_t gc = fork();
    if (gc == 0) {
      uint32_t b = alloc_ioas(fd);
      printf("grandchild_alloc=%d\\n", b != 0);
      fflush(stdout);
      _exit(b == 0);
    }
    int st;
    waitpid(gc, &st, 0);
    printf("child_destroy_a=%d\\n", destroy(fd, a));
    fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  OUT("child_status", "%d", WEXITSTATUS(st));
  /* the IOAS the grandchild made lives in the shared iommufd: id a + 1 */
  OUT("destroy_b", "%d", destroy(fd, a + 1));
  int r = destroy(fd, a);
  OUT("destroy_a_again", "%d/%d", r, errno);
  OUT("alloc_after", "%d", alloc_ioas(fd) != 0);
  return 0;
}
${""}`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.grandchild_alloc).toBe("1");
    expect(o.child_destroy_a).toBe("0");
    expect(o.child_status).toBe("0");
    expect(o.destroy_b).toBe("0");
    expect(o.destroy_a_again).toBe("-1/2");
    expect(o.alloc_after).toBe("1");
    expect(r.trace).toMatch(/joined as model pid \d+ \(forked\)/);
    expect(r.counters.processes).toBe(0);
    expect(r.counters.openFiles).toBe(0);
    expect(r.counters.objects).toBe(0);
  });

  it("after fork the parent's pinned page stays the parent's: a child's write does not reach the device", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}
int main(void) {
  cdev_setup("/dev/vfio/devices/vfio0", 6);
  char *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 8192, .iova = 0x100000 };
  OUT("map", "%d", ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m));
  strcpy(buf, "parent");
  if (fork() == 0) {
    strcpy(buf, "child");
    _exit(0);
  }
  wait(NULL);
  uint64_t src = 0x100000, dst = 0x101000, len = 16;
  uint32_t one = 1, st = 0;
  pwrite(dev, &src, 8, MCPY_SRC);
  pwrite(dev, &dst, 8, MCPY_DST);
  pwrite(dev, &len, 8, MCPY_LEN);
  pwrite(dev, &one, 4, MCPY_DOORBELL);
  pread(dev, &st, 4, MCPY_STATUS);
  OUT("status", "%u", st);
  OUT("copied", "%s", buf + 4096);
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map).toBe("0");
    expect(o.status).toBe("2");
    expect(o.copied).toBe("parent");
    expect(r.counters.pinnedPages).toBe(0);
  });

  it("a shared page a child pinned stays live through the parent after the child exits (fork_gone)", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}
int main(void) {
  cdev_setup("/dev/vfio/devices/vfio0", 0);
  uint16_t cmd = 6;
  pwrite(dev, &cmd, 2, (7ull << 40) + 4);
  char *buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pid = fork();
  if (pid == 0) {
    struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 8192, .iova = 0x100000 };
    exit(ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m) ? 1 : 0);
  }
  int st;
  waitpid(pid, &st, 0);
  OUT("child", "%d", WEXITSTATUS(st));
  strcpy(buf, "stored by the parent");
  uint64_t src = 0x100000, dst = 0x101000, len = 32;
  uint32_t one = 1, s = 0;
  pwrite(dev, &src, 8, MCPY_SRC);
  pwrite(dev, &dst, 8, MCPY_DST);
  pwrite(dev, &len, 8, MCPY_LEN);
  pwrite(dev, &one, 4, MCPY_DOORBELL);
  pread(dev, &s, 4, MCPY_STATUS);
  OUT("status", "%u", s);
  OUT("copied", "%s", buf + 4096);
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.child).toBe("0");
    expect(o.status).toBe("2");
    expect(o.copied).toBe("stored by the parent");
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.ownedFrames).toBe(0);
  });

  it("threads issue ioctls at once on one fd: every call gets its own answer", async () => {
    const bin = compileC(`${C_PRELUDE}${DESTROY}
#include <pthread.h>
static int fd;
static void *work(void *arg) {
  long ok = 0;
  for (int i = 0; i < 200; i++) {
    uint32_t id = alloc_ioas(fd);
    /* another thread may get the id once it is free: only this thread's answers are checked */
    if (id && destroy(fd, id) == 0 && destroy(fd, 0xfffffff) == -1 && errno == ENOENT) ok++;
  }
  return (void *)ok;
}
int main(void) {
  fd = open("/dev/iommu", O_RDWR);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, work, NULL);
  long total = 0;
  for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); total += (long)r; }
  OUT("ok", "%ld", total);
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    expect(kv(r.stdout).ok).toBe("800");
    expect(r.counters.objects).toBe(0);
  });

  it("dup and dup2 of a model fd refer to one open file; close of one keeps the other", async () => {
    const bin = compileC(`${C_PRELUDE}${DESTROY}
int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  uint32_t a = alloc_ioas(fd);
  int d = dup(fd);
  OUT("dup_ok", "%d", d > fd);
  close(fd);
  OUT("destroy_via_dup", "%d", destroy(d, a));
  OUT("dup2", "%d", dup2(d, 40));
  OUT("alloc_40", "%d", alloc_ioas(40) != 0);
  int r = alloc_ioas(fd);
  OUT("closed", "%d/%d", r, errno);
  return 0;
}
`);
    const r = await execBin(bin);
    const o = kv(r.stdout);
    expect(o.dup_ok).toBe("1");
    expect(o.destroy_via_dup).toBe("0");
    expect(o.dup2).toBe("40");
    expect(o.alloc_40).toBe("1");
    expect(o.closed).toBe("0/9");
    expect(r.counters.openFiles).toBe(0);
  });
});

/** A raw client of the bridge socket (what a hostile program could send). */
function rawClient(path: string): Promise<{ sock: Socket; call: (b: Buffer) => Promise<bigint | "closed"> }> {
  return new Promise((resolve) => {
    const sock = connect(path, () => {
      let pending: ((v: bigint | "closed") => void) | null = null;
      let buf = Buffer.alloc(0);
      sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= REP_SIZE && pending !== null) {
          const len = buf.readUInt32LE(0);
          if (buf.length < len) return;
          const ret = buf.readBigInt64LE(8);
          buf = buf.subarray(len);
          const p = pending;
          pending = null;
          p(ret);
        }
      });
      sock.on("close", () => pending?.("closed"));
      resolve({
        sock,
        call: (b) =>
          new Promise((r) => {
            pending = r;
            sock.write(b);
          }),
      });
    });
  });
}

describe("the bridge server under hostile input", () => {
  it("survives malformed requests, calls before HELLO, forged fork tokens, a client dying mid-call; clients cannot reach each other's files", async () => {
    const parsed = parseBridgeArgs([]);
    if (typeof parsed === "string") throw new Error(parsed);
    const s = await BridgeSession.start(parsed.opts, undefined, () => {});
    try {
      // a call before HELLO
      const a = await rawClient(s.socketPath);
      expect(await a.call(encodeRequest({ op: OP.OPEN, fd: 50, payload: Buffer.from("/dev/iommu") }))).toBe(
        -1n,
      );
      // forged fork token
      expect(await a.call(encodeRequest({ op: OP.HELLO, a: BigInt(process.pid), b: 12345n }))).toBe(-1n);
      expect(await a.call(encodeRequest({ op: OP.HELLO, a: BigInt(process.pid) }))).toBe(BigInt(process.pid));
      expect(
        await a.call(encodeRequest({ op: OP.OPEN, fd: 50, a: 2n, payload: Buffer.from("/dev/iommu") })),
      ).toBe(50n);
      // an unknown op, a bad fd
      expect(await a.call(encodeRequest({ op: 999 }))).toBe(-38n);
      expect(await a.call(encodeRequest({ op: OP.IOCTL, fd: 77, fd2: -1, a: 0x3b81n, b: 0n }))).toBe(-9n);
      // a second client sees none of the first's files
      const b = await rawClient(s.socketPath);
      expect(await b.call(encodeRequest({ op: OP.HELLO, a: BigInt(process.pid) }))).toBe(BigInt(process.pid));
      expect(await b.call(encodeRequest({ op: OP.IOCTL, fd: 50, fd2: -1, a: 0x3b81n, b: 0n }))).toBe(-9n);
      expect(await b.call(encodeRequest({ op: OP.CLOSE, fd: 50 }))).toBe(-9n);
      // garbage: the connection is dropped, its process released
      const bad = Buffer.alloc(40, 0xff);
      expect(await b.call(bad)).toBe("closed");
      // dying mid-call: half a request, then gone
      a.sock.write(encodeRequest({ op: OP.IOCTL, fd: 50, a: 0x3b81n }).subarray(0, 20));
      a.sock.destroy();
      await s.server.idle();
      expect(s.server.malformed).toBe(1);
      expect(s.m.debug.counters().processes).toBe(0);
      expect(s.m.debug.counters().openFiles).toBe(0);
      expect(s.server.internalErrors).toEqual([]);
      // still serving
      const c = await rawClient(s.socketPath);
      expect(await c.call(encodeRequest({ op: OP.PING }))).toBe(0n);
      c.sock.destroy();
    } finally {
      await s.finish(false);
    }
  });
});
