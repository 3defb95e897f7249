import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cacheDir } from "../bridge/shim-build.js";
import { type QtestStep, replyMatches } from "./qemu-script.js";

/** Which QEMU, and how it reaches the device (docs/qemu.md). */
export interface QemuTarget {
  /** "7.2", "10" or the path the user gave. */
  label: string;
  binary: string;
  backend: "container" | "iommufd";
  /** Options before ours (firmware directories of an unpacked QEMU). */
  preArgs: string[];
  /** Environment for an unpacked QEMU (its modules, its libraries). */
  env: Record<string, string>;
}

/** Where scripts/qemu/install.sh unpacks QEMU 10. */
export function qemu10Dir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), "qemu10");
}

/**
 * `--qemu 7.2` is the system's qemu-system-x86_64 (Debian bookworm: legacy
 * container); `--qemu 10` the one unpacked in the cache (iommufd); a path is
 * used as it is, with `--backend` (default container). Returns an error text
 * when QEMU 10 is not unpacked.
 */
export function resolveQemu(
  which: string,
  backend: "container" | "iommufd" | undefined,
  env: NodeJS.ProcessEnv = process.env,
): QemuTarget | string {
  if (which === "7.2") {
    return {
      label: "7.2",
      binary: "qemu-system-x86_64",
      backend: backend ?? "container",
      preArgs: [],
      env: {},
    };
  }
  if (which === "10") {
    const dir = qemu10Dir(env);
    const binary = join(dir, "usr/bin/qemu-system-x86_64");
    if (!existsSync(binary)) {
      return `QEMU 10 is not unpacked in ${dir}: run scripts/qemu/install.sh (docs/qemu.md)`;
    }
    return {
      label: "10",
      binary,
      backend: backend ?? "iommufd",
      preArgs: ["-L", join(dir, "usr/share/seabios"), "-L", join(dir, "usr/share/qemu")],
      env: {
        QEMU_MODULE_DIR: join(dir, "usr/lib/x86_64-linux-gnu/qemu"),
        LD_LIBRARY_PATH: [join(dir, "usr/lib/x86_64-linux-gnu"), env.LD_LIBRARY_PATH]
          .filter((s) => s)
          .join(":"),
      },
    };
  }
  return { label: which, binary: which, backend: backend ?? "container", preArgs: [], env: {} };
}

/**
 * QEMU's command line: q35, no display, no default devices, stopped CPUs
 * (no guest runs: the script is the guest), qtest on stdio, and the model's
 * device assigned at guest slot 04.0. `mmap` false adds x-no-mmap=on (BAR
 * access by pread/pwrite on the device fd).
 */
export function qemuArgs(t: QemuTarget, host: string, mmap: boolean, extra: string[]): string[] {
  const dev = [`vfio-pci`, `host=${host}`, "addr=04.0"];
  if (!mmap) dev.push("x-no-mmap=on");
  const args = [
    ...t.preArgs,
    "-machine",
    "q35",
    "-m",
    "128M",
    "-display",
    "none",
    "-nodefaults",
    "-S",
    "-qtest",
    "stdio",
    "-qtest-log",
    "/dev/null",
  ];
  if (t.backend === "iommufd") {
    args.push("-object", "iommufd,id=i0");
    dev.push("iommufd=i0");
  }
  args.push("-device", dev.join(","), ...extra);
  return args;
}

/** One line a command: QEMU answers each qtest command with one line (OK ..., FAIL ..., ERR ...). */
export class QtestClient {
  private buf = "";
  private readonly lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private closed = false;

  constructor(private readonly child: ChildProcess) {
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        // asynchronous notices (irq_intercept) are not replies
        if (line.startsWith("IRQ ")) continue;
        this.push(line);
      }
    });
    child.stdout?.on("close", () => {
      this.closed = true;
      this.waiter?.(null);
      this.waiter = null;
    });
    child.stdin?.on("error", () => {}); // QEMU gone: the reply wait reports it
  }

  private push(line: string): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(line);
    } else this.lines.push(line);
  }

  /** Send one command; its reply, or null when QEMU closed its side or did not answer in time. */
  send(cmd: string, timeoutMs: number): Promise<string | null> {
    this.child.stdin?.write(`${cmd}\n`);
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, timeoutMs);
      this.waiter = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
    });
  }

  end(): void {
    this.child.stdin?.end();
  }
}

export interface ScriptResult {
  checks: number;
  failed: number;
  /** Set when QEMU stopped answering: the line of the command that got no reply. */
  noReplyAt?: number;
}

const REPLY_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 20;
const POLL_LIMIT_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run the steps against QEMU, printing each command, its reply and each check. */
export async function runQtestScript(
  q: QtestClient,
  steps: QtestStep[],
  print: (line: string) => void,
): Promise<ScriptResult> {
  const res: ScriptResult = { checks: 0, failed: 0 };
  for (const s of steps) {
    if (s.kind === "echo") {
      print(s.text === "" ? "" : `== ${s.text}`);
      continue;
    }
    let reply = await q.send(s.cmd, REPLY_TIMEOUT_MS);
    let tries = 1;
    if (s.poll && s.expect) {
      const until = Date.now() + POLL_LIMIT_MS;
      while (reply !== null && !replyMatches(reply, s.expect) && Date.now() < until) {
        await sleep(POLL_INTERVAL_MS);
        reply = await q.send(s.cmd, REPLY_TIMEOUT_MS);
        tries++;
      }
    }
    if (reply === null) {
      print(`${s.cmd.padEnd(36)} (no reply: QEMU exited or hung)`);
      res.noReplyAt = s.line;
      res.failed++;
      return res;
    }
    let mark = "";
    if (s.expect) {
      res.checks++;
      const ok = replyMatches(reply, s.expect);
      if (!ok) res.failed++;
      mark = ok ? "  ok" : `  FAILED (line ${s.line}: expected ${s.expect.join(" ")})`;
      if (s.poll) mark += ` after ${tries} poll(s)`;
    } else if (!reply.startsWith("OK")) {
      res.failed++;
      mark = `  FAILED (line ${s.line})`;
    }
    print(`${s.cmd.padEnd(36)} ${reply}${mark}`);
  }
  return res;
}
