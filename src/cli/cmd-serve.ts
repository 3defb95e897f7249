import { statSync } from "node:fs";
import { dirname } from "node:path";
import { becomeBridgeServer } from "../bridge/server-process.js";
import { BridgeSession, parseBridgeArgs } from "../bridge/session.js";
import { ensureShim } from "../bridge/shim-build.js";
import { HELP } from "./help.js";
import type { CliIo } from "./out.js";

const EXIT_USAGE = 2;

/**
 * `iommufd-sim serve --socket PATH [machine options]`: one machine that any
 * number of programs join (IOMMUFD_SIM_SOCKET=PATH LD_PRELOAD=<shim>),
 * until SIGINT or SIGTERM. Prints the LD_PRELOAD line on stdout first.
 */
export async function cmdServe(argv: string[], io: CliIo): Promise<number> {
  let socket: string | undefined;
  const parsed = parseBridgeArgs(argv, { "--socket": (v) => (socket = v) });
  if (typeof parsed === "string" || parsed.rest.length > 0 || socket === undefined) {
    const why =
      typeof parsed === "string"
        ? parsed
        : socket === undefined
          ? "--socket PATH is required"
          : `unexpected ${parsed.rest[0]}`;
    io.stderr(`iommufd-sim serve: ${why}\n${HELP.serve.split("\n")[0]}\n`);
    return EXIT_USAGE;
  }
  try {
    const mode = statSync(dirname(socket)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      io.stderr(
        `iommufd-sim serve: ${dirname(socket)} is open to others (mode ${mode.toString(8)}); put the socket in a private directory (0700)\n`,
      );
      return EXIT_USAGE;
    }
  } catch (e) {
    io.stderr(
      `iommufd-sim serve: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: ${dirname(socket)}\n`,
    );
    return EXIT_USAGE;
  }
  let session: BridgeSession;
  let shim: string;
  try {
    shim = ensureShim();
    becomeBridgeServer();
    session = await BridgeSession.start(parsed.opts, socket, io.stderr);
  } catch (e) {
    io.stderr(`${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
  io.stdout(`IOMMUFD_SIM_SOCKET=${socket} LD_PRELOAD=${shim}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  const report = await session.finish(parsed.opts.report);
  if (report) io.stderr(report);
  return 0;
}
