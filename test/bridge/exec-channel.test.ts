import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { BridgeSession, parseBridgeArgs } from "../../src/bridge/session.js";
import {
  type BridgeNative,
  ensureShim,
  loadBridgeNative,
  shimSourceDir,
} from "../../src/bridge/shim-build.js";
import { C_CDEV, C_PRELUDE, compileC, kv } from "./helpers.js";

const run = promisify(execFile);

/** A session, a program run under it with extra environment, the server's stats and counters once it is gone. */
async function runWith(
  bin: string,
  args: string[],
  opts: {
    spinNs?: string;
    polling?: boolean;
    mapChannels?: boolean;
    native?: BridgeNative;
    env?: NodeJS.ProcessEnv;
  },
): Promise<{
  out: Record<string, string>;
  stderr: string;
  stats: BridgeSessionStats;
  counters: Record<string, number>;
}> {
  const parsed = parseBridgeArgs([]);
  if (typeof parsed === "string") throw new Error(parsed);
  const s = await BridgeSession.start(parsed.opts, undefined, () => {});
  try {
    if (opts.polling !== undefined) s.server.polling = opts.polling;
    if (opts.mapChannels !== undefined) s.server.mapChannels = opts.mapChannels;
    if (opts.native !== undefined) s.server.native = opts.native;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LD_PRELOAD: ensureShim(),
      IOMMUFD_SIM_SOCKET: s.socketPath,
    };
    if (opts.spinNs !== undefined) env.IOMMUFD_SIM_SPIN_NS = opts.spinNs;
    Object.assign(env, opts.env);
    const r = await run(bin, args, { env });
    await s.server.idle();
    return {
      out: kv(r.stdout),
      stderr: r.stderr,
      stats: { ...s.server.stats },
      counters: s.m.debug.counters(),
    };
  } finally {
    await s.finish(false);
  }
}

type BridgeSessionStats = BridgeSession["server"]["stats"];

const CALLS = `${C_PRELUDE}
#include <dirent.h>
/* (the call before errno: argument order is unspecified) */
#define TRY(k, call) do { errno = 0; long r_ = (call); int e_ = errno; OUT(k, "%ld/%d", r_, e_); } while (0)
int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  /* failing ioctls: the size field is all the model reads */
  struct ex_iommu_ioas_alloc bad = { .size = 8 };
  int einval = 0;
  for (int i = 0; i < 100; i++)
    einval += ioctl(fd, EX_IOMMU_IOAS_ALLOC, &bad) == -1 && errno == EINVAL;
  OUT("einval", "%d", einval);
  /* an argument that is no address: EFAULT, as from the kernel */
  TRY("efault_int", ioctl(fd, EX_IOMMU_IOAS_ALLOC, 1ul));
  /* a struct whose size field is readable but whose rest is not (the next page is unmapped) */
  char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(two + 4096, 4096);
  uint32_t *edge = (uint32_t *)(two + 4096 - 4);
  *edge = 12;
  TRY("efault_edge", ioctl(fd, EX_IOMMU_IOAS_ALLOC, edge));
  /* a struct across a page boundary, both pages there: the model reads past what the shim sent */
  if (mmap(two + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
    return 3;
  struct ex_iommu_ioas_alloc *across = (void *)(two + 4096 - 4);
  across->size = 12;
  across->flags = 0;
  across->out_ioas_id = 0;
  OUT("across", "%d", ioctl(fd, EX_IOMMU_IOAS_ALLOC, across));
  OUT("across_id", "%u", across->out_ioas_id);
  /* written back, then changed by the program: each call sees the struct as it is now */
  struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
  OUT("alloc", "%d", ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a));
  OUT("id", "%u", a.out_ioas_id);
  a.size = 4;
  TRY("alloc_short", ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a));
  a.size = sizeof(a);
  a.flags = 1;
  TRY("alloc_flags", ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a));
  /* path calls: stat and readlink through the channel, a directory listing */
  struct stat st;
  TRY("stat", stat("/dev/iommu", &st));
  OUT("chr", "%d", S_ISCHR(st.st_mode));
  char link[256] = { 0 };
  OUT("readlink", "%d", readlink("/sys/kernel/iommu_groups/0/devices/0000:00:04.0", link, sizeof link) > 0);
  DIR *d = opendir("/sys/kernel/iommu_groups");
  int n = 0;
  while (d && readdir(d))
    n++;
  OUT("groups_entries", "%d", n);
  char buf[16] = { 0 };
  int pf = open("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit", O_RDONLY);
  OUT("param", "%d", read(pf, buf, sizeof buf - 1) > 0 ? atoi(buf) : -1);
  return 0;
}
`;

describe("exec: the request channel", () => {
  it("calls go through the shared channel and an ioctl's struct travels with it: no read of the process's memory for a refused ioctl", async () => {
    const bin = compileC(CALLS);
    const r = await runWith(bin, [], {});
    expect(r.stderr).toBe("");
    expect(r.out.einval).toBe("100");
    expect(r.stats.channelRequests).toBeGreaterThan(100);
    // the server maps the channel (the shim seals it at its size) and answers in memory
    expect(r.stats).toMatchObject({ channelsMapped: 1, channelsUnmapped: 0 });
    // HELLO comes over the socket; so does a listing too big for the channel's reply area
    expect(r.stats.socketRequests).toBeGreaterThanOrEqual(1);
    // the 100 refusals and the allocations read only what the shim sent; the struct across the
    // page boundary and the one with an unreadable tail needed /proc/PID/mem
    expect(r.stats.memReadsPrefetched).toBeGreaterThanOrEqual(104);
    expect(r.stats.memReads).toBeLessThanOrEqual(4);
    expect(r.counters).toMatchObject({ processes: 0, openFiles: 0, objects: 0 });
  });

  it("every path gives the same answers: the shim spinning or sleeping at once, the server polling or only answering nudges, the channel mapped or read with pread", async () => {
    const bin = compileC(CALLS);
    const want = {
      einval: "100",
      efault_int: "-1/14",
      efault_edge: "-1/14",
      across: "0",
      across_id: "1",
      alloc: "0",
      id: "2",
      alloc_short: "-1/22",
      alloc_flags: "-1/95",
      stat: "0/0",
      chr: "1",
      readlink: "1",
      param: "65535",
    };
    const paths: { spinNs?: string; polling: boolean; mapChannels: boolean }[] = [];
    for (const spinNs of ["0", undefined])
      for (const polling of [false, true]) paths.push({ spinNs, polling, mapChannels: true });
    paths.push(
      { spinNs: undefined, polling: true, mapChannels: false },
      { spinNs: "0", polling: false, mapChannels: false },
    );
    for (const path of paths) {
      const what = JSON.stringify(path);
      const r = await runWith(bin, [], path);
      expect(r.stderr, what).toBe("");
      expect(r.out, what).toMatchObject(want);
      expect(Number(r.out.groups_entries)).toBeGreaterThan(0);
      expect(r.counters).toMatchObject({ processes: 0, openFiles: 0, objects: 0 });
      expect(r.stats.channelsMapped, what).toBe(path.mapChannels ? 1 : 0);
      if (!path.polling) expect(r.stats.spins).toBe(0);
    }
  });

  it("a polling server that finds itself on the CPU a spinning shim posted from steps aside; a sleeping shim, or another CPU, leaves it be", async () => {
    // the program on CPU 0; the server's CPU as a stand-in helper says (the mapping stays the real one)
    const bin = compileC(`${C_PRELUDE}
#include <sched.h>
int main(void) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  OUT("pinned", "%d", sched_setaffinity(0, sizeof one, &one));
  int fd = open("/dev/iommu", O_RDWR);
  struct ex_iommu_ioas_alloc bad = { .size = 8 };
  int einval = 0;
  for (int i = 0; i < 200; i++)
    einval += ioctl(fd, EX_IOMMU_IOAS_ALLOC, &bad) == -1 && errno == EINVAL;
  OUT("einval", "%d", einval);
  return 0;
}
`);
    const real = loadBridgeNative();
    if (typeof real === "string") throw new Error(real);
    const asideOn: number[] = [];
    const on = (cpu: number): BridgeNative => ({
      mapShared: real.mapShared,
      getcpu: () => cpu,
      stepAside: (c) => {
        asideOn.push(c);
        return true;
      },
    });
    const spun = await runWith(bin, [], { native: on(0) });
    expect(spun.out).toMatchObject({ pinned: "0", einval: "200" });
    expect(spun.stats.channelsMapped).toBe(1);
    expect(spun.stats.stepsAside).toBeGreaterThan(0);
    expect(spun.stats.stepsAside).toBe(asideOn.length);
    expect(new Set(asideOn)).toEqual(new Set([0]));
    asideOn.length = 0;
    // a shim that sleeps says so before it posts: sharing its CPU then costs nothing
    const slept = await runWith(bin, [], { native: on(0), spinNs: "0" });
    expect(slept.out).toMatchObject({ pinned: "0", einval: "200" });
    expect(slept.stats.stepsAside).toBe(0);
    // the server elsewhere
    const apart = await runWith(bin, [], { native: on(1) });
    expect(apart.out).toMatchObject({ pinned: "0", einval: "200" });
    expect(apart.stats.stepsAside).toBe(0);
    expect(asideOn).toEqual([]);
    for (const r of [spun, slept, apart])
      expect(r.counters).toMatchObject({ processes: 0, openFiles: 0, objects: 0 });
  });

  it("the shim spins through long calls while every runnable task has a CPU, sleeps at once after two on a loaded machine, and spins again once replies come in time", async () => {
    // three map/unmap pairs (each pins or unpins 1024 pages of the program: far longer than the
    // shim's first spin), then refusals the model answers at once
    const bin = compileC(`${C_PRELUDE}${C_CDEV}
int main(void) {
  cdev_setup("/dev/vfio/devices/vfio0", 0);
  size_t len = 1024 * 4096;
  char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(buf, 1, len);
  int long_ok = 0;
  for (int i = 0; i < 3; i++) {
    struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = len, .iova = 0x1000000 };
    struct ex_iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = 0x1000000, .length = len };
    long_ok += ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m) == 0 && ioctl(iommufd, EX_IOMMU_IOAS_UNMAP, &u) == 0 && u.length == len;
  }
  OUT("long_ok", "%d", long_ok);
  struct ex_iommu_ioas_alloc bad = { .size = 8 };
  int einval = 0;
  for (int i = 0; i < 400; i++)
    einval += ioctl(iommufd, EX_IOMMU_IOAS_ALLOC, &bad) == -1 && errno == EINVAL;
  OUT("einval", "%d", einval);
  return 0;
}
`);
    // the machine as the shim sees it: /proc/loadavg's running count against the CPUs online
    const dir = mkdtempSync(join(tmpdir(), "loadavg-"));
    try {
      const quiet = join(dir, "quiet");
      writeFileSync(quiet, "0.00 0.00 0.00 1/100 4242\n");
      const loaded = join(dir, "loaded");
      writeFileSync(loaded, "9.00 9.00 9.00 4096/5000 4242\n");
      // a spin cap no call reaches: how long the shim spins is up to the machine's load
      const spinNs = "60000000000";
      // quiet: no call sleeps, so the server sends no wake-up
      const q = await runWith(bin, [], { spinNs, env: { IOMMUFD_SIM_LOADAVG: quiet } });
      expect(q.stderr).toBe("");
      expect(q.out).toMatchObject({ long_ok: "3", einval: "400" });
      expect(q.stats.wakes).toBe(0);
      expect(q.counters).toMatchObject({ processes: 0, openFiles: 0, objects: 0, pinnedPages: 0 });
      // loaded: the first long call halves the spin, the second makes the shim sleep at once, and
      // every long call after them sleeps too (a try at spinning comes at most every 16 calls):
      // each of the six is a wake-up; then it tries a spin every 16 calls (at most once a ms),
      // loaded or not, and spins on while replies come in time: 400 refusals, asleep, take some ms
      // (a wake-up each), so several tries (it would never try while the machine looked loaded)
      const l = await runWith(bin, [], { spinNs, env: { IOMMUFD_SIM_LOADAVG: loaded } });
      expect(l.stderr).toBe("");
      expect(l.out).toMatchObject({ long_ok: "3", einval: "400" });
      expect(l.stats.wakes).toBeGreaterThanOrEqual(6);
      expect(l.stats.spinningAfterSleep).toBeGreaterThanOrEqual(3);
      expect(l.counters).toMatchObject({ processes: 0, openFiles: 0, objects: 0, pinnedPages: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("several processes at once each get their own answers; one killed in the middle of its calls leaves the others served", async () => {
    const bin = compileC(`${C_PRELUDE}
#include <signal.h>
static int run_calls(int fd, int n) {
  int ok = 0;
  for (int i = 0; i < n; i++) {
    struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
    struct ex_iommu_ioas_alloc bad = { .size = 8 };
    if (ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a) == 0 && a.out_ioas_id != 0 &&
        ioctl(fd, EX_IOMMU_IOAS_ALLOC, &bad) == -1 && errno == EINVAL)
      ok++;
  }
  return ok;
}
int main(void) {
  int fd = open("/dev/iommu", O_RDWR);
  pid_t kids[3];
  for (int k = 0; k < 3; k++) {
    kids[k] = fork();
    if (kids[k] == 0)
      _exit(run_calls(fd, 300) == 300 ? 0 : 1);
  }
  /* one that calls until it is killed, mid-call most likely */
  pid_t doomed = fork();
  if (doomed == 0) {
    int ifd = open("/dev/iommu", O_RDWR);
    for (;;)
      run_calls(ifd, 1);
  }
  OUT("parent_ok", "%d", run_calls(fd, 200));
  kill(doomed, SIGKILL);
  int st;
  waitpid(doomed, &st, 0);
  OUT("doomed_killed", "%d", WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  int kids_ok = 0;
  for (int k = 0; k < 3; k++) {
    waitpid(kids[k], &st, 0);
    kids_ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  OUT("kids_ok", "%d", kids_ok);
  OUT("after_kill_ok", "%d", run_calls(fd, 50));
  return 0;
}
`);
    const r = await runWith(bin, [], {});
    expect(r.stderr).toBe("");
    expect(r.out).toMatchObject({ parent_ok: "200", doomed_killed: "1", kids_ok: "3", after_kill_ok: "50" });
    expect(r.counters).toMatchObject({ processes: 0, openFiles: 0 });
  });

  it("the protocol: a HELLO naming no memfd gets no channel, a posted request gets its reply, a malformed one closes the connection", async () => {
    const bin = compileC(
      `${C_PRELUDE}
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
${readFileSync(join(shimSourceDir(), "bridge-proto.h"), "utf8")}
static int dial(void) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  strcpy(sa.sun_path, getenv("SIM_SOCK"));
  return connect(s, (void *)&sa, sizeof sa) ? -1 : s;
}
static struct br_rep hello(int s, int chan_fd) {
  struct br_req rq = { .len = sizeof rq, .op = BR_OP_HELLO, .a = (uint64_t)getpid() };
  if (chan_fd >= 0) { rq.flags = BR_REQ_CHANNEL; rq.c = (uint64_t)chan_fd; }
  struct br_rep rp = { 0 };
  send(s, &rq, sizeof rq, 0);
  recv(s, &rp, sizeof rp, MSG_WAITALL);
  return rp;
}
static volatile uint32_t *u32(uint8_t *c, int off) { return (volatile uint32_t *)(c + off); }
static void post(int s, uint8_t *c, uint32_t seq, uint32_t len, uint16_t op) {
  struct br_req rq = { .len = len, .op = op };
  memcpy(c + BR_CHAN_REQ, &rq, sizeof rq);
  *u32(c, BR_CHAN_REQ_SEQ2) = seq;
  __atomic_store_n(u32(c, 0), seq, __ATOMIC_SEQ_CST);
  struct br_req n = { .len = sizeof n, .op = BR_OP_NUDGE, .a = seq };
  send(s, &n, sizeof n, 0);
}
/* The reply to seq once it is there (5 s at most): "seq copy/len/ret". */
static const char *reply_of(uint8_t *c, uint32_t seq) {
  static char s[64];
  for (int i = 0; i < 5000 && *u32(c, BR_CHAN_REP) != seq; i++)
    usleep(1000);
  struct br_rep got;
  memcpy(&got, c + BR_CHAN_REP + 8, sizeof got);
  snprintf(s, sizeof s, "%u/%u/%lld", *u32(c, BR_CHAN_REP + 24), got.len, (long long)got.ret);
  return s;
}
int main(void) {
  int a = dial();
  struct br_rep r = hello(a, 0);
  OUT("stdin_channel", "%d", (r.flags & BR_REP_CHANNEL) != 0);
  int fd = memfd_create(BR_CHAN_NAME, 0);
  ftruncate(fd, BR_CHAN_SIZE);
  uint8_t *c = mmap(NULL, BR_CHAN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int b = dial();
  r = hello(b, fd);
  OUT("memfd_channel", "%d", (r.flags & BR_REP_CHANNEL) != 0);
  post(b, c, 1, sizeof(struct br_req), BR_OP_PING);
  OUT("ping", "%s", reply_of(c, 1));
  post(b, c, 2, 5, BR_OP_PING);
  struct pollfd pf = { .fd = b, .events = POLLIN };
  poll(&pf, 1, 5000);
  char x;
  /* (ECONNRESET: the server closed it with our nudge unread) */
  long k = recv(b, &x, 1, MSG_DONTWAIT);
  OUT("closed", "%d", k == 0 || (k < 0 && errno == ECONNRESET));
  OUT("unanswered", "%d", *u32(c, BR_CHAN_REP) == 1);
  /* sealed at its size, as the shim does it: the server maps it, and it cannot shrink under that */
  int sfd = memfd_create(BR_CHAN_NAME, MFD_ALLOW_SEALING);
  ftruncate(sfd, BR_CHAN_SIZE);
  fcntl(sfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  uint8_t *sc = mmap(NULL, BR_CHAN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
  int d = dial();
  r = hello(d, sfd);
  OUT("sealed_channel", "%d", (r.flags & BR_REP_CHANNEL) != 0);
  errno = 0;
  int shrunk = ftruncate(sfd, 0), shrink_errno = errno;
  OUT("shrink", "%d/%d", shrunk, shrink_errno);
  post(d, sc, 1, sizeof(struct br_req), BR_OP_PING);
  OUT("sealed_ping", "%s", reply_of(sc, 1));
  /* sealed, but hugetlb: a fault its (maybe empty) pool cannot back would be SIGBUS in the server */
  int hfd = memfd_create(BR_CHAN_NAME, MFD_ALLOW_SEALING | MFD_HUGETLB);
  if (hfd >= 0 && ftruncate(hfd, 2 << 20) == 0 && fcntl(hfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
    int e = dial();
    r = hello(e, hfd);
    OUT("hugetlb_channel", "%d", (r.flags & BR_REP_CHANNEL) != 0);
  } else
    OUT("hugetlb_channel", "%s", "none");
  /* an unsealed channel (read with pread) the program seals against writes once its request is
     in: the server cannot write there, and drops that connection, unharmed */
  int wfd = memfd_create(BR_CHAN_NAME, MFD_ALLOW_SEALING);
  ftruncate(wfd, BR_CHAN_SIZE);
  int w = dial();
  r = hello(w, wfd);
  OUT("wseal_channel", "%d", (r.flags & BR_REP_CHANNEL) != 0);
  usleep(20000); /* (the server stops polling a channel that posted nothing for a while) */
  struct br_req wrq = { .len = sizeof wrq, .op = BR_OP_PING };
  uint32_t one = 1;
  pwrite(wfd, &wrq, sizeof wrq, BR_CHAN_REQ);
  pwrite(wfd, &one, 4, BR_CHAN_REQ_SEQ2);
  pwrite(wfd, &one, 4, 0);
  OUT("wseal", "%d", fcntl(wfd, F_ADD_SEALS, F_SEAL_WRITE));
  struct br_req wn = { .len = sizeof wn, .op = BR_OP_NUDGE, .a = 1 };
  send(w, &wn, sizeof wn, 0);
  struct pollfd wpf = { .fd = w, .events = POLLIN };
  poll(&wpf, 1, 5000);
  long wk = recv(w, &x, 1, MSG_DONTWAIT);
  OUT("wseal_closed", "%d", wk == 0 || (wk < 0 && errno == ECONNRESET));
  uint32_t wrep = 0;
  pread(wfd, &wrep, 4, BR_CHAN_REP);
  OUT("wseal_unanswered", "%d", wrep == 0);
  return 0;
}
`,
    );
    const dir = mkdtempSync(join(tmpdir(), "chan-trace-"));
    const trace = join(dir, "trace");
    let hugetlbTried = false;
    const parsed = parseBridgeArgs(["--trace", trace]);
    if (typeof parsed === "string") throw new Error(parsed);
    const s = await BridgeSession.start(parsed.opts, undefined, () => {});
    try {
      const r = await run(bin, [], { env: { ...process.env, SIM_SOCK: s.socketPath } });
      const out = kv(r.stdout);
      hugetlbTried = out.hugetlb_channel === "0";
      // a hugetlb memfd is no channel at all (pwrite cannot write it, a fault may find its pool empty)
      expect(out.hugetlb_channel).toMatch(/^(0|none)$/);
      expect(out).toMatchObject({
        stdin_channel: "0",
        memfd_channel: "1",
        ping: "1/16/0",
        closed: "1",
        unanswered: "1",
        sealed_channel: "1",
        shrink: "-1/1",
        sealed_ping: "1/16/0",
      });
      await s.server.idle();
      // memfds that could shrink under a mapping (two here) are read with pread (a cut file would kill the
      // server with SIGBUS), and the server says so once; the sealed one is mapped
      expect(s.server.stats).toMatchObject({ channelsUnmapped: 2, channelsMapped: 1 });
      expect(out).toMatchObject({ wseal_channel: "1", wseal: "0", wseal_closed: "1", wseal_unanswered: "1" });
      // the first malformed request, and the channel the server could no longer write
      expect(s.server.malformed).toBe(2);
      expect(s.server.internalErrors).toEqual([]);
      expect(s.m.debug.counters().processes).toBe(0);
    } finally {
      await s.finish(false);
    }
    if (hugetlbTried)
      expect(readFileSync(trace, "utf8")).toMatch(
        /is not a memfd on shmem \(a hugetlb one\?\); requests come over the socket/,
      );
    expect(readFileSync(trace, "utf8")).toMatch(/channel I\/O failed \(EPERM.*\); connection closed/);
    expect(readFileSync(trace, "utf8")).toMatch(
      /channels are read with pread, not mapped \(.*not sealed against shrinking/,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it("a process that exits holding pins on memory its parent shares hands them over reading /proc/PID/maps once, not once a page", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}
int main(void) {
  cdev_setup("/dev/vfio/devices/vfio0", 6);
  size_t len = 256 * 4096;
  char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  memset(buf, 1, len);
  pid_t pid = fork();
  if (pid == 0) {
    struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = len, .iova = 0x100000 };
    _exit(ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m) != 0);
  }
  int st;
  waitpid(pid, &st, 0);
  OUT("child", "%d", WEXITSTATUS(st));
  /* the pages stay the parent's shared pages: the device reads what the parent writes now */
  strcpy(buf, "after");
  uint64_t src = 0x100000, dst = 0x100000 + 4096, n = 16;
  uint32_t one = 1, s = 0;
  pwrite(dev, &src, 8, MCPY_SRC);
  pwrite(dev, &dst, 8, MCPY_DST);
  pwrite(dev, &n, 8, MCPY_LEN);
  pwrite(dev, &one, 4, MCPY_DOORBELL);
  pread(dev, &s, 4, MCPY_STATUS);
  OUT("status", "%u", s);
  OUT("copied", "%s", buf + 4096);
  return 0;
}
`);
    const r = await runWith(bin, [], {});
    expect(r.stderr).toBe("");
    expect(r.out).toMatchObject({ child: "0", status: "2", copied: "after" });
    // 256 pinned pages handed over at the child's exit: a handful of reads of the maps, not 256
    expect(r.stats.mapsReads).toBeLessThan(20);
    expect(r.counters.pinnedPages).toBe(0);
  });
});
