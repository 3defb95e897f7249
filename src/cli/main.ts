import { readFileSync } from "node:fs";
import { parseScenario, type Scenario, ScenarioError } from "../scenario/index.js";
import { cmdDemo } from "./cmd-demo.js";
import { cmdExec } from "./cmd-exec.js";
import { cmdExplain } from "./cmd-explain.js";
import { cmdInspect } from "./cmd-inspect.js";
import { cmdQemu } from "./cmd-qemu.js";
import { cmdRecord } from "./cmd-record.js";
import { cmdRun } from "./cmd-run.js";
import { cmdServe } from "./cmd-serve.js";
import { cmdTrace } from "./cmd-trace.js";
import { cmdWeb } from "./cmd-web.js";
import { HELP } from "./help.js";
import { type CliIo, Out, type Verbosity } from "./out.js";

/** Exit codes (docs/cli.md). */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_NOT_MODELLED = 2;
export const EXIT_BAD_SCENARIO = 3;

export interface CliOptions {
  json: boolean;
  verbosity: Verbosity;
  colour: boolean | undefined;
  help: boolean;
  pid: boolean;
  /** record: `-o out.yaml` (default stdout). */
  output?: string;
  /** demo: `--record out.yaml`. */
  record?: string;
  /** web: `--port N` (0: any free port). */
  port?: string;
  /** web: `--export DIR` (a static site instead of a server). */
  export?: string;
  positional: string[];
}

export interface CliContext {
  out: Out;
  opts: CliOptions;
  io: CliIo;
}

function defaultIo(): CliIo {
  // `iommufd-sim trace x.yaml | head`: a closed pipe ends the output quietly, as with cat
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    stdoutTTY: process.stdout.isTTY === true,
    stderrTTY: process.stderr.isTTY === true,
    env: process.env,
  };
}

/** Parse flags anywhere on the line; the rest are positional. Unknown flags are a usage error. */
export function parseArgs(argv: string[]): CliOptions | string {
  const o: CliOptions = {
    json: false,
    verbosity: "normal",
    colour: undefined,
    help: false,
    pid: false,
    positional: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = /^(--output|--record|--port|--export)=(.*)$/.exec(a);
    if (eq) {
      if (eq[1] === "--output") o.output = eq[2];
      else if (eq[1] === "--record") o.record = eq[2];
      else if (eq[1] === "--port") o.port = eq[2];
      else o.export = eq[2];
      continue;
    }
    switch (a) {
      case "-o":
      case "--output":
      case "--record": {
        const v = argv[++i];
        if (v === undefined) return `${a} needs a file name`;
        if (a === "--record") o.record = v;
        else o.output = v;
        break;
      }
      case "--port":
      case "--export": {
        const v = argv[++i];
        if (v === undefined) return `${a} needs a value`;
        if (a === "--port") o.port = v;
        else o.export = v;
        break;
      }
      case "--json":
        o.json = true;
        break;
      case "-q":
      case "--quiet":
        o.verbosity = "quiet";
        break;
      case "-v":
      case "--verbose":
        o.verbosity = "verbose";
        break;
      case "--color":
      case "--colour":
        o.colour = true;
        break;
      case "--no-color":
      case "--no-colour":
        o.colour = false;
        break;
      case "-h":
      case "--help":
        o.help = true;
        break;
      case "--pid":
        o.pid = true;
        break;
      default:
        if (a.startsWith("-") && a !== "-") return `unknown option ${a}`;
        o.positional.push(a);
    }
  }
  return o;
}

/**
 * The command line: `iommufd-sim <command> ...`. Returns the exit code;
 * never calls process.exit, so tests run it in-process with their own io.
 */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  // exec and serve take machine options and a program's own arguments: their own parser
  if (argv[0] === "exec" && !argv.slice(1, 2).some((a) => a === "--help" || a === "-h"))
    return cmdExec(argv.slice(1), io);
  if (argv[0] === "serve" && !argv.slice(1, 2).some((a) => a === "--help" || a === "-h"))
    return cmdServe(argv.slice(1), io);
  if (argv[0] === "qemu" && !argv.slice(1, 2).some((a) => a === "--help" || a === "-h"))
    return cmdQemu(argv.slice(1), io);
  const parsed = parseArgs(argv);
  if (typeof parsed === "string") {
    io.stderr(`iommufd-sim: ${parsed}\n${HELP.main.split("\n")[2]}\n`);
    return EXIT_USAGE;
  }
  const out = new Out(io, parsed.verbosity, parsed.colour);
  const ctx: CliContext = { out, opts: parsed, io };
  const [cmd, ...rest] = parsed.positional;
  if (cmd === undefined || cmd === "help") {
    const topic = rest[0] ?? "main";
    if (!Object.hasOwn(HELP, topic)) {
      out.error(`iommufd-sim: no help for "${topic}"`);
      return EXIT_USAGE;
    }
    out.always(HELP[topic]);
    return cmd === undefined && !parsed.help ? EXIT_USAGE : EXIT_OK;
  }
  if (!Object.hasOwn(HELP, cmd) || cmd === "main") {
    out.error(`iommufd-sim: unknown command "${cmd}"\n${HELP.main.split("\n")[2]}`);
    return EXIT_USAGE;
  }
  if (parsed.help) {
    out.always(HELP[cmd]);
    return EXIT_OK;
  }
  if (cmd === "demo") return cmdDemo(ctx, rest);
  if (cmd === "web") return cmdWeb(ctx, rest);
  if (rest.length !== 1) {
    out.error(`iommufd-sim ${cmd}: expected one scenario file\n${HELP[cmd].split("\n")[0]}`);
    return EXIT_USAGE;
  }
  const sc = loadScenario(ctx, rest[0]);
  if (typeof sc === "number") return sc;
  switch (cmd) {
    case "run":
      return cmdRun(ctx, sc);
    case "trace":
      return cmdTrace(ctx, sc);
    case "inspect":
      return cmdInspect(ctx, sc);
    case "record":
      return cmdRecord(ctx, sc);
    default:
      return cmdExplain(ctx, sc);
  }
}

/** Read and parse a scenario file; on error print `file:line: message` and return the exit code. */
export function loadScenario(ctx: CliContext, file: string): Scenario | number {
  let text: string;
  try {
    text = (ctx.io.readFile ?? ((p: string) => readFileSync(p, "utf8")))(file);
  } catch (e) {
    ctx.out.error(
      `iommufd-sim: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
    return EXIT_USAGE;
  }
  try {
    return parseScenario(text, file);
  } catch (e) {
    if (e instanceof ScenarioError) {
      ctx.out.error(`${file}${e.line ? `:${e.line}` : ""}: ${e.message}`);
      return EXIT_BAD_SCENARIO;
    }
    throw e;
  }
}
