import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

// The VFIO and iommufd handlers (src/vfio, src/iommufd: ioctl structs, the
// records read from or written to their fds, the arrays they point at)
// reach struct fields through the uapi struct tables (structView, offsetOf),
// so a misspelt field does not compile and every offset is the one
// src/uapi states. Only src/vfio/uaccess.ts may touch user bytes with a
// DataView by offset (argsz, a lone __s32, __s32 arrays).
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const VFIO = join(ROOT, "src/vfio");

function walk(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** A DataView load or store whose offset is written with a number (`getUint32(8, true)`, `setInt32(4 * i, …)`). */
const RAW_ACCESS = /\.(?:get|set)(?:Big)?(?:Ui|I)nt(?:8|16|32|64)\(\s*[^,)]*\b\d/g;
/** A user pointer moved to a field by a literal (`arg + 12n`, `arg + BigInt(8)`). */
const RAW_ARG = /\barg\s*\+\s*(?:\d+n\b|BigInt\(\s*\d)/g;
/** The old helpers that took an offset. */
const RAW_HELPER = /\b(?:u32|s32|u64)\(\s*dv\b/g;

function rawOffsets(source: string): string[] {
  const found: string[] = [];
  source.split("\n").forEach((line, i) => {
    for (const re of [RAW_ACCESS, RAW_ARG, RAW_HELPER])
      for (const m of line.matchAll(re)) found.push(`${i + 1}: ${m[0]}`);
  });
  return found;
}

it("src/vfio and src/iommufd read and write no struct field at a raw byte offset", () => {
  const found: string[] = [];
  for (const f of [...walk(VFIO), ...walk(join(ROOT, "src/iommufd"))]) {
    const rel = relative(ROOT, f);
    if (rel === "src/vfio/uaccess.ts") continue;
    for (const hit of rawOffsets(readFileSync(f, "utf8"))) found.push(`${rel}:${hit}`);
  }
  expect(found).toEqual([]);
});

it("the check sees the forms it forbids and lets the named ones through", () => {
  expect(rawOffsets("const index = dv.getUint32(8, true);")).toHaveLength(1);
  expect(rawOffsets("dv.setBigUint64(16, size, true);")).toHaveLength(1);
  expect(rawOffsets("const fd = rv.getInt32(i * 4, true);")).toHaveLength(1);
  expect(rawOffsets("task.copyToUser(arg + 12n, b);")).toHaveLength(1);
  expect(rawOffsets("const flags = u32(dv, 4);")).toHaveLength(1);
  expect(rawOffsets("dv.setUint32(PCI_MSIX_ENTRY_DATA, v, true);")).toEqual([]);
  expect(rawOffsets('task.copyToUser(arg + BigInt(offsetOf(s, "pt_id")), b);')).toEqual([]);
  expect(rawOffsets("const { index } = structView(vfio_region_info, buf);")).toEqual([]);
});
