// DMA in noiommu mode: nothing translates. The driver programs the memcpy
// device with physical addresses from GET_PA; a stale PA after unmap still
// reaches memory, and the DMA sanitizer names it without stopping it.
import { describe, expect, it } from "vitest";
import { doorbell, enableBusMaster, ioasUnmap, reg } from "../e2e/driver.js";
import { anon, attach, boot, getPa, huge2m, ioasAlloc, mapFixed, openBound } from "./helpers.js";

const STATUS = 0x24;
const FAULT_ADDR = 0x28;

function rig() {
  const { m, p } = boot();
  const o = openBound(p);
  const ioas = ioasAlloc(p, o.iommufd);
  expect(attach(o, ioas).ret).toBe(0);
  const src = huge2m(p);
  const dst = anon(p, 4096, 0);
  expect(p.writeMemory(src, new TextEncoder().encode("copied by physical address"))).toBe(0);
  expect(mapFixed(p, o.iommufd, ioas, src, 2n << 20n, 0x20_0000n)).toBe(0);
  expect(mapFixed(p, o.iommufd, ioas, dst, 4096n, 0x1000n)).toBe(0);
  const srcPa = getPa(p, o.iommufd, ioas, 0x20_0000n, 4096n).phys;
  const dstPa = getPa(p, o.iommufd, ioas, 0x1000n, 4096n).phys;
  return {
    m,
    p,
    o,
    ioas,
    src,
    dst,
    srcPa,
    dstPa,
    ctx: { ...o, iommufd: o.iommufd, ioas, hwpt: 0, devid: o.devid },
  };
}

describe("DMA with no IOMMU", () => {
  it("the memcpy device copies between the PAs GET_PA gave; the sanitizer has nothing to say", () => {
    const { m, p, o, dst, srcPa, dstPa } = rig();
    enableBusMaster(o);
    doorbell(o, srcPa, dstPa, 26n);
    expect(reg(o, STATUS)).toBe(2n);
    expect(new TextDecoder().decode(p.readMemory(dst, 26) as Uint8Array)).toBe("copied by physical address");
    const log = m.debug.dmaLog();
    expect(log.map((e) => [e.op, e.addr, e.result, e.finding])).toEqual([
      ["read", srcPa, "ok", undefined],
      ["write", dstPa, "ok", undefined],
    ]);
  });

  it("without bus mastering (config 0x04 bit 2) the device cannot DMA: STATUS 3, a finding", () => {
    const { m, o, srcPa, dstPa } = rig();
    doorbell(o, srcPa, dstPa, 16n);
    expect(reg(o, STATUS)).toBe(3n);
    expect(m.debug.dmaLog()[0].finding).toContain("bus mastering");
  });

  it("an IOVA is not a bus address here: programming the IOVA reaches whatever is at that PA", () => {
    const { m, o } = rig();
    enableBusMaster(o);
    // IOVA 0x1000 as a physical address: RAM the process never pinned.
    doorbell(o, 0x1000n, 0x1000n + 0x800n, 16n);
    expect(reg(o, STATUS)).toBe(2n);
    expect(m.debug.dmaLog().at(-1)!.finding).toMatch(/stray address|use after unmap/);
  });

  it("use after unmap: a stale PA still reaches memory; the sanitizer names it and stops nothing", () => {
    const { m, p, o, srcPa, dstPa, ctx } = rig();
    enableBusMaster(o);
    expect(ioasUnmap(ctx, 0x1000n, 4096)).toBe(0);
    expect(m.debug.counters().pinnedPages).toBe(512);
    doorbell(o, srcPa, dstPa, 8n);
    expect(reg(o, STATUS)).toBe(2n); // done: nothing translates, nothing refuses
    const w = m.debug.dmaLog().at(-1)!;
    expect(w.op).toBe("write");
    expect(w.result).toBe("ok");
    expect(w.finding).toContain("use after unmap");
    expect(new TextDecoder().decode(m.debug.readPhys(dstPa, 8))).toBe("copied b");
    void p;
  });

  it("an unpin the device never saw is still recognised (mm reports unpins to the sanitizer)", () => {
    const { m, o, srcPa, ctx } = rig();
    enableBusMaster(o);
    // The 2 MiB source was never touched by a DMA; unmap it, then read from it.
    expect(ioasUnmap(ctx, 0x20_0000n, 2 << 20)).toBe(0);
    doorbell(o, srcPa, srcPa + 0x1000n, 8n);
    const r = m.debug.dmaLog().find((e) => e.op === "read")!;
    expect(r.finding).toContain("use after unmap");
    expect(reg(o, FAULT_ADDR)).toBe(0n);
  });
});
