// /proc/PID/status of a program behind the bridge: VmPin and VmLck count the pins the model
// charged to it (iommufd pins happen in the model, not in the real kernel), read by the program
// itself or by another process of the machine; every other line is the real kernel's.
import { describe, expect, it } from "vitest";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

/** setup(cdev): C_CDEV's cdev_setup with bus mastering on. */
const DEVICE = `${C_CDEV}
static void setup(const char *cdev) { cdev_setup(cdev, 4); }
`;

describe("exec: /proc/PID/status", () => {
  it("VmPin rises by the pages an IOAS_MAP pins, seen by the process and by its child; the rest of the file is the real one", async () => {
    const bin = compileC(`${C_PRELUDE}${DEVICE}
static long status(pid_t pid, const char *tag) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long v = -2;
  size_t n = strlen(tag);
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, tag, n) == 0) v = strtol(line + n, NULL, 10);
  fclose(f);
  return v;
}
int main(void) {
  setup("/dev/vfio/devices/vfio0");
  long before = status(getpid(), "VmPin:");
  uint8_t *buf = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  OUT("map", "%d", map(buf, 4 * 4096, 0x100000));
  OUT("pin_delta", "%ld", status(getpid(), "VmPin:") - before);
  OUT("pid", "%ld", status(getpid(), "Pid:") == getpid());
  pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    OUT("child_sees_parent", "%ld", status(parent, "VmPin:") - before);
    OUT("child_own", "%ld", status(getpid(), "VmPin:"));
    _exit(0);
  }
  waitpid(child, NULL, 0);
  FILE *s = fopen("/proc/self/status", "r");
  char line[256];
  long self = -1;
  while (s && fgets(line, sizeof(line), s))
    if (strncmp(line, "VmPin:", 6) == 0) self = strtol(line + 6, NULL, 10);
  if (s) fclose(s);
  OUT("self_file", "%ld", self - before);
  OUT("init", "%ld", status(1, "Pid:"));
  return 0;
}
`);
    const r = await execBin(bin);
    expect(r.stderr).toBe("");
    const o = kv(r.stdout);
    expect(o.map).toBe("0");
    expect(o.pin_delta).toBe("16");
    expect(o.pid).toBe("1");
    expect(o.child_sees_parent).toBe("16");
    expect(o.child_own).toBe("0");
    expect(o.self_file).toBe("16");
    // a process that is not the machine's: the real file, untouched
    expect(o.init).toBe("1");
    expect(r.counters.pinnedPages).toBe(0);
  });
});
