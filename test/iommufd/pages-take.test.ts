// iopt_pages: dropping a pin user unpins exactly the pages no other user
// covers. A segment wholly uncovered goes back as it is; one the remaining
// user still covers part of is cut, and the rest stays pinned in order.
import { expect, it } from "vitest";
import { IoptPages } from "../../src/iommufd/pages.js";
import type { PinSource } from "../../src/iommufd/pin-source.js";
import { IOPT_PAGES_ACCOUNT_NONE } from "../../src/mm/locked-vm.js";
import { RunBuilder, runsToArray } from "../../src/mm/pfn-runs.js";

/** Page i is pfn 1000 + 3 * i, except pages 10..19, which are contiguous from 5000: scattered and run-shaped. */
const pfnOf = (i: number) => (i >= 10 && i < 20 ? 5000 + (i - 10) : 1000 + 3 * i);

function setup() {
  const pinned = new Map<number, number>();
  const src: PinSource = {
    kind: "user",
    pin: (index, n) => {
      const b = new RunBuilder();
      for (let i = index; i < index + n; i++) {
        b.push(pfnOf(i), 1);
        pinned.set(pfnOf(i), (pinned.get(pfnOf(i)) ?? 0) + 1);
      }
      return b.finish();
    },
    unpin: (runs) => {
      for (const pfn of runsToArray(runs)) {
        const n = pinned.get(pfn);
        if (n === undefined) throw new Error(`unpin of unpinned ${pfn}`);
        if (n === 1) pinned.delete(pfn);
        else pinned.set(pfn, n - 1);
      }
    },
    describe: () => "test",
  };
  const acct = {
    cred: { caps: new Set<string>(), rlimitMemlock: 0n },
    user: { uid: 0, lockedVm: 0 },
    lockedVm: 0,
    pinnedVm: 0,
  };
  const pages = new IoptPages(
    src,
    0x10000n,
    0,
    100n * 4096n,
    100,
    true,
    IOPT_PAGES_ACCOUNT_NONE,
    acct as never,
  );
  return { pages, pinned };
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => pfnOf(a + i));

it("a user dropped while another covers the middle: both ends are unpinned, the middle stays as it was", () => {
  const { pages, pinned } = setup();
  const whole = pages.addUser(0, 99, "domain", true);
  const mid = pages.addUser(15, 59, "access", true);
  expect(pinned.size).toBe(100);
  pages.removeUser(whole);
  expect([...pinned.keys()].sort((a, b) => a - b)).toEqual(range(15, 59).sort((a, b) => a - b));
  expect(pages.npinned).toBe(45);
  expect(runsToArray(pages.runsIn(15, 59))).toEqual(range(15, 59));
  pages.removeUser(mid);
  expect(pinned.size).toBe(0);
  expect(pages.npinned).toBe(0);
});

it("segments pinned in pieces go back whole when nothing else covers them", () => {
  const { pages, pinned } = setup();
  const a = pages.addUser(30, 49, "access", true);
  const b = pages.addUser(0, 99, "domain", true);
  pages.removeUser(a);
  expect(pinned.size).toBe(100);
  expect(runsToArray(pages.runsIn(0, 99))).toEqual(range(0, 99));
  pages.removeUser(b);
  expect(pinned.size).toBe(0);
});
