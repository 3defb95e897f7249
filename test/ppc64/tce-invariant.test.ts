import { describe, expect, it } from "vitest";
import type { KernelCtx } from "../../src/kernel/kctx.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { BDF, be64, bootSpapr, DDW_POWERNV, TWO_WINDOWS, userData } from "./helpers.js";

const RW = IOMMU_READ | IOMMU_WRITE;

function setBe64(ctx: KernelCtx, pa: bigint, v: bigint): void {
  const b = new Uint8Array(8);
  for (let i = 7; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  ctx.phys.write(Number(pa), b);
}

/*
 * The domain invariant reads every TCE back from the table bytes after
 * each fuzzer step, skipping table frames never written (a 1 GiB window of
 * 4 KiB TCEs is 512 frames, most untouched). Whatever it skips, it must
 * still see a corrupted TCE, a lost one, and a stray one in a frame no map
 * ever wrote.
 */
describe("sPAPR TCE invariant: reads the bytes", () => {
  function rig() {
    const { ctx, sub, drv } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0, userData(TWO_WINDOWS));
    d.map(0x5000n, 0x4000_0000n, 0x2000n, RW);
    d.map(DDW_POWERNV + 0x1234n * 0x10000n, 0x4100_0000n, 0x10000n, IOMMU_READ);
    expect(sub.checkInvariants()).toEqual([]);
    // window 0: one level of 2^18 TCEs
    const root = d.ptInfo().rootPhys;
    return { ctx, sub, d, root };
  }

  it("a TCE pointing elsewhere than the domain recorded is reported", () => {
    const { ctx, sub, d, root } = rig();
    const tce = be64(ctx, root + 6n * 8n);
    expect(tce).toBe(0x4000_1000n | 3n);
    setBe64(ctx, root + 6n * 8n, 0x4000_9000n | 3n);
    expect(sub.checkInvariants().join("\n")).toMatch(/page table maps .* where the domain recorded/);
    setBe64(ctx, root + 6n * 8n, tce);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
  });

  it("a TCE cleared behind the domain's back is reported", () => {
    const { ctx, sub, d, root } = rig();
    setBe64(ctx, root + 5n * 8n, 0n);
    expect(sub.checkInvariants().join("\n")).toMatch(/where the domain recorded/);
    setBe64(ctx, root + 5n * 8n, 0x4000_0000n | 3n);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
  });

  it("a stray TCE in a table frame no map ever wrote is reported", () => {
    const { ctx, sub, d, root } = rig();
    const pa = root + 200_000n * 8n; // frame 390 of the window's table
    expect(ctx.phys.isResident(Number(pa >> 12n))).toBe(false);
    setBe64(ctx, pa, 0x4200_0000n | 1n);
    expect(sub.checkInvariants().join("\n")).toMatch(
      /page table maps \[0x30d40000, \+0x1000\) -> 0x42000000/,
    );
    setBe64(ctx, pa, 0n);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
  });

  it("a corrupted TCE in the second level of the two-level 64 KiB window is reported", () => {
    const { ctx, sub, d } = rig();
    const win1 = (d.pt as unknown as { tables: { info(): { rootPhys: bigint } }[] }).tables[1];
    const top = be64(ctx, win1.info().rootPhys + (0x1234n >> 10n) * 8n);
    const pa = (top & ~3n) + (0x1234n & 0x3ffn) * 8n;
    setBe64(ctx, pa, 0x4110_0000n | 1n);
    expect(sub.checkInvariants().join("\n")).toMatch(
      /-> 0x41100000 where the domain recorded .* -> 0x41000000/,
    );
    setBe64(ctx, pa, 0x4100_0000n | 1n);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
  });
});
