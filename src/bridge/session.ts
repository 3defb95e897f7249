import { type StdioOptions, spawn } from "node:child_process";
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatTraceEvent } from "../cli/trace-format.js";
import { PCI_DEVICE_KINDS } from "../hw/pci-bus.js";
import { Machine, type MachineOptions, type PciDeviceConfig } from "../kernel/machine.js";
import { applyMachineFlag, badValue, isOptionValue, MACHINE_FLAGS } from "../kernel/machine-options.js";
import { BridgeServer } from "./server.js";

/** The machine options exec and serve share (DESIGN.md: the command-line contract). */
export interface BridgeOptions {
  machine: MachineOptions;
  trace?: string;
  report: boolean;
}

const KINDS: ReadonlySet<string> = new Set(PCI_DEVICE_KINDS);

/**
 * Parse `[--iommu K] [--kernel P] [--kconfig N=y|n]... [--param N=V]...
 * [--pci BDF=KIND]... [--hugepages SIZE=N[,SIZE=N]] [--seed N]
 * [--noiommu-revision R] [--memory SIZE] [--spapr platform=P|pgsizes=L,..]...
 * [--trace FILE] [--report]` (the machine flags are MACHINE_OPTIONS') plus any `extra` options; stops at `--` or the first
 * non-option. Returns the options and the rest, or an error message.
 */
export function parseBridgeArgs(
  argv: string[],
  extra: Record<string, (v: string) => void> = {},
): { opts: BridgeOptions; rest: string[] } | string {
  const kconfig: Record<string, boolean> = {};
  const params: Record<string, string> = {};
  const pci: PciDeviceConfig[] = [];
  const machine: MachineOptions = {};
  const opts: BridgeOptions = { machine, report: false };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("--")) break;
    const eq = a.indexOf("=");
    const name = eq > 0 && !["--kconfig", "--param", "--pci"].includes(a.slice(0, eq)) ? a.slice(0, eq) : a;
    const inline = name !== a ? a.slice(eq + 1) : undefined;
    if (name === "--report") {
      opts.report = true;
      continue;
    }
    if (!MACHINE_FLAGS.includes(name) && !Object.hasOwn(extra, name)) return `unknown option ${a}`;
    const v = inline ?? argv[++i];
    if (v === undefined) return `${name} needs a value`;
    switch (name) {
      case "--iommu":
        if (!isOptionValue("iommu", v)) return `--iommu: ${badValue("iommu", "IOMMU", v)}`;
        machine.iommu = v;
        break;
      case "--kernel":
        if (!isOptionValue("kernel", v)) return `--kernel: ${badValue("kernel", "profile", v)}`;
        machine.kernel = v;
        break;
      case "--kconfig": {
        const m = /^([A-Z0-9_]+)=(y|n)$/.exec(v);
        if (m === null) return `--kconfig takes NAME=y|n, not "${v}"`;
        kconfig[m[1]] = m[2] === "y";
        break;
      }
      case "--param": {
        const m = /^([a-z0-9_]+\.[a-z0-9_]+)=(.*)$/.exec(v);
        if (m === null) return `--param takes module.name=VALUE, not "${v}"`;
        params[m[1]] = m[2];
        break;
      }
      case "--pci": {
        const m = /^([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])=([a-z0-9-]+)$/.exec(v);
        if (m === null) return `--pci takes BDF=KIND (e.g. 0000:00:04.0=memcpy), not "${v}"`;
        if (!KINDS.has(m[2])) return `--pci: unknown device kind "${m[2]}" (${PCI_DEVICE_KINDS.join(", ")})`;
        pci.push({ bdf: m[1], kind: m[2] as PciDeviceConfig["kind"] });
        break;
      }
      case "--hugepages": {
        // the kernel's hugepages= at boot: these pools, every other size empty
        const pools: NonNullable<MachineOptions["hugepages"]> = {};
        for (const part of v.split(",")) {
          const m = /^(2M|1G)=(\d+)$/.exec(part);
          if (m === null) return `--hugepages takes SIZE=N[,SIZE=N] (sizes 2M, 1G), not "${v}"`;
          pools[m[1] as "2M" | "1G"] = Number(m[2]);
        }
        machine.hugepages = pools;
        break;
      }
      case "--seed":
        if (!/^\d+$/.test(v)) return `--seed takes a number, not "${v}"`;
        machine.seed = Number(v);
        break;
      case "--noiommu-revision":
        if (!isOptionValue("noiommuRevision", v))
          return `--noiommu-revision: ${badValue("noiommuRevision", "revision", v)}`;
        machine.noiommuRevision = v;
        break;
      case "--trace":
        opts.trace = v;
        break;
      case "--memory":
      case "--spapr": {
        const err = applyMachineFlag(machine, name, v);
        if (err !== undefined) return err;
        break;
      }
      default:
        extra[name](v);
    }
  }
  if (Object.keys(kconfig).length > 0) machine.kconfig = kconfig;
  if (Object.keys(params).length > 0) machine.params = params as unknown as MachineOptions["params"];
  if (pci.length > 0) machine.pci = pci;
  machine.trace = opts.trace !== undefined;
  return { opts, rest: argv.slice(i) };
}

/**
 * A running bridge: the machine booted, every PCI function bound to
 * vfio-pci, the server listening on a socket in a private directory (0700,
 * the socket 0600), the trace file open.
 */
export class BridgeSession {
  readonly m: Machine;
  readonly server: BridgeServer;
  readonly socketPath: string;
  private readonly dir: string | null;
  private traceFd = -1;

  private constructor(m: Machine, server: BridgeServer, socketPath: string, dir: string | null) {
    this.m = m;
    this.server = server;
    this.socketPath = socketPath;
    this.dir = dir;
  }

  /** Boot and listen; throws Error with a user-facing message on bad options. */
  static async start(
    opts: BridgeOptions,
    socketPath: string | undefined,
    stderr: (s: string) => void,
  ): Promise<BridgeSession> {
    const m = new Machine(opts.machine);
    const traceFd = opts.trace !== undefined ? openSync(opts.trace, "w") : -1;
    const log = (line: string) => {
      if (traceFd >= 0) writeSync(traceFd, `${line}\n`);
    };
    for (const d of m.pciConfig) {
      const r = m.bindDriver(d.bdf, "vfio-pci");
      if (r < 0) {
        const why = m.debug.failures().at(-1)?.reason ?? "";
        stderr(
          `iommufd-sim: ${d.bdf} stays unbound: vfio-pci probe failed (errno ${-r}${why ? `: ${why}` : ""})\n`,
        );
        log(`bridge: ${d.bdf} stays unbound: vfio-pci probe failed (errno ${-r})`);
      }
    }
    const server = new BridgeServer(m, log);
    let dir: string | null = null;
    let path = socketPath;
    if (path === undefined) {
      dir = mkdtempSync(join(tmpdir(), "iommufd-sim-"));
      chmodSync(dir, 0o700);
      path = join(dir, "bridge.sock");
    }
    await server.listen(path);
    chmodSync(path, 0o600);
    const s = new BridgeSession(m, server, path, dir);
    s.traceFd = traceFd;
    if (traceFd >= 0) {
      const profile = m.ctx.profile;
      server.afterRequest = () => {
        const evs = m.tracer.events;
        if (evs.length === 0) return;
        let text = "";
        for (const ev of evs) text += `${formatTraceEvent(ev, profile)}\n`;
        writeSync(traceFd, text);
        evs.length = 0;
        m.tracer.ops.length = 0;
      };
    }
    return s;
  }

  /** Every model process exits; the report (if asked) is returned as text. */
  async finish(report: boolean): Promise<string> {
    this.server.shutdown();
    this.server.afterRequest?.();
    await this.server.close();
    if (this.traceFd >= 0) closeSync(this.traceFd);
    this.traceFd = -1;
    if (this.dir !== null) rmSync(this.dir, { recursive: true, force: true });
    return report ? this.report() : "";
  }

  /** --report: DMA sanitizer findings, what was left, taint, dmesg, model bugs. */
  report(): string {
    const m = this.m;
    const lines: string[] = ["iommufd-sim report:"];
    const findings = m.debug.dmaLog().filter((e) => e.finding !== undefined || e.result === "fault");
    lines.push(
      `  DMA: ${m.debug.dmaLog().length} transfers, ${findings.length} faults or sanitizer findings`,
    );
    for (const e of findings.slice(0, 20)) {
      lines.push(
        `    ${e.device} ${e.op} 0x${e.addr.toString(16)} +${e.len}: ${e.finding ?? e.fault ?? e.result}`,
      );
    }
    const c = m.debug.counters();
    const left = ["pinnedPages", "objects", "openFiles", "processes", "memFiles", "ownedFrames"]
      .map((k) => `${k}=${c[k] ?? 0}`)
      .join(" ");
    const held = this.server.leftAtExit;
    lines.push(`  processes that exited holding files or pins (exit released them): ${held.length}`);
    for (const h of held.slice(0, 20))
      lines.push(`    pid ${h.pid}: ${h.files} fd(s) open, ${h.pinnedPages} page(s) pinned`);
    lines.push(`  left after every process exited: ${left}`);
    const taint = m.debug.taint();
    lines.push(`  taint: ${taint.length === 0 ? "none" : taint.join(", ")}`);
    const dmesg = m.debug.dmesg();
    lines.push(`  dmesg: ${dmesg.length} line(s)`);
    for (const l of dmesg.slice(-20)) lines.push(`    ${l}`);
    const bugs = [...m.debug.internalErrors(), ...this.server.internalErrors];
    const inv = m.debug.checkInvariants();
    lines.push(`  model errors: ${bugs.length}, invariant violations: ${inv.length}`);
    for (const l of [...bugs, ...inv].slice(0, 10)) lines.push(`    ${l.split("\n")[0]}`);
    return `${lines.join("\n")}\n`;
  }
}

/**
 * Run PROGRAM with the shim preloaded against a session: its exit status
 * (128 + N when signal N killed it, 127 when it cannot be run). `stdio` as
 * for child_process.spawn ("inherit" for exec; tests pipe).
 */
export function runProgram(
  session: BridgeSession,
  shim: string,
  program: string,
  args: string[],
  stdio: StdioOptions,
  stderr: (s: string) => void,
  onSpawn?: (child: ReturnType<typeof spawn>) => void,
): Promise<number> {
  const env = { ...process.env };
  env.LD_PRELOAD = env.LD_PRELOAD ? `${shim}:${env.LD_PRELOAD}` : shim;
  env.IOMMUFD_SIM_SOCKET = session.socketPath;
  return new Promise<number>((resolve) => {
    const child = spawn(program, args, { stdio, env });
    onSpawn?.(child);
    const onTerm = () => child.kill("SIGTERM");
    const onInt = () => {}; // the terminal sends SIGINT to the program too
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    let settled = false;
    const done = (code: number) => {
      if (settled) return;
      settled = true;
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      resolve(code);
    };
    child.on("error", (e: NodeJS.ErrnoException) => {
      stderr(`iommufd-sim exec: cannot run ${program}: ${e.code ?? e.message}\n`);
      done(127);
    });
    child.on("close", (code, signal) => {
      done(signal !== null ? 128 + signalNumber(signal) : (code ?? 1));
    });
  });
}

const SIGNALS: Partial<Record<NodeJS.Signals, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

function signalNumber(sig: NodeJS.Signals): number {
  return SIGNALS[sig] ?? 1;
}
