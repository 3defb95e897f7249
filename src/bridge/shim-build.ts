import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The shim's C sources (shipped with the package beside the compiled JavaScript's src/). */
export function shimSourceDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/bridge -> src/bridge/shim; src/bridge (vitest) -> src/bridge/shim
  for (const d of [join(here, "shim"), resolve(here, "../../src/bridge/shim")]) {
    if (existsSync(join(d, "shim.h"))) return d;
  }
  throw new Error("iommufd-sim: the bridge shim's source (src/bridge/shim/*.c) is missing from the package");
}

/** The shim's source files (every .c and .h in the directory), sorted so the cache key is stable. */
export function shimSources(src: string = shimSourceDir()): string[] {
  return readdirSync(src)
    .filter((f) => f.endsWith(".c") || f.endsWith(".h"))
    .sort();
}

/** Where built shims are kept: $IOMMUFD_SIM_CACHE, $XDG_CACHE_HOME/iommufd-sim or ~/.cache/iommufd-sim. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.IOMMUFD_SIM_CACHE) return env.IOMMUFD_SIM_CACHE;
  const base = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "iommufd-sim");
}

/**
 * The path of the LD_PRELOAD shim, compiled with the machine's C compiler
 * ($CC or cc) on first use and cached by a hash of its sources and flags.
 * Throws an Error with a message a user can act on when there is no
 * compiler or the build fails.
 */
export function ensureShim(env: NodeJS.ProcessEnv = process.env): string {
  const src = shimSourceDir();
  const files = shimSources(src);
  const cc = env.CC || "cc";
  const flags = ["-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall"];
  const h = createHash("sha256");
  for (const f of files)
    h.update(f)
      .update("\0")
      .update(readFileSync(join(src, f)));
  h.update(flags.join(" "));
  h.update(cc);
  const dir = cacheDir(env);
  const out = join(dir, `shim-${h.digest("hex").slice(0, 16)}.so`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    const units = files.filter((f) => f.endsWith(".c")).map((f) => join(src, f));
    execFileSync(cc, [...flags, "-o", tmp, ...units, "-ldl", "-lpthread"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === "ENOENT") {
      throw new Error(
        `iommufd-sim: no C compiler (${cc}) to build the exec bridge's shim; install one (e.g. apt-get install gcc) or set CC`,
      );
    }
    throw new Error(
      `iommufd-sim: building the bridge shim with ${cc} failed:\n${err.stderr?.toString() ?? err.message}`,
    );
  }
  renameSync(tmp, out);
  return out;
}
