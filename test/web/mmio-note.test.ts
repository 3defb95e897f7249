import { describe, expect, it } from "vitest";
import { MEMCPY_MSIX_PBA_OFFSET } from "../../src/hw/memcpy-dev.js";
import type { TraceEvent } from "../../src/index.js";
import { mmioNote } from "../../src/web/model/mmio.js";

const ev = (call: string, off: bigint, data?: number[]): TraceEvent => ({
  seq: 1,
  pid: 1,
  call,
  args: [3, 0, off],
  ret: data?.length ?? 0,
  data: data === undefined ? undefined : Uint8Array.from(data),
});

describe("the web view's note on a device fd access", () => {
  it("names the memcpy device's MSI-X table and PBA in BAR2, each on its own page", () => {
    const bar2 = 2n << 40n;
    expect(mmioNote(ev("pread64", bar2 + 0xcn, [0xff, 0xff, 0xff, 0xff]), "memcpy")).toBe(
      "BAR2 + 0xc (MSI-X table) → 0xffffffff",
    );
    expect(mmioNote(ev("pread64", bar2 + BigInt(MEMCPY_MSIX_PBA_OFFSET), [1]), "memcpy")).toBe(
      "BAR2 + 0x2000 (MSI-X PBA) → 0x1",
    );
    // BAR2 of another kind is not the memcpy device's layout
    expect(mmioNote(ev("pread64", bar2, [0]), "ioat")).toBe("BAR2 + 0x0 → 0x0");
  });
});
