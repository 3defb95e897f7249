import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { expect, it } from "vitest";

// The page runs the model itself: the core, the scenario runner and the web
// model must stay free of Node-only modules. Bundle them for the browser and
// read the import graph.
it("the browser bundle's import graph has no node: module and holds the whole model", async () => {
  const entry = fileURLToPath(new URL("../../src/web/client/main.ts", import.meta.url));
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    platform: "browser",
    format: "esm",
    metafile: true,
    logLevel: "silent",
    // report node: imports in the graph instead of failing the build on them
    external: ["node:*"],
  });
  const inputs = r.metafile.inputs;
  const nodeImports = Object.entries(inputs).flatMap(([file, i]) =>
    i.imports.filter((x) => x.path.startsWith("node:") || x.external).map((x) => `${file} -> ${x.path}`),
  );
  expect(nodeImports).toEqual([]);
  const files = Object.keys(inputs);
  for (const f of [
    "src/kernel/machine.ts",
    "src/scenario/run.ts",
    "src/web/model/build.ts",
    "src/pt/engine.ts",
  ])
    expect(files, f).toContain(f);
  expect(files.some((f) => f.includes("node_modules/yaml/"))).toBe(true);
});

it("the check sees a node: import when there is one", async () => {
  const r = await build({
    stdin: {
      contents: 'import { readFileSync } from "node:fs"; console.log(readFileSync);',
      resolveDir: ".",
    },
    bundle: true,
    write: false,
    platform: "browser",
    metafile: true,
    logLevel: "silent",
    external: ["node:*"],
  });
  const imports = Object.values(r.metafile.inputs).flatMap((i) => i.imports.map((x) => x.path));
  expect(imports).toContain("node:fs");
});
