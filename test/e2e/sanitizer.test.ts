import { describe, expect, it } from "vitest";
import type { MemcpyDevice } from "../../src/hw/memcpy-dev.js";
import { Machine } from "../../src/kernel/machine.js";
import type { MmStruct } from "../../src/mm/mm-struct.js";
import { BDF, buffer, le } from "./driver.js";

// Without the noiommu mode (not built yet) vfio-pci refuses a device with no
// IOMMU, so these drive the memcpy device's registers directly while a real
// process pins and unpins real pages: the DMA uses physical addresses as
// a noiommu driver would.
describe("DMA sanitizer on a machine without an IOMMU", () => {
  function setup() {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const dev = m.pci.get(BDF) as MemcpyDevice;
    dev.configWrite(4, 2, 0x6);
    const mm = p.task.mm as unknown as MmStruct;
    return { m, p, dev, mm };
  }
  function copy(dev: MemcpyDevice, src: bigint, dst: bigint, len: number) {
    dev.mmioWrite(0, 0x08, le(src, 8));
    dev.mmioWrite(0, 0x10, le(dst, 8));
    dev.mmioWrite(0, 0x18, le(len, 8));
    dev.mmioWrite(0, 0x20, le(1, 4));
  }

  it("a DMA after the pin was dropped is a use after unmap; the hardware still did it", () => {
    const { m, p, dev, mm } = setup();
    const src = buffer(p, 4096, (i) => i & 0xff);
    const dst = buffer(p, 4096);
    const rs = mm.pinUserPages(src, 1, false);
    const rd = mm.pinUserPages(dst, 1, true);
    if (typeof rs === "number" || typeof rd === "number") throw new Error("pin failed");
    const spa = mm.translate(src)!;
    const dpa = mm.translate(dst)!;
    copy(dev, spa, dpa, 64);
    expect(m.debug.dmaLog().every((e) => e.finding === undefined && e.result === "ok")).toBe(true);
    mm.unpinUserPages(rd);
    copy(dev, spa, dpa, 64);
    const log = m.debug.dmaLog();
    expect(log[3]).toMatchObject({ op: "write", addr: dpa, result: "ok" });
    expect(log[3].finding).toMatch(/^use after unmap/);
    mm.unpinUserPages(rs);
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("a DMA to a frame nobody pinned is a stray address", () => {
    const { m, p, dev, mm } = setup();
    const src = buffer(p, 4096, (i) => i & 0xff);
    const spa = mm.translate(src)!;
    copy(dev, spa, spa + 2048n, 16);
    expect(m.debug.dmaLog()[0].finding).toMatch(/^stray address: frame not pinned/);
  });
});
