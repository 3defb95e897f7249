// Bundle the web view (src/web/client) into dist/web: one app.js with the
// model, the scenario parser and the yaml package inside, plus index.html and
// app.css. Nothing is loaded from the network at run time.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "web");
mkdirSync(out, { recursive: true });
const r = await build({
  entryPoints: [join(root, "src/web/client/main.ts")],
  outfile: join(out, "app.js"),
  bundle: true,
  // a classic script: an exported page opened from file:// may not load a module script (origin null)
  format: "iife",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});
// A node: import would only fail at run time in the browser: refuse it here too.
const nodeImports = Object.values(r.metafile.inputs).flatMap((i) => i.imports.filter((x) => x.path.startsWith("node:")));
if (nodeImports.length) throw new Error(`the web bundle imports Node modules: ${nodeImports.map((x) => x.path).join(", ")}`);
copyFileSync(join(root, "src/web/client/index.html"), join(out, "index.html"));
copyFileSync(join(root, "src/web/client/style.css"), join(out, "app.css"));
