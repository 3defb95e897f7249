import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { exampleFile } from "../../src/cli/cmd-demo.js";
import { NEEDS_DIST, skipWithoutDist } from "../needs-dist.js";
import { cli } from "./helpers.js";

const MAP_SCENARIO = `
name: map-then-overlap
machine: { iommu: amd, memory: 1G }
steps:
  - open: /dev/iommu
    as: iommufd
  - ioas_alloc: $iommufd
    as: ioas
  - mmap: { len: 4M }
    as: buf
  - ioctl: IOMMU_IOAS_MAP
    fd: $iommufd
    arg: { flags: [FIXED_IOVA, WRITEABLE, READABLE], ioas_id: $ioas, user_va: $buf, length: 2M, iova: 2M }
  - ioctl: IOMMU_IOAS_MAP
    fd: $iommufd
    arg: { flags: [FIXED_IOVA, WRITEABLE, READABLE], ioas_id: $ioas, user_va: $buf, length: 2M, iova: 3M }
    expect: { errno: EEXIST }
`;

const WRONG_EXPECTATION = `
name: wrong
steps:
  - open: /dev/iommu
    as: iommufd
  - ioctl: IOMMU_DESTROY
    fd: $iommufd
    arg: { id: 42 }
    expect: { errno: EBUSY }
`;

describe("iommufd-sim (in-process)", () => {
  it("prints help and exits 2 with no command; 0 with --help", async () => {
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain("usage: iommufd-sim <command>");
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const cmd of ["demo", "run", "trace", "inspect", "explain"]) {
      const r = await cli([cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: iommufd-sim ${cmd}`));
    }
  });

  it("rejects unknown commands and options with exit 2", async () => {
    expect((await cli(["frobnicate"])).code).toBe(2);
    const r = await cli(["run", "x.yaml", "--frob"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option --frob");
    expect((await cli(["run"])).code).toBe(2);
    expect((await cli(["run", "missing.yaml"], { files: {} })).stderr).toContain(
      "cannot read missing.yaml: ENOENT",
    );
  });

  it("run: PASS and exit 0 when every expectation holds", async () => {
    const r = await cli(["run", "s.yaml"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("PASS s.yaml (5 steps, 1 with expectations)\n");
  });

  it("run: exit 1 naming the step, its line, the expectation and the call", async () => {
    const r = await cli(["run", "w.yaml"], { files: { "w.yaml": WRONG_EXPECTATION } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("FAIL w.yaml: step 2 (line 6): ioctl IOMMU_DESTROY");
    expect(r.stderr).toContain("expected EBUSY, got ENOENT");
    expect(r.stderr).toContain("call: ioctl(0, IOMMU_DESTROY, {size=8, id=42}) = -1 ENOENT");
  });

  it("run: a step without expect must succeed", async () => {
    const sc = "steps:\n  - open: /dev/nonexistent\n";
    const r = await cli(["run", "a.yaml"], { files: { "a.yaml": sc } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("expected success, got ENOENT");
  });

  it("run: a scenario mistake is exit 3 with file:line", async () => {
    const bad = "steps:\n  - open: /dev/iommu\n  - ioctl: IOMMU_IOAS_MAP\n    fd: 3\n    colour: red\n";
    const r = await cli(["run", "b.yaml"], { files: { "b.yaml": bad } });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^b\.yaml:3: step 2 \(line 3\): ioctl takes no "colour"/);
    const badField =
      "steps:\n  - open: /dev/iommu\n    as: fd\n  - ioctl: IOMMU_IOAS_ALLOC\n    fd: $fd\n    arg: { nope: 1 }\n";
    const r2 = await cli(["run", "c.yaml"], { files: { "c.yaml": badField } });
    expect(r2.code).toBe(3);
    expect(r2.stderr).toContain('iommu_ioas_alloc has no field "nope"');
  });

  it("run --json: a machine-readable result", async () => {
    const r = await cli(["run", "w.yaml", "--json"], { files: { "w.yaml": WRONG_EXPECTATION } });
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(false);
    expect(j.failure.kind).toBe("expectation");
    expect(j.failure.message).toMatch(/^expected EBUSY, got ENOENT \(.+\)$/);
    expect(j.steps[1]).toMatchObject({ kind: "ioctl", errno: "ENOENT", line: 6 });
    expect(j.steps[1].out).toEqual({ size: "8", id: "42" });
    expect(typeof j.counters.openFiles).toBe("number");
  });

  it("run --verbose: one line per step with captured variables", async () => {
    const r = await cli(["run", "s.yaml", "-v"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("✓ step 2 (line 7) ioctl IOMMU_IOAS_ALLOC = 0  $ioas=1");
    expect(r.stdout).toContain("✓ step 5 (line 14) ioctl IOMMU_IOAS_MAP = -1 EEXIST");
  });

  it("run --quiet prints nothing on success", async () => {
    const r = await cli(["run", "s.yaml", "-q"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("trace: every syscall strace-style, structs decoded, failures with errno and reason", async () => {
    const r = await cli(["trace", "s.yaml"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe('open("/dev/iommu", O_RDWR) = 0');
    expect(lines[1]).toBe("ioctl(0, IOMMU_IOAS_ALLOC, {size=12, flags=0, out_ioas_id=1}) = 0");
    expect(lines[3]).toMatch(
      /^ioctl\(0, IOMMU_IOAS_MAP, \{size=40, flags=FIXED_IOVA\|WRITEABLE\|READABLE, ioas_id=1, user_va=0x[0-9a-f]+, length=0x200000, iova=0x200000\}\) = 0$/,
    );
    expect(lines[4]).toMatch(/ = -1 EEXIST \(.+\)$/);
    const pid = await cli(["trace", "s.yaml", "--pid"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(pid.stdout.split("\n")[0]).toBe('[pid 100] open("/dev/iommu", O_RDWR) = 0');
  });

  it("trace --verbose puts each step's header above its calls", async () => {
    const r = await cli(["trace", "s.yaml", "-v"], { files: { "s.yaml": MAP_SCENARIO } });
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("# step 1 (line 5): open /dev/iommu");
    expect(lines[1]).toBe('open("/dev/iommu", O_RDWR) = 0');
  });

  it("explain: each failed call, the rule behind it, and whether it was expected", async () => {
    const r = await cli(["explain", "s.yaml"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("step 5 (line 14)");
    expect(r.stdout).toContain("= -1 EEXIST (expected by the scenario)");
    expect(r.stdout).toMatch(/why: .*overlap/);
    expect(r.stdout).toContain("1 failed call(s).");
    const j = JSON.parse(
      (await cli(["explain", "w.yaml", "--json"], { files: { "w.yaml": WRONG_EXPECTATION } })).stdout,
    );
    expect(j.failedCalls).toHaveLength(1);
    expect(j.failedCalls[0]).toMatchObject({ errnoName: "ENOENT", expected: false, call: "ioctl" });
  });

  it("inspect: IOAS areas, counters and invariants after the run", async () => {
    const r = await cli(["inspect", "s.yaml"], { files: { "s.yaml": MAP_SCENARIO } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("iommufd (pid 100, fd 0)");
    expect(r.stdout).toContain("IOAS 1: 1 area(s)");
    expect(r.stdout).toMatch(/\[0x200000, 0x3fffff\] 0x200000 FIXED_IOVA\|WRITEABLE\|READABLE <- user_va 0x/);
    expect(r.stdout).toContain("invariants: hold");
    const j = JSON.parse(
      (await cli(["inspect", "s.yaml", "--json"], { files: { "s.yaml": MAP_SCENARIO } })).stdout,
    );
    expect(j.iommufds[0].ioas[0].areas).toHaveLength(1);
    expect(j.counters.objects).toBe(1);
  });

  it("inspect shows an attached device's HWPT and its page table", async () => {
    const r = await cli(["inspect", new URL("../../examples/demo-iommu.yaml", import.meta.url).pathname]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("device 1 (device fd 0): attached to HWPT 3");
    expect(r.stdout).toMatch(
      /HWPT 3 \(automatic domain\) on 2\n {4}format amdv1, root table at 0x[0-9a-f]+, top level \d/,
    );
    expect(r.stdout).toMatch(/L\d\[\d{3}\] [0-9a-f]{16}/);
  });

  it("colour only on a terminal (or --color), never with NO_COLOR", async () => {
    const files = { "s.yaml": MAP_SCENARIO };
    expect((await cli(["run", "s.yaml"], { files })).stdout).not.toContain("\x1b[");
    expect((await cli(["run", "s.yaml"], { files, tty: true })).stdout).toContain("\x1b[32mPASS\x1b[0m");
    expect((await cli(["run", "s.yaml"], { files, tty: true, env: { NO_COLOR: "1" } })).stdout).not.toContain(
      "\x1b[",
    );
    expect((await cli(["run", "s.yaml", "--color"], { files })).stdout).toContain("\x1b[32m");
    expect((await cli(["run", "s.yaml", "--no-color"], { files, tty: true })).stdout).not.toContain("\x1b[");
  });

  it("shows progress on a terminal for long runs only", async () => {
    const long =
      "steps:\n  - repeat: 300\n    steps:\n      - eventfd: 0\n        as: e\n      - close: $e\n";
    const tty = await cli(["run", "l.yaml"], { files: { "l.yaml": long }, tty: true });
    expect(tty.code).toBe(0);
    expect(tty.stderr).toContain("[600/600]");
    const pipe = await cli(["run", "l.yaml"], { files: { "l.yaml": long } });
    expect(pipe.stderr).toBe("");
    const short = await cli(["run", "s.yaml"], { files: { "s.yaml": MAP_SCENARIO }, tty: true });
    expect(short.stderr).toBe("");
  });

  it("demo: unknown mode is a usage error", async () => {
    const r = await cli(["demo", "sparc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("expected one of noiommu, iommu, ppc64, vfio-group");
  });

  it("demo noiommu walks the noiommu cdev: bind, map, GET_PA, a DMA by PA, the stale PA", async () => {
    const r = await cli(["demo", "noiommu"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("iommufd-sim demo noiommu:");
    expect(r.stdout).toContain("IOMMU_IOAS_NOIOMMU_GET_PA");
    expect(r.stdout).toContain("|copied by physical address|");
    expect(r.stdout).toContain("Machine counters after the run");
    expect(r.stdout).toContain("use after unmap");
  });

  it("demo iommu runs the cdev + iommufd walk-through with a faulting DMA", async () => {
    const r = await cli(["demo", "iommu"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("IOMMU_IOAS_MAP, {size=40, flags=FIXED_IOVA|WRITEABLE|READABLE");
    expect(r.stdout).toContain("-> status=3 fault_addr=0x4000000");
  });

  it("demo ppc64 runs: the sPAPR container is modelled", async () => {
    const r = await cli(["demo", "ppc64"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("iommufd-sim demo ppc64:");
  });

  it("a demo whose subsystem is missing says so, runs nothing, and exits 2", async () => {
    // Every demo runs on this build, so give the ppc64 demo a machine without an sPAPR
    // IOMMU: its probe finds no sPAPR TCE v2 container.
    const file = exampleFile("demo-ppc64.yaml");
    const yaml = readFileSync(file, "utf8");
    expect(yaml).toContain("iommu: spapr");
    const r = await cli(["demo", "ppc64"], { files: { [file]: yaml.replace("iommu: spapr", "iommu: amd") } });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("iommufd-sim demo ppc64: this mode is not modelled yet. It needs:");
    expect(r.stderr).toContain("  - the sPAPR TCE v2 container");
    expect(r.stderr).toContain("Nothing was run.");
  });
});

describe("the built bin", () => {
  it.skipIf(skipWithoutDist("cli/main.js"))(`node bin/iommufd-sim.js runs an example ${NEEDS_DIST}`, () => {
    const bin = new URL("../../bin/iommufd-sim.js", import.meta.url).pathname;
    const ex = new URL("../../examples/iommufd-map-eexist.yaml", import.meta.url).pathname;
    const out = execFileSync(process.execPath, [bin, "run", ex], { encoding: "utf8" });
    expect(out).toMatch(/^PASS /);
  });
});
