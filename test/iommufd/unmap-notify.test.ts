// iopt_unmap_iova_range() (drivers/iommu/iommufd/io_pagetable.c): the count of unmap
// notifications that may go unanswered before EDEADLK is per area, reset when the
// unmap moves on to an area with a different start.
import { describe, expect, it } from "vitest";
import { FaultInject } from "../../src/hw/fault-inject.js";
import { IoPagetable } from "../../src/iommufd/io-pagetable.js";
import { IoptPages } from "../../src/iommufd/pages.js";
import type { PinSource } from "../../src/iommufd/pin-source.js";
import { IOPT_PAGES_ACCOUNT_NONE } from "../../src/mm/locked-vm.js";
import { EDEADLK, EFAULT, fail } from "../../src/uapi/errno.js";
import { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE } from "../../src/uapi/iommufd.js";

const src: PinSource = {
  kind: "user",
  pin: () => fail(EFAULT, "test source pins nothing"),
  unpin: () => {},
  describe: () => "test",
};

function pages(): IoptPages {
  const acct = {
    cred: { caps: new Set<string>(), rlimitMemlock: 0n },
    user: { uid: 0, lockedVm: 0 },
    lockedVm: 0,
    pinnedVm: 0,
  };
  return new IoptPages(src, 0x10000n, 0, 0x1000n, 1, false, IOPT_PAGES_ACCOUNT_NONE, acct as never);
}

/** Two areas each held by an access that lets go only after `rounds` notifications. */
function twoSlowAreas(rounds: number) {
  const iopt = new IoPagetable(new FaultInject());
  for (const iova of [0x1000n, 0x2000n]) {
    const p = pages();
    iopt.mapSlices(
      [{ pages: p, startByte: 0n, length: 0x1000n }],
      iova,
      IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
    );
    p.put();
  }
  for (const n of iopt.areas.all()) n.value.numAccesses = 1;
  let calls = 0;
  iopt.accesses.add({
    iovaAlignment: 1n,
    notifyUnmap(iova) {
      calls++;
      const a = iopt.areas.firstIntersecting(iova, iova)!.value;
      if (calls % rounds === 0) a.numAccesses = 0;
    },
  });
  return iopt;
}

describe("unmap notifications", () => {
  it("60 rounds on each of two areas is fine: the 100-round limit is per area", () => {
    const iopt = twoSlowAreas(60);
    expect(iopt.unmapRange(0n, 0xffffn)).toBe(0x2000n);
  });

  it("an access that never lets go: EDEADLK after 100 rounds", () => {
    const iopt = twoSlowAreas(1000);
    let errno = 0;
    try {
      iopt.unmapRange(0n, 0xffffn);
    } catch (e) {
      errno = (e as { errno: number }).errno;
    }
    expect(errno).toBe(EDEADLK);
  });
});
