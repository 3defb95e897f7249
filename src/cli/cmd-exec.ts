import { becomeBridgeServer } from "../bridge/server-process.js";
import { BridgeSession, parseBridgeArgs, runProgram } from "../bridge/session.js";
import { ensureShim } from "../bridge/shim-build.js";
import { HELP } from "./help.js";
import type { CliIo } from "./out.js";

const EXIT_USAGE = 2;

/**
 * `iommufd-sim exec [machine options] -- PROGRAM [ARGS...]`: boot a machine,
 * bind every PCI function to vfio-pci, run PROGRAM with the bridge shim
 * preloaded (it inherits stdin, stdout, stderr and the environment), and
 * exit with its status (128 + the signal when a signal killed it).
 */
/**
 * The shim (built on first use) and a booted machine serving it, or the
 * usage exit code after saying why on stderr (no compiler, bad options).
 */
export async function startBridge(
  opts: Parameters<typeof BridgeSession.start>[0],
  io: CliIo,
): Promise<{ shim: string; session: BridgeSession } | number> {
  try {
    const shim = ensureShim();
    becomeBridgeServer();
    return { shim, session: await BridgeSession.start(opts, undefined, io.stderr) };
  } catch (e) {
    io.stderr(`${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
}

export async function cmdExec(argv: string[], io: CliIo): Promise<number> {
  const parsed = parseBridgeArgs(argv);
  if (typeof parsed === "string") {
    io.stderr(`iommufd-sim exec: ${parsed}\n${HELP.exec.split("\n")[0]}\n`);
    return EXIT_USAGE;
  }
  const [program, ...args] = parsed.rest;
  if (program === undefined) {
    io.stderr(`iommufd-sim exec: no program to run\n${HELP.exec.split("\n")[0]}\n`);
    return EXIT_USAGE;
  }
  const started = await startBridge(parsed.opts, io);
  if (typeof started === "number") return started;
  const { shim, session } = started;
  const status = await runProgram(session, shim, program, args, "inherit", io.stderr);
  // children the program forked may still be talking to the model: give them a moment
  await Promise.race([session.server.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
  const report = await session.finish(parsed.opts.report);
  if (report) io.stderr(report);
  return status;
}
