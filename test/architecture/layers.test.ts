import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

// docs/architecture.md: a layer imports only from layers below it. This
// test reads every import in src/ and checks the edge against that table.
const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../src");

/** Kernel modules drivers may use (the include/linux of the model). */
const KERNEL_INTERFACES = new Set(
  ["file", "task", "vfs", "kctx", "printk", "cred", "kconfig", "params", "eventfd", "trace"].map(
    (n) => `kernel/${n}.ts`,
  ),
);

function layerOf(file: string): string {
  const rel = relative(SRC, file);
  if (KERNEL_INTERFACES.has(rel)) return "kernel-if";
  const top = rel.split("/")[0];
  return top.endsWith(".ts") ? "index" : top;
}

const ALLOWED: Record<string, string[]> = {
  uapi: [],
  hw: ["uapi"],
  mm: ["hw", "uapi"],
  pt: ["hw", "uapi"],
  "kernel-if": ["hw", "mm", "uapi"],
  iommu: ["kernel-if", "pt", "mm", "hw", "uapi"],
  iommufd: ["iommu", "kernel-if", "pt", "mm", "hw", "uapi"],
  vfio: ["iommufd", "iommu", "kernel-if", "pt", "mm", "hw", "uapi"],
  kernel: ["vfio", "iommufd", "iommu", "kernel-if", "pt", "mm", "hw", "uapi"],
  index: ["kernel", "kernel-if", "hw", "uapi"],
};
const TOOLS = new Set(["cli", "scenario", "bench", "fuzz", "conformance", "bridge", "web"]);
/**
 * Tool-to-tool edges: the CLI runs scenarios and the bridge, the bridge formats with the CLI's trace printer,
 * the bench times the bridge, the web view runs scenarios and reuses the CLI's trace/explain text.
 */
const TOOL_EDGES = new Set([
  "cli->scenario",
  "cli->bridge",
  "bridge->cli",
  "bench->bridge",
  "web->scenario",
  "web->cli",
]);

function walk(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

it("no layer imports from a layer above it, and the core never imports the tools", () => {
  const violations: string[] = [];
  let edges = 0;
  for (const file of walk(SRC)) {
    const from = layerOf(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/^(?:import|export)[^;]*?from\s+"(\.[^"]+)"/gms)) {
      const target = resolve(dirname(file), m[1].replace(/\.js$/, ".ts"));
      const to = layerOf(target);
      edges++;
      if (to === from) continue;
      if (TOOLS.has(from)) {
        if (TOOLS.has(to) && to !== from && !TOOL_EDGES.has(`${from}->${to}`)) {
          violations.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
        }
        continue;
      }
      // the package entry re-exports the recorder (docs/api.md): a tool, but part of the public API
      if (from === "index" && relative(SRC, target) === "scenario/record.ts") continue;
      if (TOOLS.has(to) || !(ALLOWED[from] ?? []).includes(to)) {
        violations.push(`${relative(SRC, file)} (${from}) -> ${relative(SRC, target)} (${to})`);
      }
    }
  }
  expect(edges).toBeGreaterThan(500);
  expect(violations).toEqual([]);
});

it("the checker sees a violation when there is one", () => {
  expect(layerOf(join(SRC, "hw/phys-mem.ts"))).toBe("hw");
  expect(layerOf(join(SRC, "kernel/task.ts"))).toBe("kernel-if");
  expect(layerOf(join(SRC, "kernel/machine.ts"))).toBe("kernel");
  expect(ALLOWED.hw.includes("mm")).toBe(false);
  expect(ALLOWED.iommu.includes("iommufd")).toBe(false);
});
