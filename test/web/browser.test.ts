import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webAssetsDir } from "../../src/cli/cmd-web.js";
import { main } from "../../src/cli/main.js";
import { parseScenario, runScenario } from "../../src/scenario/index.js";
import { findLowContrast } from "./contrast.js";
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
      // the page opens on the machine as booted: step 0, before any call
      expect(await stepNo()).toBe("Boot (step 0 of 22)");
      expect(await page.locator("[data-testid=calls] code").count()).toBe(0);
      expect(await page.textContent("[data-testid=calls]")).toContain("none yet");
      expect(await page.textContent("[data-testid=changes]")).toContain("the starting point");
      await page.screenshot({ path: join(SHOTS, "noiommu-boot.png") });
      await page.keyboard.press("End");
      expect(await stepNo()).toBe("Step 22 of 22");
      await page.keyboard.press("Home");
      expect(await stepNo()).toBe("Boot (step 0 of 22)");
      await page.keyboard.press("ArrowRight");
      expect(await stepNo()).toBe("Step 1 of 22");
      await page.click("[data-testid=next]");
      expect(await stepNo()).toBe("Step 2 of 22");
      await page.click("[data-testid=prev]");
      expect(await stepNo()).toBe("Step 1 of 22");
      await page.fill("[data-testid=slider]", "14");
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
      expect(
        await page.locator('[data-testid=areas] tbody tr[data-kind="area"]').first().textContent(),
      ).toMatch(/^area0x2000000x3fffff2Mrwuser VA 0x7f[0-9a-f]+512/);
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
        .toBe(" → no leaf maps 0x4000000 (the IOMMU faults: L2[0] → L1[32] is empty)");
      await page.click("[data-testid=tab-dma]");
      expect(
        await page.locator("[data-testid=dma-result]", { hasText: "FAULT_ADDR 0x4000000" }).count(),
      ).toBe(1);
      await page.screenshot({ path: join(SHOTS, "iommu-dma-fault.png") });
    }, 120_000);

    it("ppc64 demo: the container's windows on the address line, a TCE's RPN is the model's; over iommufd too", async () => {
      await open("demo-ppc64.yaml");
      expect(await page.textContent("[data-testid=run-status]")).toContain("run ok");
      await gotoStep("VFIO_IOMMU_SPAPR_TCE_CREATE");
      expect(await page.textContent("[data-testid=calls]")).toMatch(
        /VFIO_IOMMU_SPAPR_TCE_CREATE, \{.*page_shift=16.*\}\) = 0/,
      );
      await page.keyboard.press("End");
      await page.click("[data-testid=tab-ioas]");
      const space = page.locator('[data-testid=ioas][data-kind="spapr"]');
      expect(await space.locator("h3").textContent()).toMatch(/^qemu VFIO container fd \d+$/);
      await space.locator('button[aria-label="Whole 64-bit space"]').click();
      // the 64-bit window drawn at its IOVA start: 1 << 59 is 1/32 of the way along 2^64
      const win = space.locator('[data-testid=track] .seg.window[data-start="0x800000000000000"]');
      expect(await win.count()).toBe(1);
      expect(await win.getAttribute("title")).toBe(
        "window 1 (64-bit, SPAPR_TCE_CREATE): 64K TCEs, 1 level(s) [0x800000000000000, 0x80000003fffffff]",
      );
      const trackBox = (await space.locator("[data-testid=track]").boundingBox())!;
      const winBox = (await win.boundingBox())!;
      expect((winBox.x - trackBox.x) / trackBox.width).toBeCloseTo(1 / 32, 2);
      expect(
        await space.locator("[data-testid=areas] tbody tr", { hasText: "0x800000000000000" }).count(),
      ).toBe(2);
      await page.screenshot({ path: join(SHOTS, "ppc64-container-windows.png") });

      // the TCE at the window's start: its RPN is the host page the model's table holds
      const sc = parseScenario(example("demo-ppc64.yaml"), "demo-ppc64.yaml");
      const r = runScenario(sc, { trace: true });
      const [info] = r.machine!.debug.vfioContainers(r.processes.get("qemu")!);
      const first = info.spapr!.mappings.find((x) => x.iova === 1n << 59n)!;
      await page.click("[data-testid=tab-pt]");
      const tables = page.locator('[data-testid=hwpt][data-kind="spapr"]');
      expect(await tables.locator("[data-testid=window]").allTextContents()).toEqual([
        expect.stringMatching(/^window 0 \(32-bit default\): bus \[0x0, 0x3fffffff\] \(1G\) · 4K TCEs/),
        expect.stringMatching(
          /^window 1 \(64-bit, SPAPR_TCE_CREATE\): bus \[0x800000000000000, 0x80000003fffffff\] \(1G\) · 64K TCEs \(page shift 16\)/,
        ),
      ]);
      await tables.locator("[data-testid=walk-iova]").fill("0x800000000000000");
      await tables.locator("[data-testid=walk-iova]").press("Enter");
      await expect
        .poll(() => tables.locator("[data-testid=walk-result]").textContent())
        .toBe(` → PA 0x${(first.pfn * 4096).toString(16)} via L0[0]`);
      const tce = page.locator('[data-testid=hwpt][data-kind="spapr"] [data-testid=pte].onpath');
      expect(await tce.getAttribute("data-rpn")).toBe(`0x${first.pfn.toString(16)}`);
      expect(await tce.getAttribute("data-iova")).toBe("0x800000000000000");
      await tce.hover();
      const decoded = await tables.locator("[data-testid=pte-inspector]").textContent();
      expect(decoded).toContain(`RPN 0x${first.pfn.toString(16)}`);
      expect(decoded).toContain("page size 64K");
      expect(decoded).toContain("bytes (big-endian)");
      expect(decoded).toContain("permissions: read write");
      await page.screenshot({ path: join(SHOTS, "ppc64-tce-table.png") });
      await page.click("[data-testid=tab-mem]");
      expect(
        await page.locator("[data-testid=pins] tbody tr", { hasText: "pre-registered" }).count(),
      ).toBeGreaterThan(0);
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

    it("vfio-group demo: the type1 container's mapping drawn at its IOVA, its domain's table walked", async () => {
      await open("demo-vfio-group.yaml");
      await gotoStep("device_dma");
      await page.click("[data-testid=tab-ioas]");
      const space = page.locator('[data-testid=ioas][data-kind="type1"]');
      expect(await space.locator(".about").textContent()).toMatch(/^VFIO_TYPE1v2_IOMMU: 1 DMA mapping/);
      const m = space.locator('[data-testid=track] .seg.area[data-iova="0x100000"]');
      expect(await m.getAttribute("aria-label")).toBe("mapping 0x100000 to 0x2fffff, rw; zoom to it");
      expect(await space.locator('[data-testid=areas] tbody tr[data-kind="mapping"]').textContent()).toMatch(
        /^mapping0x1000000x2fffff2Mrwuser VA 0x7f[0-9a-f]+512/,
      );
      // the usable range before it and the MSI window after it, by address, each saying what it is
      expect(await space.locator("[data-testid=areas] tbody tr td:first-child").allTextContents()).toEqual([
        "usable",
        "mapping",
        "reserved",
        "usable",
        "reserved",
        "usable",
      ]);
      await page.screenshot({ path: join(SHOTS, "type1-container.png") });
      await page.click("[data-testid=tab-pt]");
      const t = page.locator('[data-testid=hwpt][data-kind="type1"]');
      await expect
        .poll(() => t.locator("[data-testid=walk-result]").textContent())
        .toMatch(/^ → PA 0x[0-9a-f]+ via L2\[0\] → L1\[\d\] → L0\[\d+\]$/);
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

    it("an IOAT scenario typed into the editor: registers named, the descriptor fetch and copy, the fault", async () => {
      const fixture = readFileSync(new URL("./fixtures/ioat-copy.yaml", import.meta.url), "utf8");
      await page.click("[data-testid=left-edit]");
      await page.fill("[data-testid=editor]", fixture);
      await page.click("[data-testid=run]");
      await expect.poll(() => page.textContent("[data-testid=run-status]")).toContain("run ok");
      expect(await page.textContent(".top .file")).toBe("ioat-copy");
      await gotoStep("(DMACOUNT)");
      expect(await page.locator("[data-testid=callnote]").allTextContents()).toEqual([
        "BAR0 + 0x86 (DMACOUNT) ← 0x1",
      ]);
      const dma = await page.locator("[data-testid=step] .dmaline").allTextContents();
      expect(dma).toEqual([
        "DMA read by 0000:00:04.0 at 0x100000 (64 bytes): ok",
        "DMA read by 0000:00:04.0 at 0x200000 (26 bytes): ok",
        "DMA write by 0000:00:04.0 at 0x300000 (26 bytes): ok",
      ]);
      await page.screenshot({ path: join(SHOTS, "ioat-doorbell.png") });
      await gotoStep("(CHANERR)");
      expect(await page.textContent("[data-testid=calls]")).toContain(
        "BAR0 + 0xa8 (CHANERR) → 0x2 (DEST_ADDR_ERR)",
      );
      await page.click("[data-testid=tab-dma]");
      expect(await page.textContent("#panel")).toContain("0000:00:04.0 (ioat: Intel I/OAT");
      expect(
        await page.locator("[data-testid=dma-result]", { hasText: "FAULT_ADDR 0x4000000" }).count(),
      ).toBe(1);
      await page.click("[data-testid=tab-pt]");
      await page.fill("[data-testid=walk-iova]", "0x4000000");
      await page.press("[data-testid=walk-iova]", "Enter");
      await expect
        .poll(() => page.textContent("[data-testid=walk-result]"))
        .toMatch(/^ → no leaf maps 0x4000000 \(the IOMMU faults: L\d\[0\] → .* is empty\)$/);
      await page.screenshot({ path: join(SHOTS, "ioat-fault.png") });
    }, 120_000);

    it("--export gives a page that works opened from file://, with no server", async () => {
      const dir = mkdtempSync(join(tmpdir(), "iommufd-sim-export-"));
      try {
        const out: string[] = [];
        const io = { stdout: (x: string) => out.push(x), stderr: (x: string) => out.push(x), env: {} };
        expect(await main(["web", "examples/demo-ppc64.yaml", "--export", dir], io)).toBe(0);
        const p = await ctx.newPage();
        const fileErrors: string[] = [];
        p.on("pageerror", (e) => fileErrors.push(e.message));
        p.on("console", (m) => {
          if (m.type() === "error") fileErrors.push(m.text());
        });
        await p.goto(`file://${join(dir, "index.html")}`);
        await p.waitForSelector("[data-testid=stepno]", { timeout: 20_000 });
        expect(await p.textContent(".top .file")).toBe("demo-ppc64");
        expect(await p.textContent("[data-testid=stepno]")).toBe("Boot (step 0 of 15)");
        expect(fileErrors).toEqual([]);
        await p.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);

    it("is usable from the keyboard alone, at 1280x800, with no error and no network", async () => {
      await open("demo-noiommu.yaml");
      await page.click("[data-testid=left-steps]");
      await page.focus("[data-testid=tab-ioas]");
      await page.keyboard.press("ArrowRight");
      expect(await page.getAttribute("[data-testid=tab-pt]", "aria-selected")).toBe("true");
      expect(await page.evaluate("document.activeElement?.id")).toBe("tab-pt");
      // the page-table tree: arrows move between entries and open/close them, without stepping the run
      await open("demo-iommu.yaml");
      await page.keyboard.press("End");
      await page.click("[data-testid=tab-pt]");
      const root = page.locator('[data-testid=pte][data-level="2"]');
      await root.focus();
      expect(await root.getAttribute("aria-expanded")).toBe("true");
      await page.keyboard.press("ArrowDown");
      const focused = () =>
        page.evaluate("document.activeElement?.dataset.level + ':' + document.activeElement?.dataset.index");
      expect(await focused()).toBe("1:1");
      await page.keyboard.press("ArrowLeft"); // L1[1] is open (on the walk's path): close it
      await expect
        .poll(() => page.getAttribute('[data-testid=pte][data-level="1"][data-index="1"]', "aria-expanded"))
        .toBe("false");
      await page.keyboard.press("ArrowLeft"); // closed: up to its parent
      expect(await focused()).toBe("2:0");
      await page.keyboard.press("ArrowLeft");
      await expect.poll(() => root.getAttribute("aria-expanded")).toBe("false");
      await page.keyboard.press("Enter");
      await expect.poll(() => root.getAttribute("aria-expanded")).toBe("true");
      expect(await stepNo()).toBe("Step 17 of 17");
      // nothing overflows the window sideways
      expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(1280);
      expect(errors).toEqual([]);
    }, 60_000);

    it("keeps WCAG AA text contrast on every tab of the iommu and ppc64 demos, with a step's changes highlighted", async () => {
      for (const demo of ["demo-iommu.yaml", "demo-ppc64.yaml"]) {
        await open(demo);
        await page.click("[data-testid=left-steps]");
        await page.keyboard.press("End");
        for (const tab of ["ioas", "pt", "mem", "proc", "dma", "counters"]) {
          await page.click(`[data-testid=tab-${tab}]`);
          const low = await page.evaluate(findLowContrast);
          expect(low, `${demo}, tab ${tab}`).toEqual([]);
        }
        // the editor pane too
        await page.click("[data-testid=left-edit]");
        expect(await page.evaluate(findLowContrast), `${demo}, editor`).toEqual([]);
      }
    }, 90_000);
  },
);
