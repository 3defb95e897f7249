import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { cacheDir } from "../../src/bridge/shim-build.js";
import type { StructDef } from "../../src/uapi/struct.js";
import * as V from "../../src/uapi/vfio.js";

// Every VFIO struct table against the kernel's own header: sizeof and each
// field's offsetof, compiled by the machine's C compiler from Linux 7.2's
// include/uapi/linux/vfio.h (the source `scripts/selftests/build.sh vfio`
// unpacks into the cache; without it the test is skipped, as it says).
const UAPI = join(cacheDir(), "selftests/vfio-7.2/src/include/uapi");
const HAVE = existsSync(join(UAPI, "linux/vfio.h"));
const dir = mkdtempSync(join(tmpdir(), "iommufd-sim-vfio-layout-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tables = Object.entries(V)
  .filter(([k, v]) => k.startsWith("vfio_") && typeof v === "object" && v !== null && "fields" in v)
  .map(([, v]) => v as StructDef);

/** The C member a table field stands for: capability structs keep id/version/next in `header`. */
function member(d: StructDef, name: string, offset: number): string {
  const inHeader =
    d.name !== "vfio_info_cap_header" && ["id", "version", "next"].includes(name) && offset < 8;
  return inHeader ? `header.${name}` : name;
}

it.skipIf(!HAVE)(
  `every struct table has the kernel's sizeof and offsets${HAVE ? "" : " (7.2 source not cached: skipped; scripts/selftests/build.sh vfio)"}`,
  () => {
    expect(tables.length).toBeGreaterThan(40);
    let c = "#include <stdio.h>\n#include <stddef.h>\n#include <linux/vfio.h>\nint main(void) {\n";
    for (const d of tables) {
      c += `  printf("${d.name} %zu\\n", sizeof(struct ${d.name}));\n`;
      for (const f of d.fields)
        c += `  printf("${d.name}.${f.name} %zu\\n", offsetof(struct ${d.name}, ${member(d, f.name, f.offset)}));\n`;
    }
    c += "  return 0;\n}\n";
    const src = join(dir, "layout.c");
    const bin = join(dir, "layout");
    writeFileSync(src, c);
    // the uapi header as the kernel builds it: no __counted_by, no __user
    execFileSync("cc", ["-D__counted_by(x)=", "-D__user=", "-I", UAPI, "-o", bin, src]);
    const kernel = execFileSync(bin, { encoding: "utf8" });
    let ours = "";
    for (const d of tables) {
      ours += `${d.name} ${d.size}\n`;
      for (const f of d.fields) ours += `${d.name}.${f.name} ${f.offset}\n`;
    }
    expect(ours).toBe(kernel);
  },
);
