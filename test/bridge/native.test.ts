import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TMPFS_MAGIC } from "../../src/bridge/channel.js";
import { type BridgeNative, loadBridgeNative } from "../../src/bridge/shim-build.js";

function native(): BridgeNative {
  const n = loadBridgeNative();
  if (typeof n === "string") throw new Error(n);
  return n;
}

/** This thread's CPU mask as /proc/self/task/TID/status says it (the main thread: /proc/self/status). */
const cpusAllowed = () => /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];

describe("the bridge server's native helper", () => {
  it("builds and loads with the shim's compiler, and says why when it cannot", () => {
    expect(typeof native().mapShared).toBe("function");
    const dir = mkdtempSync(join(tmpdir(), "native-"));
    try {
      // a cache where nothing can be built: the reason, not an exception
      const why = loadBridgeNative({ ...process.env, CC: "/nonexistent/cc", IOMMUFD_SIM_CACHE: dir });
      expect(why).toMatch(/no C compiler \(\/nonexistent\/cc\) to build the bridge server's native helper/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("mapShared refuses a file that could shrink under the mapping, one not on shmem, and bad arguments", () => {
    const n = native();
    const files: string[] = [];
    try {
      for (const dir of ["/dev/shm", process.cwd()]) {
        const f = join(dir, `native-test-${process.pid}`);
        writeFileSync(f, Buffer.alloc(16384));
        files.push(f);
        const fd = openSync(f, "r+");
        try {
          // shmem with no seals: a program could truncate it and the server would die of SIGBUS;
          // anything else (a disk file, hugetlbfs) is refused before that
          const shmem = statfsSync(f).type === TMPFS_MAGIC;
          expect(() => n.mapShared(fd, 16384)).toThrow(
            shmem ? /not sealed against shrinking/ : /the file is not shmem \(a memfd\)/,
          );
          expect(() => n.mapShared(fd, 0)).toThrow(/a file descriptor and a positive length/);
        } finally {
          closeSync(fd);
        }
      }
      expect(() => n.mapShared(-1, 4096)).toThrow(/a file descriptor and a positive length/);
      // (a sealed memfd is mapped, a sealed hugetlb one is not: exec-channel.test.ts)
    } finally {
      for (const f of files) rmSync(f, { force: true });
    }
  });

  it.skipIf(availableParallelism() < 2)(
    "stepAside moves the calling thread off a CPU and leaves its CPU mask as it was",
    () => {
      const n = native();
      const mask = cpusAllowed();
      for (let i = 0; i < 3; i++) {
        const cpu = n.getcpu();
        expect(cpu).toBeGreaterThanOrEqual(0);
        expect(n.stepAside(cpu)).toBe(true);
        expect(n.getcpu()).not.toBe(cpu);
        expect(cpusAllowed()).toBe(mask);
      }
      // a CPU the thread may not run on, or no CPU at all: nothing to do
      expect(n.stepAside(100000)).toBe(false);
      expect(n.stepAside(-1)).toBe(false);
      expect(cpusAllowed()).toBe(mask);
    },
  );
});
