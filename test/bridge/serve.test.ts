import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { BridgeSession, parseBridgeArgs } from "../../src/bridge/session.js";
import { ensureShim } from "../../src/bridge/shim-build.js";
import { C_PRELUDE, compileC, kv } from "./helpers.js";

const run = promisify(execFile);

it("serve: two programs share one machine (a parameter one sets, the other reads), each a process of its own", async () => {
  const bin = compileC(`${C_PRELUDE}
int main(int argc, char **argv) {
  int fd = open("/dev/iommu", O_RDWR);
  struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
  OUT("alloc", "%d", ioctl(fd, EX_IOMMU_IOAS_ALLOC, &a));
  OUT("id", "%u", a.out_ioas_id);
  const char *p = "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit";
  if (argc > 1) {
    FILE *f = fopen(p, "w");
    fprintf(f, "%s\\n", argv[1]);
    OUT("set", "%d", fclose(f));
  }
  char buf[32] = { 0 };
  FILE *f = fopen(p, "r");
  fgets(buf, sizeof buf, f);
  fclose(f);
  OUT("limit", "%d", atoi(buf));
  return 0;
}
`);
  const parsed = parseBridgeArgs([]);
  if (typeof parsed === "string") throw new Error(parsed);
  const dir = mkdtempSync(join(tmpdir(), "serve-"));
  const sock = join(dir, "sim.sock");
  const s = await BridgeSession.start(parsed.opts, sock, () => {});
  try {
    const env = { ...process.env, LD_PRELOAD: ensureShim(), IOMMUFD_SIM_SOCKET: sock };
    const oa = kv((await run(bin, ["1234"], { env })).stdout);
    const ob = kv((await run(bin, [], { env })).stdout);
    expect(oa.alloc).toBe("0");
    expect(oa.set).toBe("0");
    expect(oa.limit).toBe("1234");
    // the second program sees what the first set: one machine
    expect(ob.alloc).toBe("0");
    expect(ob.limit).toBe("1234");
    await s.server.idle();
    expect(s.m.debug.counters()).toMatchObject({ processes: 0, openFiles: 0, objects: 0 });
  } finally {
    await s.finish(false);
  }
});
