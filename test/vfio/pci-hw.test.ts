import { describe, expect, it } from "vitest";
import { DmaLog } from "../../src/hw/dma-log.js";
import {
  MEMCPY_ID_VALUE,
  MEMCPY_MSIX_PBA_OFFSET,
  MEMCPY_REG_COUNT,
  MEMCPY_REG_DOORBELL,
  MEMCPY_REG_DST,
  MEMCPY_REG_FAULT_ADDR,
  MEMCPY_REG_ID,
  MEMCPY_REG_LEN,
  MEMCPY_REG_SRC,
  MEMCPY_REG_STATUS,
  type MemcpyDevice,
} from "../../src/hw/memcpy-dev.js";
import { PCI_MMIO_BASE, PciBus } from "../../src/hw/pci-bus.js";
import type { MsiMessage } from "../../src/hw/pci-dev.js";
import type { DmaTranslation } from "../../src/hw/pci-dma.js";
import { PhysMem } from "../../src/hw/phys-mem.js";

function setup() {
  const phys = new PhysMem(1n << 30n, [[0, 1 << 18]]);
  const log = new DmaLog();
  const bus = new PciBus(phys, log);
  const dev = bus.add({ bdf: "0000:00:04.0", kind: "memcpy" }) as MemcpyDevice;
  return { phys, log, bus, dev };
}

function w64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}
function w32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}
function r32(dev: MemcpyDevice, off: number): number {
  return new DataView(dev.mmioRead(0, off, 4).buffer).getUint32(0, true);
}
function program(dev: MemcpyDevice, src: bigint, dst: bigint, len: bigint): void {
  dev.mmioWrite(0, MEMCPY_REG_SRC, w64(src));
  dev.mmioWrite(0, MEMCPY_REG_DST, w64(dst));
  dev.mmioWrite(0, MEMCPY_REG_LEN, w64(len));
  dev.mmioWrite(0, MEMCPY_REG_DOORBELL, w32(1));
}

describe("PCI configuration space", () => {
  it("has the memcpy identity and class", () => {
    const { dev } = setup();
    expect(dev.configRead(0, 2)).toBe(0x1de0);
    expect(dev.configRead(2, 2)).toBe(0x0001);
    expect(dev.configRead(8, 4) >>> 8).toBe(0x088000);
    expect(dev.configRead(0x0e, 1)).toBe(0);
    expect(dev.configRead(0x3d, 1)).toBe(0);
  });

  it("probes BAR sizes by writing all ones, and keeps the type bits", () => {
    const { dev } = setup();
    const orig = dev.configRead(0x10, 4);
    expect(orig & 0xf).toBe(0x4); // 64-bit, non-prefetchable memory
    expect(BigInt((orig & ~0xf) >>> 0)).toBe(PCI_MMIO_BASE);
    dev.configWrite(0x10, 4, 0xffffffff);
    expect(dev.configRead(0x10, 4) >>> 0).toBe(0xfffff004);
    dev.configWrite(0x14, 4, 0xffffffff);
    expect(dev.configRead(0x14, 4) >>> 0).toBe(0xffffffff);
    // unimplemented BARs read 0 and stay 0
    dev.configWrite(0x20, 4, 0xffffffff);
    expect(dev.configRead(0x20, 4)).toBe(0);
  });

  it("lists MSI, MSI-X and PCI Express capabilities", () => {
    const { dev } = setup();
    expect(dev.configRead(0x06, 2) & 0x10).toBe(0x10);
    const ids: number[] = [];
    for (let p = dev.configRead(0x34, 1); p !== 0; p = dev.configRead(p + 1, 1))
      ids.push(dev.configRead(p, 1));
    expect(ids).toEqual([0x05, 0x11, 0x10]);
    expect(dev.msiCapable()).toBe(1);
    expect(dev.msixCapable()).toBe(4);
    expect(dev.hasFlr()).toBe(true);
  });

  it("boots with memory decode on and bus mastering off; only decode bits are writable", () => {
    const { dev } = setup();
    expect(dev.command()).toBe(0x2);
    dev.configWrite(0x04, 2, 0xffff);
    expect(dev.command()).toBe(0x0407);
    // the vendor ID is read-only
    dev.configWrite(0x00, 2, 0x1234);
    expect(dev.configRead(0, 2)).toBe(0x1de0);
  });

  it("a function-level reset through DevCtl clears the command register and BARs", () => {
    const { dev } = setup();
    dev.configWrite(0x04, 2, 0x6);
    dev.configWrite(0x60 + 8, 2, 0x8000);
    expect(dev.command()).toBe(0);
    expect(dev.barAddress(0)).toBe(0n);
    expect(dev.configRead(0x68, 2) & 0x8000).toBe(0);
  });
});

describe("memcpy device", () => {
  it("reads its ID and ignores writes to read-only registers", () => {
    const { dev } = setup();
    expect(r32(dev, MEMCPY_REG_ID)).toBe(MEMCPY_ID_VALUE);
    dev.mmioWrite(0, MEMCPY_REG_ID, w32(0));
    dev.mmioWrite(0, MEMCPY_REG_STATUS, w32(7));
    expect(r32(dev, MEMCPY_REG_ID)).toBe(MEMCPY_ID_VALUE);
    expect(r32(dev, MEMCPY_REG_STATUS)).toBe(0);
  });

  it("does not decode MMIO with memory decode off (reads all ones)", () => {
    const { dev } = setup();
    dev.configWrite(0x04, 2, 0);
    expect(r32(dev, MEMCPY_REG_ID)).toBe(0xffffffff);
  });

  it("copies physical memory when it has no IOMMU, logs both DMAs", () => {
    const { dev, phys, log } = setup();
    phys.write(0x10000, new Uint8Array([1, 2, 3, 4, 5]));
    dev.configWrite(0x04, 2, 0x6);
    program(dev, 0x10000n, 0x20ffen, 5n);
    expect(r32(dev, MEMCPY_REG_STATUS)).toBe(2);
    expect(r32(dev, MEMCPY_REG_COUNT)).toBe(1);
    expect([...phys.read(0x20ffe, 5)]).toEqual([1, 2, 3, 4, 5]);
    expect(log.events.map((e) => [e.op, e.addr, e.len, e.result])).toEqual([
      ["read", 0x10000n, 5, "ok"],
      ["write", 0x20ffen, 5, "ok"],
    ]);
  });

  it("without bus mastering: STATUS 3, FAULT_ADDR = SRC, a finding, nothing written, no interrupt", () => {
    const { dev, phys, log } = setup();
    phys.write(0x10000, new Uint8Array([9]));
    const msgs: MsiMessage[] = [];
    dev.msiSink = (_f, m) => msgs.push(m);
    dev.configWrite(0x40 + 2, 2, 1);
    program(dev, 0x10000n, 0x20000n, 1n);
    expect(r32(dev, MEMCPY_REG_STATUS)).toBe(3);
    expect(dev.reg64(MEMCPY_REG_FAULT_ADDR)).toBe(0x10000n);
    expect(phys.read(0x20000, 1)[0]).toBe(0);
    expect(log.events).toHaveLength(1);
    expect(log.events[0].result).toBe("fault");
    expect(log.events[0].finding).toMatch(/bus mastering/);
    expect(msgs).toHaveLength(0);
  });

  it("translates both ranges before copying: a destination fault writes nothing", () => {
    const { dev, phys, log } = setup();
    phys.write(0x10000, new Uint8Array([7, 7]));
    // a fake IOMMU: iova = pa for [0, 64 KiB) read-only, [64 KiB, 68 KiB) writable
    dev.iommu = {
      dmaTranslate(iova: bigint, len: number, write: boolean): DmaTranslation {
        const end = iova + BigInt(len);
        const ok = write ? iova >= 0x10000n && end <= 0x11000n : end <= 0x11000n;
        if (!ok)
          return {
            ok: false,
            addr: write ? (iova < 0x10000n ? iova : 0x11000n) : 0x11000n,
            reason: "not mapped",
          };
        return { ok: true, segments: [{ pa: Number(iova), len }] };
      },
    };
    dev.configWrite(0x04, 2, 0x6);
    program(dev, 0x10000n, 0x10ffen, 4n);
    expect(r32(dev, MEMCPY_REG_STATUS)).toBe(3);
    expect(dev.reg64(MEMCPY_REG_FAULT_ADDR)).toBe(0x11000n);
    expect([...phys.read(0x10ffe, 2)]).toEqual([0, 0]);
    expect(log.events.map((e) => [e.op, e.result])).toEqual([["write", "fault"]]);
    expect(r32(dev, MEMCPY_REG_COUNT)).toBe(0);
  });

  it("a DMA to an address that is not RAM faults without an IOMMU", () => {
    const { dev } = setup();
    dev.configWrite(0x04, 2, 0x6);
    program(dev, 0x10000n, 0x40000000n, 16n);
    expect(r32(dev, MEMCPY_REG_STATUS)).toBe(3);
    expect(dev.reg64(MEMCPY_REG_FAULT_ADDR)).toBe(0x40000000n);
  });

  it("sends MSI vector 0 on completion when MSI is enabled", () => {
    const { dev } = setup();
    const msgs: MsiMessage[] = [];
    dev.msiSink = (_f, m) => msgs.push(m);
    dev.configWrite(0x04, 2, 0x6);
    program(dev, 0n, 0x1000n, 8n);
    expect(msgs).toHaveLength(0);
    dev.configWrite(0x40 + 4, 4, 0xfee00000);
    dev.configWrite(0x40 + 12, 2, 0x41);
    dev.configWrite(0x40 + 2, 2, 1);
    program(dev, 0n, 0x1000n, 8n);
    expect(msgs).toEqual([{ kind: "msi", vector: 0, addr: 0xfee00000n, data: 0x41 }]);
  });

  it("MSI-X: a masked vector is pending and fires when unmasked", () => {
    const { dev } = setup();
    const msgs: MsiMessage[] = [];
    dev.msiSink = (_f, m) => msgs.push(m);
    dev.configWrite(0x04, 2, 0x6);
    dev.configWrite(0x50 + 2, 2, 0x8000);
    dev.mmioWrite(2, 0, new Uint8Array([0, 0, 0xe0, 0xfe, 0, 0, 0, 0, 0x33, 0, 0, 0]));
    program(dev, 0n, 0x1000n, 8n);
    expect(msgs).toHaveLength(0);
    expect(dev.mmioRead(2, MEMCPY_MSIX_PBA_OFFSET, 1)[0]).toBe(1);
    dev.mmioWrite(2, 12, w32(0));
    expect(msgs).toEqual([{ kind: "msix", vector: 0, addr: 0xfee00000n, data: 0x33 }]);
    expect(dev.mmioRead(2, MEMCPY_MSIX_PBA_OFFSET, 1)[0]).toBe(0);
  });

  it("resetFunction clears registers and COUNT but keeps BARs and the command register", () => {
    const { dev } = setup();
    dev.configWrite(0x04, 2, 0x6);
    program(dev, 0n, 0x1000n, 8n);
    expect(r32(dev, MEMCPY_REG_COUNT)).toBe(1);
    const bar = dev.barAddress(0);
    dev.resetFunction();
    expect(r32(dev, MEMCPY_REG_COUNT)).toBe(0);
    expect(r32(dev, MEMCPY_REG_STATUS)).toBe(0);
    expect(dev.reg64(MEMCPY_REG_SRC)).toBe(0n);
    expect(dev.barAddress(0)).toBe(bar);
    expect(dev.command()).toBe(0x6);
  });
});

describe("DMA sanitizer", () => {
  it("names a DMA to an unpinned frame, and a use after unmap once the pin is gone", () => {
    const { dev, log, bus } = setup();
    const pins = new Map<number, number>([
      [0x10, 1],
      [0x20, 1],
    ]);
    bus.sanitizer.oracle = { pinCount: (pfn) => pins.get(pfn) ?? 0 };
    dev.configWrite(0x04, 2, 0x6);
    program(dev, 0x10000n, 0x20000n, 8n);
    expect(log.events.every((e) => e.finding === undefined)).toBe(true);
    pins.delete(0x20);
    program(dev, 0x10000n, 0x20000n, 8n);
    expect(log.events[3].finding).toMatch(/^use after unmap/);
    program(dev, 0x10000n, 0x30000n, 8n);
    expect(log.events[5].finding).toMatch(/^stray address: frame not pinned/);
    // the hardware allowed it all: the sanitizer only reports
    expect(log.events.every((e) => e.result === "ok")).toBe(true);
  });
});
