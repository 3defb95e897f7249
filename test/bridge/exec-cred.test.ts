// Credentials are the real process's as they are now: a capability dropped (capset, as libcap's
// cap_set_proc does it) or an RLIMIT_MEMLOCK lowered after the process joined the machine counts
// for the next call, as the selftest change_process's drop_cap_ipc_lock needs.
import { describe, expect, it } from "vitest";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

describe("exec: credentials", () => {
  it("CAP_IPC_LOCK dropped and RLIMIT_MEMLOCK lowered after joining: the next IOAS_MAP is charged and refused ENOMEM", async () => {
    const bin = compileC(`${C_PRELUDE}${C_CDEV}
#include <sys/resource.h>
#include <sys/syscall.h>
struct cap_hdr { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };
int main(void) {
  cdev_setup("/dev/vfio/devices/vfio0", 0);
  uint8_t *buf = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct rlimit rl = { 8192, 8192 };
  OUT("setrlimit", "%d", setrlimit(RLIMIT_MEMLOCK, &rl));
  struct cap_hdr h = { 0x20080522, 0 };
  struct cap_data d[2];
  syscall(SYS_capget, &h, d);
  d[0].effective &= ~(1u << 14); /* CAP_IPC_LOCK */
  OUT("capset", "%ld", syscall(SYS_capset, &h, d));
  int r = map(buf, 4 * 4096, 0x100000);
  OUT("map_4", "%d/%d", r, r < 0 ? errno : 0);
  r = map(buf, 2 * 4096, 0x100000);
  OUT("map_2", "%d/%d", r, r < 0 ? errno : 0);
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.setrlimit).toBe("0");
    expect(o.capset).toBe("0");
    // four pages past an 8 KiB limit, charged to the user now that CAP_IPC_LOCK is gone
    expect(o.map_4).toBe("-1/12");
    expect(o.map_2).toBe("0/0");
    expect(r.trace).toMatch(/credentials changed: .*RLIMIT_MEMLOCK 8192/);
    expect(r.trace).not.toMatch(/\{[^}]*CAP_IPC_LOCK[^}]*\}, RLIMIT_MEMLOCK 8192/);
    expect(r.counters.pinnedPages).toBe(0);
  });
});
