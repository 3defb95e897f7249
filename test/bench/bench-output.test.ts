import { execFileSync } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { NEEDS_DIST, skipWithoutDist } from "../needs-dist.js";

// The shape of `npm run bench -- --json` (issues 3 and 4 name these keys);
// timings are never asserted here, only that every case reports a number.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const main = resolve(root, "dist/bench/main.js");

it.skipIf(skipWithoutDist("bench/main.js"))(
  `bench --json --quick prints one JSON line with every case ${NEEDS_DIST}`,
  () => {
    const out = execFileSync(process.execPath, [main, "--json", "--quick", "--runs", "1"], {
      encoding: "utf8",
      timeout: 120_000,
    });
    const lines = out.trim().split("\n");
    expect(lines).toHaveLength(1);
    const r = JSON.parse(lines[0]) as Record<string, number | null>;
    for (const k of [
      "map4k_ns_per_page",
      "lookup_ns",
      "unmap4k_ns_per_page",
      "map2m_ns_per_page",
      "ioas_map_hugetlb_64g_ns_per_2m",
      "ioas_map_hugetlb_64g_rss_mb",
      "ioas_area_scaling_ratio",
      "ioas_map_hugetlb_64g_seeded_cold_ns_per_2m",
      "ioas_map_hugetlb_64g_seeded_warm_ns_per_2m",
      "ratio_ioas_map_hugetlb_64g_seeded_cold_ns_per_2m",
      "ratio_ioas_map_hugetlb_64g_seeded_warm_ns_per_2m",
      "syscall_ioctl_fail_ns",
      "syscall_close_ebadf_ns",
      "syscall_object_make_free_ns",
      "bridge_ioas_map_1g_ms",
      "bridge_ioas_unmap_munmap_1g_ms",
    ]) {
      expect(typeof r[k], k).toBe("number");
      // the RSS growth of the hugetlb map may round to 0 MB (untouched frames never materialize)
      if (k === "ioas_map_hugetlb_64g_rss_mb") expect(r[k], k).toBeGreaterThanOrEqual(0);
      else expect(r[k], k).toBeGreaterThan(0);
    }
    // each syscall case next to the host kernel's own (bench/syscallref.c, built with cc in the run)
    for (const k of ["syscall_ioctl_fail", "syscall_close_ebadf", "syscall_object_make_free"]) {
      expect(r[`${k}_host_ns`], k).toBeGreaterThan(0);
      expect(r[`${k}_ratio`], k).toBeCloseTo((r[`${k}_ns`] as number) / (r[`${k}_host_ns`] as number), 0);
    }
    // (--quick does fewer lookups than ptref.c's fixed 1M, so the two checksums differ here)
    expect(typeof r.amdv1_check).toBe("number");
  },
);
