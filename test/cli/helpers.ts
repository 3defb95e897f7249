import { main } from "../../src/cli/main.js";
import type { CliIo } from "../../src/cli/out.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI in-process with captured output; `files` are served instead of the disk. */
export async function cli(
  argv: string[],
  opts: { files?: Record<string, string>; tty?: boolean; env?: Record<string, string> } = {},
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
    stdoutTTY: opts.tty ?? false,
    stderrTTY: opts.tty ?? false,
    env: opts.env ?? {},
  };
  if (opts.files) {
    const files = opts.files;
    io.readFile = (p) => {
      if (Object.hasOwn(files, p)) return files[p];
      const e = new Error(`ENOENT: ${p}`) as NodeJS.ErrnoException;
      e.code = "ENOENT";
      throw e;
    };
  }
  const code = await main(argv, io);
  return { code, stdout, stderr };
}
