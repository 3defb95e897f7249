import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webAssetsDir } from "../../src/cli/cmd-web.js";
import { parseScenario, runScenario } from "../../src/scenario/index.js";
import { serve } from "./serve.js";

// The web view in a real browser: Debian's chromium package, driven by
// playwright-core (no browser download). CI installs chromium (.ci/run); a
// machine without it skips these with the reason in the suite's name, but in
// CI (CI=true) a missing chromium fails.
const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
const inCI = process.env.CI === "true";
const SHOTS = new URL("../../test-output/web/", import.meta.url).pathname;

it(`Chromium is at ${CHROMIUM}${haveChromium ? "" : inCI ? " (CI: required)" : " (absent: the browser tests below are skipped; apt-get install -y chromium)"}`, () => {
  if (inCI) expect(haveChromium, `${CHROMIUM} is missing in CI: .ci/run installs it with apt-get`).toBe(true);
  if (haveChromium || inCI) expect(webAssetsDir(), "dist/web: npm run build").toBeDefined();
});

const example = (f: string) => readFileSync(new URL(`../../examples/${f}`, import.meta.url), "utf8");

describe.skipIf(!haveChromium)(
  `the web view in Chromium${haveChromium ? "" : ` — SKIPPED: ${CHROMIUM} is absent`}`,
  () => {
    let ctx: BrowserContext;
    let page: Page;
    let server: Awaited<ReturnType<typeof serve>>;
    let profile: string;
    const errors: string[] = [];

    beforeAll(async () => {
      mkdirSync(SHOTS, { recursive: true });
      server = await serve(["--port", "0"]);
      profile = mkdtempSync(join(tmpdir(), "iommufd-sim-chromium-"));
      ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
        viewport: { width: 1280, height: 800 },
      });
      page = ctx.pages()[0] ?? (await ctx.newPage());
      page.on("pageerror", (e) => errors.push(e.message));
      // everything comes from the local server: any other request is a bug
      await page.route("**/*", (route) => {
        if (route.request().url().startsWith(server.url)) return route.continue();
        errors.push(`network: ${route.request().url()}`);
        return route.abort();
      });
      await page.goto(server.url);
      await page.waitForSelector("[data-testid=stepno]");
    }, 120_000);

    afterAll(async () => {
      await ctx?.close();
      await server?.stop();
      if (profile) rmSync(profile, { recursive: true, force: true });
    });

    const stepNo = () => page.textContent("[data-testid=stepno]");
    const open = async (name: string) => {
      await page.selectOption("#example", name);
      await expect.poll(() => page.textContent(".top .file")).toBe(name.replace(/\.yaml$/, ""));
    };
    const gotoStep = async (label: RegExp | string, nth = 0) => {
      await page.click("[data-testid=left-steps]");
      await page.locator("#steplist button", { hasText: label }).nth(nth).click();
    };

    it("opens the noiommu demo and steps with the keyboard, the buttons and the slider", async () => {
      expect(await page.textContent(".top .file")).toBe("demo-noiommu");
      expect(await page.textContent("[data-testid=run-status]")).toContain("run ok");
      expect(await stepNo()).toBe("Step 1 of 22");
      await page.keyboard.press("End");
      expect(await stepNo()).toBe("Step 22 of 22");
      await page.keyboard.press("Home");
      await page.keyboard.press("ArrowRight");
      expect(await stepNo()).toBe("Step 2 of 22");
      await page.click("[data-testid=next]");
      expect(await stepNo()).toBe("Step 3 of 22");
      await page.click("[data-testid=prev]");
      expect(await stepNo()).toBe("Step 2 of 22");
      await page.fill("[data-testid=slider]", "13");
      expect(await stepNo()).toBe("Step 14 of 22");
      const calls = await page.locator("[data-testid=calls] code").allTextContents();
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatch(/^ioctl\(\d+, IOMMU_IOAS_NOIOMMU_GET_PA, \{.*\}\) = 0$/);
      await page.screenshot({ path: join(SHOTS, "noiommu-get-pa.png") });
      // the use-after-unmap DMA: the sanitizer's finding, linked to the step that caused it
      await page.click("[data-testid=tab-dma]");
      const finding = page.locator("[data-testid=dma] tr", { hasText: "use after unmap" });
      await page.keyboard.press("End");
      await page.click("[data-testid=tab-dma]");
      await expect.poll(() => finding.count()).toBe(1);
      await finding.locator("button.link").click();
      expect(await stepNo()).toBe("Step 20 of 22");
      expect(await page.textContent("[data-testid=step]")).toMatch(/DMA sanitizer: use after unmap/);
      await page.screenshot({ path: join(SHOTS, "noiommu-use-after-unmap.png") });
    }, 120_000);

    it("iommu demo: an area at its IOVA, a PTE whose decoded PA is m.debug.hwpt's, the DMA fault", async () => {
      await open("demo-iommu.yaml");
      await page.keyboard.press("End");
      await page.click("[data-testid=tab-ioas]");
      const area = page.locator('[data-testid=track] .seg.area[data-iova="0x200000"]');
      expect(await area.count()).toBe(1);
      expect(await area.getAttribute("aria-label")).toBe("area 0x200000 to 0x3fffff, rw; zoom to it");
      expect(await page.locator("[data-testid=areas] tbody tr").first().textContent()).toMatch(
        /^0x2000000x3fffff2Mrwuser VA 0x7f[0-9a-f]+512/,
      );
      await page.click('[data-testid=ioas] button[aria-label="Whole 64-bit space"]');
      expect(await page.locator('[data-testid=track] .seg.reserved[title*="0xfee00000"]').count()).toBe(1);
      // back to the areas, then zoom in on one: the line shows a 4 MiB window
      await page.click('[data-testid=ioas] button[aria-label="Fit the areas"]');
      await area.click();
      expect(await page.textContent("[data-testid=ioas] .zoombar")).toContain("Showing [0x100000, 0x4fffff]");

      // the page table: walk IOVA 2 MiB and compare with the table m.debug.hwpt reads
      const sc = parseScenario(example("demo-iommu.yaml"), "demo-iommu.yaml");
      const r = runScenario(sc, { trace: true });
      const info = r.machine!.debug.hwpt(
        r.processes.get("vmm")!,
        Number(r.vars.get("iommufd")),
        Number(r.vars.get("hwpt")),
      );
      const dump = info.dump!();
      let table = info.rootPhys;
      let leafPa = "";
      for (let level = info.topLevel; level >= 0; level--) {
        const index = Number((0x200000n >> BigInt(12 + 9 * level)) & 511n);
        const e = dump.find((x) => x.level === level && x.index === index && x.tablePhys === table)!;
        const next = /-> (0x[0-9a-f]+)/.exec(e.text);
        if (next) table = BigInt(next[1]);
        else leafPa = /pa=(0x[0-9a-f]+)/.exec(e.text)![1];
      }
      expect(leafPa).not.toBe("");
      await page.click("[data-testid=tab-pt]");
      await page.fill("[data-testid=walk-iova]", "0x200000");
      await page.press("[data-testid=walk-iova]", "Enter");
      await expect
        .poll(() => page.textContent("[data-testid=walk-result]"))
        .toContain(`PA ${leafPa} via L2[0] → L1[1] → L0[0]`);
      const leaf = page.locator('[data-testid=pte].onpath[data-level="0"]');
      expect(await leaf.getAttribute("data-pa")).toBe(leafPa);
      await leaf.hover();
      const decoded = await page.textContent("[data-testid=pte-inspector]");
      expect(decoded).toContain(`maps PA ${leafPa}, page size 4K`);
      expect(decoded).toContain("permissions: read write");
      expect(decoded).toMatch(/raw [0-9a-f]{16} {2}bytes \(LE\)/);
      await page.screenshot({ path: join(SHOTS, "iommu-page-table.png") });

      // the DMA to an unmapped IOVA: a fault with FAULT_ADDR, and the walk stops at the root
      await gotoStep("DMA fault");
      expect(await stepNo()).toBe("Step 15 of 17");
      const step = await page.textContent("[data-testid=step]");
      expect(step).toContain("FAULT (not-present), FAULT_ADDR 0x4000000");
      expect(step).toContain("fault_addr=0x4000000");
      await page.click("[data-testid=tab-pt]");
      await page.fill("[data-testid=walk-iova]", "0x4000000");
      await page.press("[data-testid=walk-iova]", "Enter");
      await expect
        .poll(() => page.textContent("[data-testid=walk-result]"))
        .toContain("no leaf maps 0x4000000");
      await page.click("[data-testid=tab-dma]");
      expect(
        await page.locator("[data-testid=dma-result]", { hasText: "FAULT_ADDR 0x4000000" }).count(),
      ).toBe(1);
      await page.screenshot({ path: join(SHOTS, "iommu-dma-fault.png") });
    }, 120_000);

    it("ppc64 demo: the sPAPR calls run in the page; over iommufd the window gaps are reserved", async () => {
      await open("demo-ppc64.yaml");
      expect(await page.textContent("[data-testid=run-status]")).toContain("run ok");
      await gotoStep("VFIO_IOMMU_SPAPR_TCE_CREATE");
      expect(await page.textContent("[data-testid=calls]")).toMatch(
        /VFIO_IOMMU_SPAPR_TCE_CREATE, \{.*page_shift=16.*\}\) = 0/,
      );
      await page.click("[data-testid=tab-mem]");
      expect(await page.locator("[data-testid=pins] tbody tr").count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(SHOTS, "ppc64-container.png") });
      await open("ppc64-iommufd-two-windows.yaml");
      await page.keyboard.press("End");
      await page.click("[data-testid=tab-ioas]");
      await page.click('[data-testid=ioas] button[aria-label="Whole 64-bit space"]');
      const reserved = page.locator("[data-testid=track] .seg.reserved");
      expect(await reserved.count()).toBe(2);
      expect(await reserved.first().getAttribute("title")).toMatch(
        /^reserved \[0x[0-9a-f]+, 0x7ffffffffffffff\]: outside the domain aperture$/,
      );
      await page.screenshot({ path: join(SHOTS, "ppc64-iommufd-windows.png") });
    }, 120_000);

    it("edits a scenario: its error is shown on its line, then the fixed scenario reruns in the page", async () => {
      await open("demo-iommu.yaml");
      await page.click("[data-testid=left-edit]");
      const text = example("demo-iommu.yaml");
      await page.fill("[data-testid=editor]", `${text}  - mmap: { len: 4M, bogus: 1 }\n`);
      await page.click("[data-testid=run]");
      const problems = page.locator("[data-testid=problems] .problem");
      await expect.poll(() => problems.count()).toBe(1);
      const line = text.split("\n").length;
      expect(await problems.first().textContent()).toMatch(new RegExp(`^✖ line ${line}: .*bogus`));
      expect(await page.textContent(".gutter .errline")).toBe(`✖${line}`);
      expect(await page.textContent("[data-testid=run-status]")).toContain("scenario has errors");
      await page.screenshot({ path: join(SHOTS, "editor-error.png") });
      await page.fill("[data-testid=editor]", `${text}  - mmap: { len: 4M }\n    as: big\n`);
      await page.keyboard.press("Control+Enter");
      await expect.poll(() => page.textContent("[data-testid=run-status]")).toContain("run ok");
      await page.keyboard.press("End");
      expect(await stepNo()).toBe("Step 18 of 18");
      await page.click("[data-testid=tab-proc]");
      const changed = page.locator("[data-testid=vmas] tr.changed");
      expect(await changed.count()).toBe(1);
      expect(await changed.textContent()).toMatch(/4Mrw-p4Kanonymous/);
      expect(await page.textContent("[data-testid=changes]")).toMatch(/1 VMA/);
    }, 120_000);

    it("is usable from the keyboard alone, at 1280x800, with no error and no network", async () => {
      await open("demo-noiommu.yaml");
      await page.click("[data-testid=left-steps]");
      await page.focus("[data-testid=tab-ioas]");
      await page.keyboard.press("ArrowRight");
      expect(await page.getAttribute("[data-testid=tab-pt]", "aria-selected")).toBe("true");
      expect(await page.evaluate("document.activeElement?.id")).toBe("tab-pt");
      // nothing overflows the window sideways
      expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(1280);
      expect(errors).toEqual([]);
    }, 60_000);
  },
);
