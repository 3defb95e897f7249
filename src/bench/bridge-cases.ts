import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { registerSuite } from "./registry.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The C client (src/bench/bridge-roundtrip.c), built once per source text. */
function client(): string {
  const src = join(ROOT, "src/bench/bridge-roundtrip.c");
  const h = createHash("sha256").update(readFileSync(src)).digest("hex").slice(0, 12);
  const dir = join(tmpdir(), "iommufd-sim-bench");
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, `bridge-roundtrip-${h}`);
  if (!existsSync(exe)) execFileSync("cc", ["-O2", "-o", exe, src], { stdio: "ignore" });
  return exe;
}

/**
 * The exec bridge: a failing ioctl a C program makes on /dev/iommu,
 * forwarded by the shim to the model and answered (EINVAL), against a
 * failing ioctl of the real kernel, a bare C-to-C Unix-socket round trip
 * (the floor of a bridge whose sides sleep) and a C-to-C round trip on
 * shared memory with both sides spinning (the floor of the bridge's
 * channel). Runs `iommufd-sim exec` as a user would. The round trip's
 * mean, after as many calls to warm up, is the key; its percentiles (p50,
 * p90, p99) tell a slow tail (the calls that slept) from a slow common
 * case, and the warm-up's mean what a program's first calls pay.
 */
registerSuite({
  name: "bridge",
  run({ quick }) {
    const n = quick ? 500 : 5000;
    const out = execFileSync(
      process.execPath,
      [join(ROOT, "bin/iommufd-sim.js"), "exec", "--", client(), String(n)],
      {
        encoding: "utf8",
      },
    );
    const r = JSON.parse(out) as Record<string, number>;
    return {
      bridge_ioctl_roundtrip_ns: r.bridge_ioctl_roundtrip_ns,
      bridge_ioctl_warmup_ns: r.bridge_ioctl_warmup_ns,
      bridge_ioctl_p50_ns: r.bridge_ioctl_p50_ns,
      bridge_ioctl_p90_ns: r.bridge_ioctl_p90_ns,
      bridge_ioctl_p99_ns: r.bridge_ioctl_p99_ns,
      host_ioctl_fail_ns: r.host_ioctl_fail_ns,
      bridge_ioctl_ratio: r.bridge_ioctl_roundtrip_ns / r.host_ioctl_fail_ns,
      unix_pingpong_ns: r.unix_pingpong_ns,
      spin_pingpong_ns: r.spin_pingpong_ns,
    };
  },
});
