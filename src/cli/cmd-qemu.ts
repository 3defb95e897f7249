import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseBridgeArgs, runProgram } from "../bridge/session.js";
import { startBridge } from "./cmd-exec.js";
import { HELP } from "./help.js";
import type { CliIo } from "./out.js";
import { QtestClient, qemuArgs, resolveQemu, runQtestScript } from "./qemu-run.js";
import { parseQtestScript, type QtestStep } from "./qemu-script.js";

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** examples/qemu/ of the package (from dist/cli or src/cli alike). */
export function qemuExamplesDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../examples/qemu");
}

/**
 * `iommufd-sim qemu [--qemu 7.2|10|PATH] [--backend container|iommufd]
 * [--script FILE] [--mmap] [--host BDF] [machine options] [-- QEMU ARGS]`:
 * boot a machine, run a real QEMU under the bridge with the model's device
 * assigned (vfio-pci), drive it with a qtest script over stdio, and check
 * the replies. Exit 0 when every check passed and QEMU exited with 0.
 */
export async function cmdQemu(argv: string[], io: CliIo): Promise<number> {
  let which = "7.2";
  let backend: "container" | "iommufd" | undefined;
  let script = resolve(qemuExamplesDir(), "memcpy.qtest");
  let host = "0000:00:04.0";
  let badBackend: string | undefined;
  // --mmap is a flag (parseBridgeArgs takes options with values); QEMU's own arguments follow `--`
  const dashes = argv.indexOf("--");
  const ours = dashes < 0 ? argv : argv.slice(0, dashes);
  const mmap = ours.includes("--mmap");
  const parsed = parseBridgeArgs(
    [...ours.filter((a) => a !== "--mmap"), ...(dashes < 0 ? [] : argv.slice(dashes))],
    {
      "--qemu": (v) => (which = v),
      "--backend": (v) => {
        if (v === "container" || v === "iommufd") backend = v;
        else badBackend = v;
      },
      "--script": (v) => (script = v),
      "--host": (v) => (host = v),
    },
  );
  const usage = HELP.qemu.split("\n")[0];
  if (typeof parsed === "string") {
    io.stderr(`iommufd-sim qemu: ${parsed}\n${usage}\n`);
    return EXIT_USAGE;
  }
  if (badBackend !== undefined) {
    io.stderr(`iommufd-sim qemu: --backend takes container or iommufd, not "${badBackend}"\n${usage}\n`);
    return EXIT_USAGE;
  }
  const target = resolveQemu(which, backend);
  if (typeof target === "string") {
    io.stderr(`iommufd-sim qemu: ${target}\n`);
    return EXIT_USAGE;
  }
  let steps: QtestStep[];
  try {
    steps = parseQtestScript(readFileSync(script, "utf8"));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    io.stderr(`iommufd-sim qemu: ${script}: ${err.code ?? err.message}\n`);
    return EXIT_USAGE;
  }
  const started = await startBridge(parsed.opts, io);
  if (typeof started === "number") return started;
  const { shim, session } = started;

  const args = qemuArgs(target, host, mmap, parsed.rest);
  const how = target.backend === "iommufd" ? "iommufd backend" : "legacy VFIO container";
  io.stdout(
    `QEMU ${target.label}, ${how}, BAR access by ${mmap ? "mmap" : "pread/pwrite (x-no-mmap=on)"}\n` +
      `$ ${target.binary} ${args.join(" ")}\n`,
  );
  // an unpacked QEMU needs its module and library directories: set them through env(1)
  const vars = Object.entries(target.env).map(([k, v]) => `${k}=${v}`);
  const [program, pargs] =
    vars.length > 0 ? ["env", [...vars, target.binary, ...args]] : [target.binary, args];
  let child: ChildProcess | undefined;
  const exited = runProgram(session, shim, program, pargs, ["pipe", "pipe", "pipe"], io.stderr, (c) => {
    child = c;
  });
  if (child === undefined) throw new Error("runProgram did not spawn");
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    for (const l of d.split("\n")) if (l !== "") io.stderr(`qemu: ${l}\n`);
  });
  const q = new QtestClient(child);
  const res = await runQtestScript(q, steps, (l) => io.stdout(`${l}\n`));
  // as libqtest's qtest_quit: QEMU keeps running after qtest's EOF; SIGTERM is its orderly shutdown
  q.end();
  child.kill("SIGTERM");
  const status = await exited;
  await Promise.race([session.server.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
  const held = [...session.server.leftAtExit];
  const report = await session.finish(parsed.opts.report);

  const m = session.m;
  const dma = m.debug.dmaLog();
  const faults = dma.filter((e) => e.result === "fault");
  io.stdout(`\nDMA by the device: ${dma.length} transfer(s), ${faults.length} fault(s)\n`);
  for (const f of faults) {
    io.stdout(`  fault: ${f.op} 0x${f.addr.toString(16)} +${f.len}: ${f.fault ?? f.result}\n`);
  }
  // QEMU never closes its VFIO fds: the model must release them when the process goes
  const c = m.debug.counters();
  const left = ["pinnedPages", "objects", "openFiles", "processes"].filter((k) => (c[k] ?? 0) !== 0);
  const fds = held.reduce((n, h) => n + h.files, 0);
  const pins = held.reduce((n, h) => n + h.pinnedPages, 0);
  if (left.length === 0) {
    io.stdout(
      `after QEMU exited: nothing left in the model (exit released ${fds} fd(s) and ${pins} pinned page(s) QEMU left open)\n`,
    );
  } else {
    io.stdout(`after QEMU exited: the model still holds ${left.map((k) => `${k}=${c[k]}`).join(" ")}\n`);
  }
  const bugs = m.debug.internalErrors().length + session.server.internalErrors.length;
  const failed = res.failed + (left.length > 0 ? 1 : 0) + (status !== 0 ? 1 : 0) + (bugs > 0 ? 1 : 0);
  io.stdout(
    `${res.checks} checks, ${res.failed} failed; QEMU exit status ${status}; model errors ${bugs}\n` +
      `${failed === 0 ? "PASS" : "FAIL"}\n`,
  );
  if (report) io.stderr(report);
  return failed === 0 ? 0 : EXIT_FAILED;
}
