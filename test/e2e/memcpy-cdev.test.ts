import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { buffer, doorbell, enableBusMaster, fromLe, ioasMap, msiEventfd, openCdev, reg } from "./driver.js";

describe("memcpy through cdev + iommufd", () => {
  it("copies a buffer by DMA and signals MSI vector 0 on an eventfd", () => {
    const m = new Machine();
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openCdev(m, p);
    const src = buffer(p, 8192, (i) => (i * 7 + 3) & 0xff);
    const dst = buffer(p, 8192);
    expect(ioasMap(o, src, 8192, 0x100000n)).toBe(0);
    expect(ioasMap(o, dst, 8192, 0x200000n)).toBe(0);
    enableBusMaster(o);
    const efd = msiEventfd(o);
    expect(reg(o, 0x00)).toBe(0x5950434dn);
    doorbell(o, 0x100010n, 0x200020n, 5000n);
    expect(reg(o, 0x24)).toBe(2n);
    expect(reg(o, 0x30)).toBe(1n);
    expect(fromLe(p.read(efd, 8))).toBe(1n);
    const got = p.readMemory(dst + 0x20n, 5000) as Uint8Array;
    const want = p.readMemory(src + 0x10n, 5000) as Uint8Array;
    expect(got).toEqual(want);
    expect(m.debug.dmaLog().map((e) => [e.op, e.addr, e.len, e.result, e.finding])).toEqual([
      ["read", 0x100010n, 5000, "ok", undefined],
      ["write", 0x200020n, 5000, "ok", undefined],
    ]);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});
