import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseScenario, ScenarioError } from "../scenario/index.js";
import { exampleFile } from "./cmd-demo.js";
import type { CliContext } from "./main.js";

/** The bundle `npm run build` writes (scripts/build-web.mjs): dist/web beside dist/cli, or from src/ under the tests. */
export function webAssetsDir(): string | undefined {
  for (const rel of ["../web/", "../../dist/web/"]) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(dir, "app.js")) && existsSync(join(dir, "index.html"))) return dir;
  }
  return undefined;
}

const TYPES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

/** The examples shipped in the package, by file name (the page's "Open an example" menu). */
function examples(): Record<string, string> {
  const dir = exampleFile("");
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort())
    if (f.endsWith(".yaml")) out[f] = readFileSync(join(dir, f), "utf8");
  return out;
}

/** index.html with the scenario and the examples inside it, so the page needs nothing else. */
export function pageHtml(assets: string, file: string, text: string): string {
  const boot = JSON.stringify({ file, text, examples: examples() })
    // inside <script>, "</" and U+2028/9 must not appear raw
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
  const html = readFileSync(join(assets, "index.html"), "utf8");
  return html.replace(
    "<!--BOOT-->",
    `<script type="application/json" id="iommufd-sim-boot">${boot}</script>`,
  );
}

/**
 * `iommufd-sim web [scenario.yaml] [--port N] [--export DIR]`: serve the
 * browser view on 127.0.0.1 (first stdout line: its URL) until interrupted,
 * or write it as a static site. The page runs the model itself.
 */
export async function cmdWeb(ctx: CliContext, args: string[]): Promise<number> {
  const { out, opts } = ctx;
  if (args.length > 1) {
    out.error(
      "iommufd-sim web: expected at most one scenario file\nusage: iommufd-sim web [scenario.yaml] [--port N] [--export DIR]",
    );
    return 2;
  }
  const port = opts.port === undefined ? 8080 : Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    out.error(`iommufd-sim web: --port ${opts.port}: not a port number (0 picks a free one)`);
    return 2;
  }
  const assets = webAssetsDir();
  if (assets === undefined) {
    out.error("iommufd-sim web: the page's bundle (dist/web/app.js) is missing: run `npm run build`");
    return 2;
  }
  const path = args[0] ?? exampleFile("demo-noiommu.yaml");
  const file = args[0] ?? "examples/demo-noiommu.yaml";
  let text: string;
  try {
    text = (ctx.io.readFile ?? ((p: string) => readFileSync(p, "utf8")))(path);
  } catch (e) {
    out.error(
      `iommufd-sim: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
    return 2;
  }
  // A broken file still opens (the page shows the error on its line); say so here too.
  try {
    parseScenario(text, file);
  } catch (e) {
    if (!(e instanceof ScenarioError)) throw e;
    out.error(`${file}${e.line ? `:${e.line}` : ""}: ${e.message} (the page shows it in the editor)`);
  }
  const html = pageHtml(assets, file, text);
  if (opts.export !== undefined) {
    mkdirSync(opts.export, { recursive: true });
    writeFileSync(join(opts.export, "index.html"), html);
    for (const f of ["app.js", "app.css"]) writeFileSync(join(opts.export, f), readFileSync(join(assets, f)));
    out.line(`wrote ${join(opts.export, "index.html")} (open it in a browser; it needs no server)`);
    return 0;
  }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const name = url.pathname === "/" ? "index.html" : url.pathname.slice(1);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (!Object.hasOwn(TYPES, name)) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    const body = name === "index.html" ? html : readFileSync(join(assets, name));
    res.writeHead(200, { "content-type": TYPES[name], "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  const listening = await listen(server, port);
  if (typeof listening === "string") {
    out.error(`iommufd-sim web: cannot listen on 127.0.0.1:${port}: ${listening}`);
    return 1;
  }
  ctx.io.stdout(`http://127.0.0.1:${listening}/\n`);
  out.error(`serving ${file}; Ctrl+C stops`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    ctx.io.onServer?.(server, stop);
  });
  return 0;
}

function listen(server: Server, port: number): Promise<number | string> {
  return new Promise((resolve) => {
    server.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    server.listen(port, "127.0.0.1", () => {
      const a = server.address();
      resolve(typeof a === "object" && a !== null ? a.port : port);
    });
  });
}
