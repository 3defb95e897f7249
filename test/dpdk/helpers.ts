import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Debian's DPDK test app (package dpdk-dev). */
export const DPDK_TEST = "/usr/bin/dpdk-test";

/** CI installs dpdk-dev and libdpdk-dev (.ci/run): there a missing DPDK fails, never skips. */
export const inCI = process.env.CI === "true";

/** True when dpdk-test and libdpdk.pc are installed. */
export function haveDpdk(): boolean {
  if (!existsSync(DPDK_TEST)) return false;
  try {
    execFileSync("pkg-config", ["--exists", "libdpdk"]);
    return true;
  } catch {
    return false;
  }
}

/** Build examples/dpdk/memcpy_pmd.c (scripts/dpdk/build.sh, cached) and return the .so's path. */
export function buildDriver(): string {
  return execFileSync(join(ROOT, "scripts/dpdk/build.sh"), { encoding: "utf8" }).trim();
}

/**
 * EAL arguments every run uses: no shared config and a private file prefix
 * (test files run in parallel; the default /var/run/dpdk/rte would be shared),
 * our driver, and only the simulated device.
 */
export function ealArgs(driver: string, extra: string[] = []): string[] {
  return [
    "--no-shconf",
    "--file-prefix",
    `iommufd-sim-${process.pid}`,
    "-d",
    driver,
    "-a",
    "0000:00:04.0",
    ...extra,
  ];
}

/** The ioctl names of a trace, in order. */
export function ioctlNames(trace: string): string[] {
  return [...trace.matchAll(/ioctl\(\d+, ([A-Z0-9_]+)/g)].map((m) => m[1]);
}
