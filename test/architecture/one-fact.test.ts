import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

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

it("the published package leaves the tools that are not its runtime out (the fuzzer, the bench)", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files: string[] };
  expect(pkg.files).toContain("dist");
  expect(pkg.files).toContain("!dist/fuzz");
  expect(pkg.files).toContain("!dist/bench");
});
