import { describe, expect, it } from "vitest";
import { renderSection, replaceSection } from "../../src/conformance/report.js";
import { compare, counts, parseKselftestTap } from "../../src/conformance/tap.js";

// Output shapes copied from the real binaries' runs (kselftest_harness.h).
const SAMPLE = `TAP version 13
1..4
# Starting 4 tests from 2 test cases.
#  RUN           iommufd.simple_close ...
#            OK  iommufd.simple_close
ok 1 iommufd.simple_close
#  RUN           iommufd.cmd_fail ...
# /root/.cache/x/tools/testing/selftests/iommu/iommufd.c:66:cmd_fail:Expected -1 (-1) != self->fd (-1)
# cmd_fail: Test terminated by assertion
#          FAIL  iommufd.cmd_fail
not ok 2 iommufd.cmd_fail
#  RUN           basic_fail_nth.basic ...
#      SKIP      fault injection is not enabled in the kernel
#            OK  basic_fail_nth.basic
ok 3 basic_fail_nth.basic # SKIP fault injection is not enabled in the kernel
#  RUN           iommufd_ioas.mock_domain.area ...
# area: Test terminated by timeout
#          FAIL  iommufd_ioas.mock_domain.area
not ok 4 iommufd_ioas.mock_domain.area
# FAILED: 2 / 4 tests passed.
# Totals: pass:1 fail:2 xfail:0 xpass:0 skip:1 error:0
`;

describe("kselftest TAP", () => {
  it("reads the plan, each result, the skip reason and the failing assertion", () => {
    const run = parseKselftestTap(SAMPLE);
    expect(run.plan).toBe(4);
    expect(run.totals).toBe("pass:1 fail:2 xfail:0 xpass:0 skip:1 error:0");
    expect(run.results).toEqual([
      { name: "iommufd.simple_close", status: "pass", why: "" },
      {
        name: "iommufd.cmd_fail",
        status: "fail",
        why: "iommufd.c:66:cmd_fail:Expected -1 (-1) != self->fd (-1) / cmd_fail: Test terminated by assertion",
      },
      { name: "basic_fail_nth.basic", status: "skip", why: "fault injection is not enabled in the kernel" },
      { name: "iommufd_ioas.mock_domain.area", status: "fail", why: "area: Test terminated by timeout" },
    ]);
    expect(counts(run)).toEqual({ pass: 1, fail: 2, skip: 1 });
  });

  it("a run that stops early has fewer results than its plan and no totals", () => {
    const cut = SAMPLE.split("\n").slice(0, 8).join("\n");
    const run = parseKselftestTap(cut);
    expect(run.plan).toBe(4);
    expect(run.results.map((r) => r.name)).toEqual(["iommufd.simple_close"]);
    expect(run.totals).toBeUndefined();
  });

  it("a program that skips as a whole (`1..0 # SKIP reason`) has plan 0, no results and the reason", () => {
    const run = parseKselftestTap("1..0 # SKIP SR-IOV may not be supported by the PF: 0000:00:04.0\n");
    expect(run.plan).toBe(0);
    expect(run.results).toEqual([]);
    expect(run.skipAll).toBe("SR-IOV may not be supported by the PF: 0000:00:04.0");
    expect(parseKselftestTap(SAMPLE).skipAll).toBeUndefined();
  });

  it("CI fails only on tests recorded as passing that no longer pass (including missing ones)", () => {
    const run = parseKselftestTap(SAMPLE);
    const v = compare(
      {
        status: {
          "iommufd.simple_close": "pass",
          "iommufd.cmd_fail": "pass",
          "basic_fail_nth.basic": "fail",
          "iommufd_ioas.mock_domain.area": "fail",
          "iommufd.gone": "pass",
        },
      },
      run,
    );
    expect(v.regressions.map((r) => [r.name, r.now])).toEqual([
      ["iommufd.cmd_fail", "fail"],
      ["iommufd.gone", "missing"],
    ]);
    expect(v.improvements).toEqual([]);
    const better = compare({ status: { "iommufd.simple_close": "fail" } }, run);
    expect(better.regressions).toEqual([]);
    expect(better.improvements).toEqual(["iommufd.simple_close"]);
    expect(better.unknown).toEqual([
      "iommufd.cmd_fail",
      "basic_fail_nth.basic",
      "iommufd_ioas.mock_domain.area",
    ]);
  });

  it("the docs section replaces its previous copy and keeps the rest of the document", () => {
    const run = {
      tree: "7.2",
      bin: "iommufd",
      version: "7.2.13-1",
      run: parseKselftestTap(SAMPLE),
      exitCode: 1,
      timedOut: false,
      seconds: 3,
      outputTail: "",
    };
    const why = { "7.2": { iommufd: { status: {}, why: { "iommufd.cmd_fail": "explained" } } } };
    const s = renderSection([run], why);
    expect(s).toContain("| 7.2 | `iommufd` | 7.2.13-1 | 1 | 2 | 1 | 4 | 3 |");
    expect(s).toContain("| iommufd.cmd_fail | fail | explained (harness: iommufd.c:66:cmd_fail:Expected");
    const once = replaceSection("# doc\n\nkept\n", s);
    const twice = replaceSection(once.replace("| 1 | 2 | 1 |", "| 9 | 9 | 9 |"), s);
    expect(twice).toBe(once);
    expect(once.startsWith("# doc\n\nkept\n\n")).toBe(true);
  });
});
