import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { webAssetsDir } from "../../src/cli/cmd-web.js";
import { cli } from "../cli/helpers.js";
import { skipUnlessBuilt } from "../needs-dist.js";
import { serve } from "./serve.js";

const built = webAssetsDir() !== undefined;

describe.skipIf(skipUnlessBuilt(built))("iommufd-sim web (needs `npm run build` for dist/web)", () => {
  it("`help web` exits 0 and shows the usage", async () => {
    const r = await cli(["help", "web"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: iommufd-sim web \[scenario\.yaml\] \[--port N\] \[--export DIR\]/);
    expect((await cli(["help"])).stdout).toMatch(/web \[scenario\.yaml\]/);
  });

  it("serves the noiommu demo on 127.0.0.1, URL first on stdout, only its own files", async () => {
    const s = await serve(["--port", "0"]);
    try {
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const page = await fetch(s.url);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
      const html = await page.text();
      const boot = JSON.parse(
        /<script type="application\/json" id="iommufd-sim-boot">(.*?)<\/script>/s.exec(html)![1],
      );
      expect(boot.file).toBe("examples/demo-noiommu.yaml");
      expect(boot.text).toMatch(/^name: demo-noiommu/);
      expect(Object.keys(boot.examples)).toContain("demo-ppc64.yaml");
      expect(html).not.toMatch(/https?:\/\/(?!127)/);
      const js = await fetch(new URL("app.js", s.url));
      expect(js.status).toBe(200);
      expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      expect((await fetch(new URL("app.css", s.url))).status).toBe(200);
      expect((await fetch(new URL("../../etc/passwd", s.url))).status).toBe(404);
      expect((await fetch(new URL("package.json", s.url))).status).toBe(404);
      expect((await fetch(s.url, { method: "POST" })).status).toBe(405);
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });

  it("serves a given scenario; a broken one still opens, its error named on stderr", async () => {
    const dir = mkdtempSync(join(tmpdir(), "web-"));
    try {
      const f = join(dir, "bad.yaml");
      const { writeFileSync } = await import("node:fs");
      writeFileSync(f, "name: bad\nsteps:\n  - frobnicate: 1\n");
      const s = await serve([f, "--port=0"]);
      try {
        expect(s.stderr()).toMatch(/bad\.yaml:3: .*frobnicate.*\(the page shows it in the editor\)/);
        const html = await (await fetch(s.url)).text();
        expect(html).toContain("frobnicate");
      } finally {
        await s.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--export writes a static site of the same page", async () => {
    const dir = mkdtempSync(join(tmpdir(), "web-export-"));
    try {
      const r = await cli(["web", "examples/demo-iommu.yaml", "--export", dir]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(join(dir, "index.html"));
      for (const f of ["index.html", "app.js", "app.css"]) expect(existsSync(join(dir, f)), f).toBe(true);
      const html = readFileSync(join(dir, "index.html"), "utf8");
      expect(html).toContain('"file":"examples/demo-iommu.yaml"');
      expect(readFileSync(join(dir, "app.js")).equals(readFileSync(join(webAssetsDir()!, "app.js")))).toBe(
        true,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("usage errors exit 2 and serve nothing", async () => {
    expect((await cli(["web", "--port", "http"])).code).toBe(2);
    expect((await cli(["web", "--port", "70000"])).code).toBe(2);
    expect((await cli(["web", "a.yaml", "b.yaml"])).code).toBe(2);
    const missing = await cli(["web", "/nonexistent/x.yaml", "--port", "0"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read \/nonexistent\/x\.yaml: ENOENT/);
    expect((await cli(["web", "--port"])).code).toBe(2);
  });
});

it("the web view's bundle is built by `npm run build` (dist/web)", () => {
  // npm test builds first; in CI a missing bundle is a broken build script, not a reason to skip
  if (process.env.CI === "true") expect(built).toBe(true);
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  expect(pkg.scripts.build).toContain("scripts/build-web.mjs");
  expect(pkg.files).toContain("dist");
});
