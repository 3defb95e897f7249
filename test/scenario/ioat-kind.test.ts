// The IOAT device kind wherever a machine is described: `--pci BDF=ioat`
// (exec/serve), a scenario's machine.pci, and the example scenario.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseBridgeArgs } from "../../src/bridge/session.js";
import { IoatDevice } from "../../src/hw/ioat-dev.js";
import { MemcpyDevice } from "../../src/hw/memcpy-dev.js";
import { Machine } from "../../src/kernel/machine.js";
import { parseScenario, runScenario, ScenarioError } from "../../src/scenario/index.js";

describe("the ioat device kind", () => {
  it("--pci 0000:00:05.0=ioat makes an IOAT next to a memcpy device; an unknown kind lists the kinds", () => {
    const r = parseBridgeArgs(["--pci", "0000:00:04.0=memcpy", "--pci", "0000:00:05.0=ioat", "--", "prog"]);
    if (typeof r === "string") throw new Error(r);
    expect(r.opts.machine.pci).toEqual([
      { bdf: "0000:00:04.0", kind: "memcpy" },
      { bdf: "0000:00:05.0", kind: "ioat" },
    ]);
    const m = new Machine(r.opts.machine);
    expect(m.pci.get("0000:00:04.0")).toBeInstanceOf(MemcpyDevice);
    expect(m.pci.get("0000:00:05.0")).toBeInstanceOf(IoatDevice);
    expect(parseBridgeArgs(["--pci", "0000:00:05.0=dsa", "--", "prog"])).toBe(
      '--pci: unknown device kind "dsa" (memcpy, memcpy-pf, ioat)',
    );
  });

  it("sysfs shows the IOAT's identity and BAR0 as the VFIO selftests read them", () => {
    const m = new Machine({ iommu: "intel", pci: [{ bdf: "0000:00:05.0", kind: "ioat" }] });
    const p = m.spawn();
    const text = (path: string) => {
      const fd = p.open(path);
      expect(fd, path).toBeGreaterThanOrEqual(0);
      const b = p.read(fd, 4096);
      p.close(fd);
      return new TextDecoder().decode(b as Uint8Array).trim();
    };
    expect(text("/sys/bus/pci/devices/0000:00:05.0/vendor")).toBe("0x8086");
    expect(text("/sys/bus/pci/devices/0000:00:05.0/device")).toBe("0x2021");
    expect(text("/sys/bus/pci/devices/0000:00:05.0/class")).toBe("0x088000");
  });

  it("a scenario's machine.pci takes kind: ioat and refuses an unknown kind with the list", () => {
    const yaml = (kind: string) =>
      `name: k\nmachine:\n  pci: [{ bdf: "0000:00:04.0", kind: ${kind} }]\nsteps:\n  - check_invariants: true\n`;
    expect(runScenario(parseScenario(yaml("ioat"), "k.yaml")).ok).toBe(true);
    expect(() => parseScenario(yaml("gpu"), "k.yaml")).toThrow(ScenarioError);
    expect(() => parseScenario(yaml("gpu"), "k.yaml")).toThrow(
      '"gpu" is not a device kind (memcpy, memcpy-pf, ioat)',
    );
  });

  it("examples/ioat-dma.yaml runs to the end", () => {
    const text = readFileSync(new URL("../../examples/ioat-dma.yaml", import.meta.url), "utf8");
    const r = runScenario(parseScenario(text, "examples/ioat-dma.yaml"));
    expect(r.failure).toBeUndefined();
    expect(r.ok).toBe(true);
  });
});
