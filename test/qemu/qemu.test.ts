import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { qemu10Dir } from "../../src/cli/qemu-run.js";

// Real, unmodified QEMUs with the model's memcpy device assigned, driven by
// examples/qemu/memcpy.qtest (docs/qemu.md). .ci/run installs them
// (scripts/qemu/install.sh); in CI a missing QEMU fails these tests, elsewhere it skips them.
const inCI = process.env.CI === "true";

function has72(): boolean {
  try {
    execFileSync("qemu-system-x86_64", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const HAVE = { "7.2": has72(), "10": existsSync(join(qemu10Dir(), "usr/bin/qemu-system-x86_64")) };
const dir = mkdtempSync(join(tmpdir(), "iommufd-sim-qemu-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function runQemu(args: string[]) {
  let out = "";
  let err = "";
  const status = await main(["qemu", ...args], {
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
  });
  return { status, out, err };
}

// the whole run is a real QEMU under a loaded machine: a generous guard, not a timing assertion
const LIMIT = 240_000;

for (const v of ["7.2", "10"] as const) {
  const missing = !HAVE[v];
  describe(`QEMU ${v}${missing && !inCI ? " (not installed: skipped; scripts/qemu/install.sh)" : ""}`, () => {
    it.skipIf(missing && !inCI).each([false, true])(
      "assigns the memcpy device, copies by DMA, delivers MSI-X, survives a reset, faults outside RAM (BAR mmap: %s)",
      async (mmap) => {
        expect(HAVE[v], `QEMU ${v} is not installed: .ci/run runs scripts/qemu/install.sh`).toBe(true);
        const trace = join(dir, `trace-${v}-${mmap}.txt`);
        const r = await runQemu(["--qemu", v, "--trace", trace, ...(mmap ? ["--mmap"] : [])]);
        expect(r.out).toContain("17 checks, 0 failed; QEMU exit status 0; model errors 0");
        expect(r.out).not.toContain("FAILED");
        expect(r.status).toBe(0);
        expect(r.out).toContain(`QEMU ${v}, ${v === "10" ? "iommufd backend" : "legacy VFIO container"}`);
        // the copies landed, the MSI-X messages were QEMU's writes after the device's eventfd fired
        expect(r.out).toMatch(/read 0x200000 42 +OK 0x68656c6c6f2066726f6d.* {2}ok/);
        expect(r.out).toMatch(/readl 0x300000 +OK 0x0*c0ffee01 {2}ok/);
        expect(r.out).toMatch(/readl 0x300000 +OK 0x0*c0ffee02 {2}ok/);
        // the faulting DMA: STATUS 3, FAULT_ADDR at the end of RAM, nothing written
        expect(r.out).toMatch(/readl 0xe0000024 +OK 0x0*3 {2}ok/);
        expect(r.out).toMatch(/read 0x7fffff0 16 +OK 0x(ee){16} {2}ok/);
        expect(r.out).toContain("DMA by the device: 5 transfer(s), 1 fault(s)");
        expect(r.out).toContain("fault: write 0x7fffff0 +42: not-present");
        // QEMU never closes its VFIO fds: exit released them and the pins
        expect(r.out).toMatch(
          /nothing left in the model \(exit released [1-9]\d* fd\(s\) and 32800 pinned page/,
        );
        const t = readFileSync(trace, "utf8");
        if (v === "7.2") {
          expect(t).toContain("ioctl(10, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) = 0");
          expect(t).toMatch(
            /VFIO_IOMMU_MAP_DMA, \{argsz=32, flags=READ\|WRITE, vaddr=0x[0-9a-f]+, iova=0x0, size=0x8000000\}\) = 0/,
          );
          expect(t).toMatch(/VFIO_IOMMU_UNMAP_DMA, \{argsz=24, flags=0, iova=0x0, size=0x8000000\}\) = 0/);
        } else {
          expect(t).toMatch(/VFIO_DEVICE_BIND_IOMMUFD.* = 0/);
          expect(t).toMatch(/IOMMU_HWPT_ALLOC.* = 0/);
          expect(t).toMatch(
            /IOMMU_IOAS_MAP, \{size=40, flags=FIXED_IOVA\|WRITEABLE\|READABLE, ioas_id=\d+, user_va=0x[0-9a-f]+, length=0x8000000, iova=0x0\}\) = 0/,
          );
          expect(t).toMatch(/IOMMU_IOAS_UNMAP, \{size=24, ioas_id=\d+, iova=0x0, length=0x8000000\}\) = 0/);
          expect(t).toMatch(/VFIO_DEVICE_FEATURE, .* = -1 ENOTTY/);
        }
        expect(t).not.toContain('subsystem") = -1');
        // ERR and REQ irqs and the MSI-X vector take QEMU's real eventfds; the reset reaches the device
        expect(t).toMatch(
          /VFIO_DEVICE_SET_IRQS, \{argsz=24, flags=DATA_EVENTFD\|ACTION_TRIGGER, index=3, start=0, count=1\}\) = 0/,
        );
        expect(t).toMatch(
          /VFIO_DEVICE_SET_IRQS, \{argsz=24, flags=DATA_EVENTFD\|ACTION_TRIGGER, index=4, start=0, count=1\}\) = 0/,
        );
        expect(t).toMatch(
          /VFIO_DEVICE_SET_IRQS, \{argsz=24, flags=DATA_EVENTFD\|ACTION_TRIGGER, index=2, start=0, count=1\}\) = 0/,
        );
        expect(t.match(/VFIO_DEVICE_RESET\) = 0/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
        expect(t).toMatch(/pread64\(\d+, <4096 bytes>, 0x70000000000\) = 4096/);
        if (mmap)
          expect(t).toMatch(
            /mmap\(0x[0-9a-f]+, 0x1000, PROT_READ\|PROT_WRITE, MAP_SHARED\|MAP_FIXED, \d+, 0x0\)/,
          );
        else expect(t).toMatch(/pwrite64\(\d+, <4 bytes>, 0x20\) = 4/);
      },
      LIMIT,
    );
  });
}

describe.skipIf(!HAVE["7.2"] && !inCI)("a script check that fails", () => {
  it(
    "exits 1 and names the line and the expected reply",
    async () => {
      const script = join(dir, "wrong.qtest");
      writeFileSync(script, "outl 0xcf8 0x80002000\ninl 0xcfc => OK 0x12345678\n");
      const r = await runQemu(["--script", script]);
      expect(r.status).toBe(1);
      expect(r.out).toMatch(/inl 0xcfc +OK 0x11de0 {2}FAILED \(line 2: expected OK 0x12345678\)/);
      expect(r.out).toContain("1 checks, 1 failed");
      expect(r.out).toMatch(/\nFAIL\n/);
    },
    LIMIT,
  );
});
