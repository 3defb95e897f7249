import { main } from "../../src/cli/main.js";
import type { CliIo } from "../../src/cli/out.js";

export interface Served {
  /** The first line `web` printed: its URL. */
  url: string;
  stderr: () => string;
  /** Stop the server; resolves to `web`'s exit code. */
  stop: () => Promise<number>;
}

/** Start `iommufd-sim web ARGS` in-process; resolves once it listens (its URL already printed). */
export function serve(args: string[]): Promise<Served> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const io: CliIo = {
      stdout: (s) => {
        out += s;
      },
      stderr: (s) => {
        err += s;
      },
      env: {},
      onServer: (_server, stop) => {
        resolve({
          url: out.split("\n")[0],
          stderr: () => err,
          stop: () => {
            stop();
            return done;
          },
        });
      },
    };
    const done = main(["web", ...args], io);
    done.then((code) => reject(new Error(`web exited ${code} before serving: ${err}`)), reject);
  });
}
