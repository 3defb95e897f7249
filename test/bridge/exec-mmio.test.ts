import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { shimSourceDir } from "../../src/bridge/shim-build.js";
import { C_CDEV, C_PRELUDE, compileC, execBin, kv } from "./helpers.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = `${C_PRELUDE}${C_CDEV}${readFileSync(join(HERE, "c/bar-mmio.c"), "utf8")}`;

describe("exec: BAR mmap with trapped loads and stores", () => {
  for (const opt of ["-O0", "-O2"]) {
    it(`drives a memcpy through BAR0 mapped as the selftests map it (${opt})`, async () => {
      const r = await execBin(compileC(SRC, [opt]), [], ["copy"]);
      expect(r.stderr).toBe("");
      const o = kv(r.stdout);
      expect(o).toMatchObject({
        bar0: "4096/1",
        bar2: "16384/1", // the MSI-X BAR: table and PBA on pages of their own
        config_mmap: "0",
        fixed: "1",
        madvise: "0",
        id: "0x5950434d",
        id8: "0x43/0x5950",
        id_plain: "0x5950434d",
        id_byte: "Y",
        map: "0",
        map_bar: "-1/14",
        len_back: "64",
        status: "2",
        status_w: "2",
        dst: "moved by a doorbell rung through the BAR mmap",
        count: "1",
        count2: "2",
        old_is_own: "1",
        own_faults: "2",
        id_after: "0x5950434d",
        child: "42",
        munmap: "0",
        own_faults2: "3",
      });
      expect(r.status).toBe(0);
      expect(r.counters.objects).toBe(0);
    });
  }
});

describe("exec: the MMIO trap's instruction forms and errors", () => {
  it("decodes high-byte registers, SIB, immediates, sign and zero extension as the CPU would", async () => {
    const r = await execBin(compileC(SRC, ["-O2"]), [], ["forms"]);
    expect(r.stderr).toBe("");
    expect(kv(r.stdout)).toMatchObject({
      ah: "0x1111111111114311", // movb (%rdx),%ah: only bits 15:8 change
      ch_store: "0x5a", // the store takes CH, not CL
      ax: "0x111111111111434d", // a 16-bit load keeps bits 63:16
      eax: "0x5950434d", // a 32-bit load clears bits 63:32
      sib: "0x5a",
      movsb: "-128",
      movsw: "-128",
      imm32_sx: "0xfffffffffffffffe", // C7 with REX.W: imm32 sign-extended
      movslq: "-60876", // movw wrote bits 15:0 only; 0xffff1234 sign-extended
      movzb: "0x12",
      private: "1/22",
      too_long: "1/22",
      config: "1/22",
      maps_same: "1",
      grow: "1/14",
      moved: "1",
      id_moved: "0x5950434d",
      old_faults: "1",
    });
    expect(r.status).toBe(0);
    expect(r.counters.objects).toBe(0);
  });

  it("an instruction it cannot emulate is reported and SIGSEGV kills the program", async () => {
    const r = await execBin(compileC(SRC, ["-O2"]), [], ["unknown"]);
    expect(r.stderr).toMatch(
      /iommufd-sim shim: cannot emulate the instruction at 0x[0-9a-f]+ touching a device mapping at 0x[0-9a-f]+; its bytes: f3 0f 10/,
    );
    expect(r.stdout).not.toContain("survived");
    expect(r.status).toBe(128 + 11);
  });

  it("with memory decode off the device refuses the access: SIGBUS, as vfio's fault handler gives", async () => {
    const r = await execBin(compileC(SRC, ["-O2"]), [], ["decode-off"]);
    expect(r.stderr).toMatch(/the device refused the access to its BAR at 0x[0-9a-f]+ \(SIGBUS\)/);
    expect(r.stdout).not.toMatch(/^id=/m);
    expect(r.status).toBe(128 + 7);
  });
});

describe("exec: MSI and MSI-X on the program's real eventfds", () => {
  for (const kind of ["msix", "msi"]) {
    it(`${kind}: a loopback trigger and the device's completion interrupt are readable when the call returns`, async () => {
      const r = await execBin(compileC(SRC, ["-O2"]), [], ["irq", kind]);
      expect(r.stderr).toBe("");
      const o = kv(r.stdout);
      expect(o).toMatchObject({
        msix_count: "4",
        msi_count: "1",
        enable: "0",
        idle: "-11", // EAGAIN: nothing raised yet
        trigger: "0",
        after_trigger: "1",
        again: "-11",
        completion: "1",
        completion_pwrite: "1",
        disable: "0",
        after_disable: "-11",
        trigger_disabled: "-1/22",
        not_eventfd: "-1/22",
        bad_fd: "-1/9",
      });
      if (kind === "msix") expect(o).toMatchObject({ bool: "0", bool0: "-11", bool1: "1" });
      expect(r.status).toBe(0);
      expect(r.counters.objects).toBe(0);
    });
  }
});

describe("the MMIO trap's x86-64 decoder", () => {
  it("decodes ModRM, SIB, disp8/32, RIP-relative and 67-prefixed operands exactly, and refuses other instructions", () => {
    const shim = shimSourceDir();
    const src = readFileSync(join(HERE, "c/x86-decode-test.c"), "utf8");
    const bin = compileC(src, ["-I", shim, join(shim, "x86-decode.c")]);
    const out = kv(execFileSync(bin, { encoding: "utf8" }));
    const keys = Object.keys(out);
    expect(keys.length).toBe(36);
    for (const k of keys) expect(`${k}=${out[k]}`).toBe(`${k}=1`);
  });
});
