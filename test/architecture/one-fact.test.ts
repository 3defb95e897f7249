import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseBridgeArgs } from "../../src/bridge/session.js";
import { HELP } from "../../src/cli/help.js";
import { Machine, type MachineOptions } from "../../src/kernel/machine.js";
import {
  MACHINE_OPTIONS,
  type MachineOptionDecl,
  type MachineOptionName,
} from "../../src/kernel/machine-options.js";
import { parseScenario, recordScenario } from "../../src/scenario/index.js";
import { machineOptions } from "../../src/scenario/machine.js";

// One fact in one place: the page size is declared in src/uapi/linux.ts
// (PAGE_SHIFT, PAGE_SIZE, PAGE_SIZE_B) and imported everywhere else.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SRC = join(ROOT, "src");

function walk(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

it("the base page size is declared once, in src/uapi/linux.ts", () => {
  const decl =
    /^\s*(?:export\s+)?const\s+(\w*PAGE(?:_SIZE|_SHIFT)?\w*)\s*(?::\s*\w+\s*)?=\s*(4096n?|0x1000n?|1n?\s*<<\s*12n?|12)\s*;/gm;
  const found: string[] = [];
  for (const f of walk(SRC)) {
    const rel = relative(SRC, f);
    if (rel === "uapi/linux.ts") continue;
    for (const m of readFileSync(f, "utf8").matchAll(decl)) found.push(`${rel}: ${m[1]} = ${m[2]}`);
  }
  expect(found).toEqual([]);
});

it("mmap, open, memfd, eventfd and IOAS_MAP flags are declared once, in src/uapi", () => {
  // a flag constant outside src/uapi whose value is written as a number (not from the uapi constants)
  const decl =
    /^\s*(?:export\s+)?const\s+((?:MAP|PROT|O|MFD|EFD|IOMMU_IOAS_MAP|VFIO_DMA_MAP_FLAG)_\w+)\s*(?::\s*\w+\s*)?=\s*([-0-9a-fA-FxXoObBn_|&<>()\s]*\d[-0-9a-fA-FxXoObBn_|&<>()\s]*);/gm;
  const found: string[] = [];
  for (const f of walk(SRC)) {
    const rel = relative(SRC, f);
    if (rel.startsWith("uapi/")) continue;
    for (const m of readFileSync(f, "utf8").matchAll(decl))
      if (!m[1].endsWith("_MAX")) found.push(`${rel}: ${m[1]} = ${m[2].trim()}`);
  }
  expect(found).toEqual([]);
});

it("the published package leaves the tools that are not its runtime out (the fuzzer, the bench)", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files: string[] };
  expect(pkg.files).toContain("dist");
  expect(pkg.files).toContain("!dist/fuzz");
  expect(pkg.files).toContain("!dist/bench");
});

describe("every Machine option is declared once and reachable from the scenario format and the command line", () => {
  const rows = Object.entries(MACHINE_OPTIONS) as [MachineOptionName, MachineOptionDecl][];

  it("the declaration covers exactly MachineOptions (the compiler checks; this names them)", () => {
    expect(rows.map(([k]) => k).sort()).toEqual(
      [
        "hugepages",
        "iommu",
        "kconfig",
        "kernel",
        "memoryBytes",
        "noiommuRevision",
        "params",
        "pci",
        "seed",
        "spapr",
        "trace",
      ].sort(),
    );
    for (const [k, d] of rows) {
      if (d.scenario === null || d.flag === null) expect(d.why, `${k}: a missing form says why`).toBeTruthy();
    }
  });

  it.each(rows.filter(([, d]) => d.scenario !== null))("%s: a scenario's machine block sets it", (k, d) => {
    const sc = parseScenario(`machine:\n  ${d.scenario}: ${d.example.scenario}\nsteps: []\n`);
    expect(machineOptions(sc.machine, false)[k]).toEqual(d.example.expect);
  });

  it.each(rows.filter(([, d]) => d.flag !== null))("%s: exec/serve flags set it", (k, d) => {
    const argv = (d.example.flag ?? []).flatMap((v) => [d.flag!, v]);
    const r = parseBridgeArgs([...argv, "--", "prog"]);
    if (typeof r === "string") throw new Error(r);
    expect(r.rest).toEqual(["prog"]);
    const want = "flagExpect" in d.example ? d.example.flagExpect : d.example.expect;
    expect(r.opts.machine[k]).toEqual(want);
  });

  it.each(rows.filter(([, d]) => d.scenario !== null))("%s: a recorded scenario writes it back", (k, d) => {
    const base: MachineOptions = k === "spapr" ? { iommu: "spapr" } : {};
    const m = new Machine({ ...base, trace: true, [k]: d.example.expect });
    const text = recordScenario(m);
    expect(text).not.toMatch(/not recorded: machine option/);
    expect(machineOptions(parseScenario(text).machine, false)[k]).toEqual(d.example.expect);
  });

  it("the docs name every scenario key and the exec help every flag", () => {
    const fmt = readFileSync(join(ROOT, "docs/scenario-format.md"), "utf8");
    for (const [, d] of rows) if (d.scenario !== null) expect(fmt).toContain(`| \`${d.scenario}\` |`);
    const help = HELP.exec;
    for (const [, d] of rows) if (d.flag !== null) expect(help).toMatch(new RegExp(`\\n  ${d.flag} `));
  });

  it("enumerated values are checked against the declaration (Machine, flags)", () => {
    expect(() => new Machine({ iommu: "arm" as never })).toThrow(
      /unknown iommu kind "arm" \(amd, intel, spapr, mock, none\)/,
    );
    expect(parseBridgeArgs(["--kernel", "5.10"])).toBe('--kernel: unknown profile "5.10" (latest, 6.12)');
    expect(parseBridgeArgs(["--memory", "lots"])).toMatch(/--memory takes a size/);
    expect(parseBridgeArgs(["--hugepages", "4M=1"])).toMatch(/--hugepages takes SIZE=N/);
  });
});
