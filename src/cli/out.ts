/** Where the CLI writes. Tests inject their own; the bin uses the process's streams. */
export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** stdout is a terminal (colour allowed). */
  stdoutTTY?: boolean;
  /** stderr is a terminal (progress display allowed). */
  stderrTTY?: boolean;
  /** NO_COLOR / FORCE_COLOR from the environment. */
  env?: Record<string, string | undefined>;
  readFile?: (path: string) => string;
  /** Where `record -o` and `demo --record` write (tests keep it in memory). */
  writeFile?: (path: string, text: string) => void;
  /** `web`: the server once it listens, and how to stop it (tests stop it themselves). */
  onServer?: (server: import("node:http").Server, stop: () => void) => void;
}

export type Verbosity = "quiet" | "normal" | "verbose";

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, dim: 2, bold: 1 } as const;
export type Colour = keyof typeof CODES;

/**
 * Line-oriented output with colour only on a terminal (or --color), quiet
 * and verbose levels, and a one-line progress display on stderr.
 */
export class Out {
  readonly colour: boolean;
  private progressShown = false;

  constructor(
    readonly io: CliIo,
    readonly verbosity: Verbosity,
    colourFlag: boolean | undefined,
  ) {
    const env = io.env ?? {};
    this.colour =
      colourFlag ??
      (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0"
        ? true
        : env.NO_COLOR
          ? false
          : !!io.stdoutTTY);
  }

  paint(c: Colour, s: string): string {
    return this.colour ? `\x1b[${CODES[c]}m${s}\x1b[0m` : s;
  }

  /** Normal output (suppressed by --quiet). */
  line(s = ""): void {
    if (this.verbosity === "quiet") return;
    this.clearProgress();
    this.io.stdout(`${s}\n`);
  }

  /** Output that --quiet keeps (results asked for: JSON, trace lines). */
  always(s = ""): void {
    this.clearProgress();
    this.io.stdout(`${s}\n`);
  }

  verbose(s: string): void {
    if (this.verbosity === "verbose") this.line(s);
  }

  error(s: string): void {
    this.clearProgress();
    this.io.stderr(`${s}\n`);
  }

  /** "[  120/4096] step 7.2 ..." rewritten in place on a terminal's stderr. */
  progress(done: number, total: number, what: string): void {
    if (!this.io.stderrTTY || this.verbosity === "quiet") return;
    const w = String(total).length;
    this.io.stderr(`\r\x1b[2K[${String(done).padStart(w)}/${total}] ${what.slice(0, 60)}`);
    this.progressShown = true;
  }

  clearProgress(): void {
    if (!this.progressShown) return;
    this.io.stderr("\r\x1b[2K");
    this.progressShown = false;
  }
}
