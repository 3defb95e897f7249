import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { buffer, doorbell, enableBusMaster, ioasMap, openCdev, reg } from "../e2e/driver.js";

/*
 * The mock IOMMU's paging domains hold a real amdv1_mock table
 * (generic_pt's selftest variant): its frames are counted in ptFrames, the
 * memcpy device's DMA is translated by walking its bytes, m.debug.hwpt
 * reports it, and the iommu invariant compares it with what the domain
 * recorded.
 */
const APERTURE = 1n << 24n; // MOCK_APERTURE_START

function u64(m: Machine, pa: bigint): bigint {
  const b = m.debug.readPhys(pa, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

const OA = 0x000ffffffffff000n;

function boot() {
  const m = new Machine({ iommu: "mock" });
  expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
  const p = m.spawn({ rlimitMemlock: 64n << 20n });
  return { m, p };
}

describe("mock IOMMU domains on a real amdv1_mock table", () => {
  it("the memcpy device's DMA walks the table bytes; m.debug.hwpt reports amdv1_mock; frames are counted and freed", () => {
    const { m, p } = boot();
    const frames0 = m.debug.counters().ptFrames;
    const o = openCdev(m, p);
    const src = buffer(p, 8192, (i) => (i * 13 + 1) & 0xff);
    const dst = buffer(p, 8192);
    expect(ioasMap(o, src, 8192, APERTURE)).toBe(0);
    expect(ioasMap(o, dst, 8192, APERTURE + 0x100000n)).toBe(0);
    // top (level 2), one level-1 table and two level-0 tables (16 MiB and 17 MiB)
    expect(m.debug.counters().ptFrames - frames0).toBe(4);

    const info = m.debug.hwpt(p, o.iommufd, o.hwpt);
    expect(info.format).toBe("amdv1_mock");
    expect(info.topLevel).toBe(2);
    // Walk it by hand from rootPhys: level 2 indexes IOVA bits 37:29, level 1 bits 28:20,
    // level 0 bits 19:11; OA fields hold address >> 11.
    const top = u64(m, info.rootPhys + 0n * 8n);
    expect(top & 0x1n).toBe(1n);
    expect((top >> 9n) & 7n).toBe(2n);
    const l1 = ((top & OA) >> 12n) << 11n;
    const mid = u64(m, l1 + 16n * 8n);
    expect((mid >> 9n) & 7n).toBe(1n);
    const l0 = ((mid & OA) >> 12n) << 11n;
    // the second 2 KiB page of src: the upper half of its first 4 KiB frame
    const leaf = u64(m, l0 + 1n * 8n);
    expect((leaf >> 61n) & 3n).toBe(3n); // IR | IW
    const pa = ((leaf & OA) >> 12n) << 11n;
    expect(pa & 0xfffn).toBe(0x800n);
    expect(m.debug.readPhys(pa, 16)).toEqual(p.readMemory(src + 0x800n, 16));
    const dump = info.dump!();
    expect(dump.filter((e) => e.level === 0).length).toBe(8);
    expect(dump[0].tablePhys).toBe(info.rootPhys);

    enableBusMaster(o);
    doorbell(o, APERTURE + 0x7f0n, APERTURE + 0x100000n + 0x11n, 3000n);
    expect(reg(o, 0x24)).toBe(2n);
    expect(p.readMemory(dst + 0x11n, 3000)).toEqual(p.readMemory(src + 0x7f0n, 3000));
    // beyond the mapping: a fault, nothing written
    doorbell(o, APERTURE + 0x1800n, APERTURE + 0x100000n, 0x1000n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(APERTURE + 0x2000n);
    expect(m.debug.checkInvariants()).toEqual([]);

    p.exit();
    expect(m.debug.counters().ptFrames).toBe(frames0);
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("the iommu invariant reads the table back: a PTE changed behind the domain's back is reported, and DMA follows the bytes", () => {
    const { m, p } = boot();
    const o = openCdev(m, p);
    const src = buffer(p, 4096, (i) => i & 0xff);
    const dst = buffer(p, 4096);
    expect(ioasMap(o, src, 4096, APERTURE)).toBe(0);
    expect(ioasMap(o, dst, 4096, APERTURE + 0x1000n)).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
    const info = m.debug.hwpt(p, o.iommufd, o.hwpt);
    const leaf0 = info.dump!().find((e) => e.level === 0 && e.index === 0)!;
    // a stray kernel write: clear IW of the first dst page's PTE (index 2 of the same table)
    const at = leaf0.tablePhys + 2n * 8n;
    const cur = u64(m, at) & ~(1n << 62n);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, cur, true);
    m.phys.write(Number(at), b);
    const problems = m.debug.checkInvariants();
    expect(problems.some((s) => s.includes("write at 0x1001000") && s.includes("write-protected"))).toBe(
      true,
    );
    enableBusMaster(o);
    doorbell(o, APERTURE, APERTURE + 0x1000n, 16n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(APERTURE + 0x1000n);
  });
});
