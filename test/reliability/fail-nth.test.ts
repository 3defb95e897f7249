import { describe, expect, it } from "vitest";
import { EFAULT, ENOENT, ENOMEM, errnoName } from "../../src/uapi/errno.js";
import { boot, CONFIGS, type ConfigName, runSteps, type SeqState } from "./sequence.js";
import { snapshot } from "./snapshot.js";

/** Errnos an injected failure may surface as (allocation, pin, usercopy; the mock driver's iommufd_should_fail). */
const INJECTED = new Set([ENOMEM, EFAULT, ENOENT]);

interface SweepResult {
  points: number;
  /** Injected respond faults after which the kernel keeps the effect (checked for leaks only). */
  keptEffect: number;
  sites: Map<string, number>;
}

/** Counters once every process is gone must be the boot baseline. */
function expectBaseline(s: SeqState): void {
  const c = s.m.debug.counters();
  const b = s.baseline;
  const pick = (x: Record<string, number>) => {
    const { residentFrames: _r, ...rest } = x;
    return rest;
  };
  expect(pick(c)).toEqual(pick(b));
}

/**
 * For step i: for n = 1, 2, ... boot afresh, run the steps before i, arm
 * fail_nth(n), run step i. Until no fail point fires any more, each
 * injected failure must return an injected errno, leave the state as it
 * was, keep the invariants, and the rest of the sequence must then still
 * run and leave nothing behind.
 */
function sweepStep(cfg: ConfigName, i: number, res: SweepResult): void {
  const { opts, caps, devNode, steps: STEPS } = CONFIGS[cfg];
  const runSteps_ = (s: SeqState, a: number, b: number) => runSteps(s, a, b, STEPS);
  for (let n = 1; n < 500; n++) {
    const s = boot(opts, caps, devNode);
    runSteps_(s, 0, i);
    const before = snapshot(s.m);
    s.m.debug.failNth(n);
    const rc = STEPS[i].run(s);
    const fired = s.m.debug.failNthFired();
    s.m.debug.failNth(0);
    const where = `${STEPS[i].name} with fail_nth=${n} (${fired ?? "no fail point fired"})`;
    if (fired === undefined) {
      if (rc < 0) throw new Error(`${where}: ${errnoName(-rc)} ${s.p.lastError()?.reason}`);
      return;
    }
    res.points++;
    res.sites.set(fired, (res.sites.get(fired) ?? 0) + 1);
    expect(s.m.debug.internalErrors(), where).toEqual([]);
    expect(s.m.debug.checkInvariants(), where).toEqual([]);
    if (rc < 0) {
      expect(INJECTED.has(-rc), `${where}: ${errnoName(-rc)} ${s.p.lastError()?.reason}`).toBe(true);
      if (fired === "copy_to_user" && STEPS[i].keepsEffectOnRespondFault) {
        res.keptEffect++;
        runSteps_(s, i + 1, STEPS.length);
      } else {
        expect(snapshot(s.m), where).toEqual(before);
        runSteps_(s, i, STEPS.length);
      }
    } else runSteps_(s, i + 1, STEPS.length);
    expect(s.m.debug.checkInvariants(), where).toEqual([]);
    s.p.exit();
    expect(s.m.debug.checkInvariants(), where).toEqual([]);
    expectBaseline(s);
  }
  throw new Error(`${STEPS[i].name}: more than 500 fail points`);
}

const total: SweepResult = { points: 0, keptEffect: 0, sites: new Map() };

describe.each(Object.keys(CONFIGS) as ConfigName[])(
  "fail_nth over a VFIO cdev + iommufd sequence (%s)",
  (cfg) => {
    const { opts, caps, devNode, steps } = CONFIGS[cfg];
    it("the sequence runs clean and leaves the boot baseline", () => {
      const s = boot(opts, caps, devNode);
      runSteps(s, 0, steps.length, steps);
      expect(s.m.debug.checkInvariants()).toEqual([]);
      s.p.exit();
      expectBaseline(s);
    });
    for (let i = 0; i < steps.length; i++) {
      it(`sweeps ${steps[i].name}`, () => sweepStep(cfg, i, total));
    }
  },
);

describe("fail_nth totals", () => {
  it("reports", () => {
    console.log(
      `fail_nth: ${total.points} fail points swept (${total.keptEffect} kept their effect)`,
      Object.fromEntries(total.sites),
    );
    expect(total.points).toBeGreaterThan(100);
  });
});
