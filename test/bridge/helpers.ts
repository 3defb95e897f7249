import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { BridgeSession, parseBridgeArgs, runProgram } from "../../src/bridge/session.js";
import { ensureShim } from "../../src/bridge/shim-build.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BUILD = join(tmpdir(), `iommufd-sim-test-c-${process.getuid?.() ?? 0}`);

/** Compile a C program (cached by its text) and return the binary's path. */
export function compileC(source: string, extra: string[] = []): string {
  mkdirSync(BUILD, { recursive: true });
  const h = createHash("sha256").update(source).update(extra.join(" ")).digest("hex").slice(0, 16);
  const bin = join(BUILD, `t-${h}`);
  if (existsSync(bin)) return bin;
  // per-process temporaries: test files run in parallel workers
  const src = `${bin}.${process.pid}.c`;
  writeFileSync(src, source);
  const tmp = `${bin}.${process.pid}.tmp`;
  const flags = ["-O1", "-Wall", "-Wno-unused-function", "-I", join(ROOT, "examples/c")];
  execFileSync("cc", [...flags, "-o", tmp, src, "-lpthread", ...extra]);
  renameSync(tmp, bin);
  return bin;
}

export interface ExecResult {
  status: number;
  stdout: string;
  stderr: string;
  trace: string;
  /** Counters once the program and its children exited (before the session shuts down). */
  counters: Record<string, number>;
  report: string;
  session: BridgeSession;
}

/** Run a binary through the bridge as `iommufd-sim exec ARGS -- bin` does, capturing its output. */
export async function execBin(
  bin: string,
  args: string[] = [],
  progArgs: string[] = [],
): Promise<ExecResult> {
  const trace = join(BUILD, `trace-${process.pid}-${Math.random().toString(36).slice(2)}.txt`);
  const parsed = parseBridgeArgs([...args, "--trace", trace, "--", bin, ...progArgs]);
  if (typeof parsed === "string") throw new Error(parsed);
  const shim = ensureShim();
  const session = await BridgeSession.start(parsed.opts, undefined, () => {});
  let stdout = "";
  let stderr = "";
  const status = await runProgram(
    session,
    shim,
    bin,
    progArgs,
    ["ignore", "pipe", "pipe"],
    () => {},
    (child) => {
      child.stdout?.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr?.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
    },
  );
  await Promise.race([session.server.idle(), new Promise((r) => setTimeout(r, 5000))]);
  const counters = session.m.debug.counters();
  const report = await session.finish(true);
  return { status, stdout, stderr, trace: readFileSync(trace, "utf8"), counters, report, session };
}

/** Lines "key=value" a test program printed, as a map. */
export function kv(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of stdout.split("\n")) {
    const i = l.indexOf("=");
    if (i > 0) out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

export const C_PRELUDE = `#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include "iommufd-uapi.h"
#define OUT(k, fmt, ...) do { printf("%s=" fmt "\\n", k, __VA_ARGS__); fflush(stdout); } while (0)
`;

/**
 * C helpers for a program that drives the memcpy device through a VFIO cdev:
 * cdev_setup opens the cdev, binds it to a new iommufd, attaches a new IOAS
 * and ORs cmd_bits into the PCI command register (0 leaves it alone); map,
 * get_pa and copy are IOMMU_IOAS_MAP, IOMMU_IOAS_NOIOMMU_GET_PA and one
 * doorbell copy through BAR0's region. Prefix with C_PRELUDE.
 */
export const C_CDEV = `
static int iommufd, dev;
static uint32_t ioas;
static void cdev_setup(const char *cdev, uint16_t cmd_bits) {
  iommufd = open("/dev/iommu", O_RDWR);
  dev = open(cdev, O_RDWR);
  struct ex_vfio_device_bind_iommufd b = { .argsz = sizeof(b), .iommufd = iommufd };
  if (ioctl(dev, EX_VFIO_DEVICE_BIND_IOMMUFD, &b)) { perror("bind"); exit(2); }
  struct ex_iommu_ioas_alloc a = { .size = sizeof(a) };
  if (ioctl(iommufd, EX_IOMMU_IOAS_ALLOC, &a)) { perror("alloc"); exit(2); }
  ioas = a.out_ioas_id;
  struct ex_vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = ioas };
  if (ioctl(dev, EX_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at)) { perror("attach"); exit(2); }
  if (cmd_bits == 0) return;
  uint16_t cmd = 0;
  pread(dev, &cmd, 2, (7ull << 40) + 4); /* VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND */
  cmd |= cmd_bits;
  pwrite(dev, &cmd, 2, (7ull << 40) + 4);
}
static int map(void *va, size_t len, uint64_t iova) {
  struct ex_iommu_ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len, .iova = iova };
  return ioctl(iommufd, EX_IOMMU_IOAS_MAP, &m);
}
static uint64_t get_pa(uint64_t iova) {
  struct ex_iommu_ioas_noiommu_get_pa g = { .size = sizeof(g), .ioas_id = ioas, .iova = iova, .length = 4096 };
  if (ioctl(iommufd, EX_IOMMU_IOAS_NOIOMMU_GET_PA, &g)) { perror("get_pa"); exit(2); }
  return g.out_phys;
}
static uint32_t copy(uint64_t src, uint64_t dst, uint64_t len) {
  pwrite(dev, &src, 8, MCPY_SRC);
  pwrite(dev, &dst, 8, MCPY_DST);
  pwrite(dev, &len, 8, MCPY_LEN);
  uint32_t one = 1, st = 0;
  pwrite(dev, &one, 4, MCPY_DOORBELL);
  pread(dev, &st, 4, MCPY_STATUS);
  return st;
}
`;

/** Nothing of the program's is held once it exited: no pinned page, model memory file or frame owned for it. */
export function expectNothingHeld(r: ExecResult): void {
  expect(r.counters.pinnedPages, "pinned pages left").toBe(0);
  expect(r.counters.memFiles, "memory files left").toBe(0);
  expect(r.counters.ownedFrames, "owned frames left").toBe(0);
}
