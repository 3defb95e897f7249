import { describe, expect, it } from "vitest";
import { qemuArgs, resolveQemu } from "../../src/cli/qemu-run.js";
import { parseQtestScript, replyMatches } from "../../src/cli/qemu-script.js";

describe("qtest scripts (docs/qemu.md)", () => {
  it("reads commands, checks, polls, echo lines and string literals", () => {
    const steps = parseQtestScript(
      [
        "# a comment",
        "",
        "echo find the device",
        "inl 0xcfc => OK 0x00011de0",
        'write 0x1000 "hi!"',
        'read 0x1000 3 => OK "hi!"',
        "poll readl 0x300000 => OK 0xc0ffee01",
        "outb 0xcf9 0x6",
      ].join("\n"),
    );
    expect(steps).toEqual([
      { kind: "echo", line: 3, text: "find the device" },
      { kind: "send", line: 4, cmd: "inl 0xcfc", expect: ["OK", "0x00011de0"], poll: false },
      { kind: "send", line: 5, cmd: "write 0x1000 3 0x686921", expect: undefined, poll: false },
      { kind: "send", line: 6, cmd: "read 0x1000 3", expect: ["OK", "0x686921"], poll: false },
      { kind: "send", line: 7, cmd: "readl 0x300000", expect: ["OK", "0xc0ffee01"], poll: true },
      { kind: "send", line: 8, cmd: "outb 0xcf9 0x6", expect: undefined, poll: false },
    ]);
  });

  it("refuses a check with nothing expected, a poll without a check, and an arrow without a command", () => {
    expect(() => parseQtestScript("inl 0xcfc =>")).toThrow("line 1: nothing after");
    expect(() => parseQtestScript("echo x\npoll readl 0x0")).toThrow('line 2: poll needs "=> EXPECTED"');
    expect(() => parseQtestScript("=> OK")).toThrow('line 1: no command before "=>"');
  });

  it("compares numbers by value (qtest pads readq, not inl) and words exactly", () => {
    expect(replyMatches("OK 0x0000000000000002", ["OK", "0x2"])).toBe(true);
    expect(replyMatches("OK 0x11de0", ["OK", "0x00011de0"])).toBe(true);
    expect(replyMatches("OK 0x3", ["OK", "0x2"])).toBe(false);
    expect(replyMatches("FAIL 0x2", ["OK", "0x2"])).toBe(false);
    expect(replyMatches("OK", ["OK", "0x2"])).toBe(false);
  });
});

describe("the QEMU command line", () => {
  it("7.2: legacy container, x-no-mmap unless --mmap; 10: -object iommufd and its firmware directories", () => {
    const t72 = resolveQemu("7.2", undefined);
    if (typeof t72 === "string") throw new Error(t72);
    expect(qemuArgs(t72, "0000:00:04.0", false, []).join(" ")).toBe(
      "-machine q35 -m 128M -display none -nodefaults -S -qtest stdio -qtest-log /dev/null " +
        "-device vfio-pci,host=0000:00:04.0,addr=04.0,x-no-mmap=on",
    );
    expect(qemuArgs(t72, "0000:00:04.0", true, ["-d", "x"]).slice(-4)).toEqual([
      "-device",
      "vfio-pci,host=0000:00:04.0,addr=04.0",
      "-d",
      "x",
    ]);
    const t10 = { ...t72, label: "10", backend: "iommufd" as const, preArgs: ["-L", "/q/seabios"] };
    expect(qemuArgs(t10, "0000:00:04.0", true, []).join(" ")).toBe(
      "-L /q/seabios -machine q35 -m 128M -display none -nodefaults -S -qtest stdio -qtest-log /dev/null " +
        "-object iommufd,id=i0 -device vfio-pci,host=0000:00:04.0,addr=04.0,iommufd=i0",
    );
  });

  it("QEMU 10 not unpacked: says how to get it", () => {
    expect(resolveQemu("10", undefined, { IOMMUFD_SIM_CACHE: "/nonexistent/cache" })).toBe(
      "QEMU 10 is not unpacked in /nonexistent/cache/qemu10: run scripts/qemu/install.sh (docs/qemu.md)",
    );
  });
});
