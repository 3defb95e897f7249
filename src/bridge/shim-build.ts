import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
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

/** A shared object built from C sources: what to compile and where its sources are. */
interface CcBuild {
  /** What it is, for messages ("the bridge shim"). */
  what: string;
  src: string;
  files: string[];
  /** The cached file's name before and after the hash. */
  prefix: string;
  suffix: string;
  libs: string[];
}

const CC_FLAGS = ["-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall"];

/**
 * Compile b with the machine's C compiler ($CC or cc) into the cache,
 * keyed by a hash of its sources, flags and compiler; the cached file when
 * it is there. Throws an Error a user can act on when there is no compiler
 * or the build fails.
 */
function ccBuildCached(b: CcBuild, env: NodeJS.ProcessEnv): string {
  const cc = env.CC || "cc";
  const h = createHash("sha256");
  for (const f of b.files)
    h.update(f)
      .update("\0")
      .update(readFileSync(join(b.src, f)));
  h.update(CC_FLAGS.join(" "));
  h.update(cc);
  const dir = cacheDir(env);
  const out = join(dir, `${b.prefix}${h.digest("hex").slice(0, 16)}${b.suffix}`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    const units = b.files.filter((f) => f.endsWith(".c")).map((f) => join(b.src, f));
    execFileSync(cc, [...CC_FLAGS, "-o", tmp, ...units, ...b.libs], {
      stdio: ["ignore", "ignore", "pipe"],
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === "ENOENT") {
      throw new Error(
        `iommufd-sim: no C compiler (${cc}) to build ${b.what}; install one (e.g. apt-get install gcc) or set CC`,
      );
    }
    throw new Error(
      `iommufd-sim: building ${b.what} with ${cc} failed:\n${err.stderr?.toString() ?? err.message}`,
    );
  }
  renameSync(tmp, out);
  return out;
}

/**
 * The path of the LD_PRELOAD shim, compiled on first use and cached by a
 * hash of its sources and flags.
 */
export function ensureShim(env: NodeJS.ProcessEnv = process.env): string {
  const src = shimSourceDir();
  return ccBuildCached(
    {
      what: "the exec bridge's shim",
      src,
      files: shimSources(src),
      prefix: "shim-",
      suffix: ".so",
      libs: ["-ldl", "-lpthread"],
    },
    env,
  );
}

/** The server's native helper (src/bridge/native/mapshared.c): what it offers. */
export interface BridgeNative {
  /** An ArrayBuffer over a MAP_SHARED read-write mapping of fd's first length bytes (unmapped when collected). */
  mapShared(fd: number, length: number): ArrayBuffer;
  /** The CPU the calling thread runs on (-1: unknown). */
  getcpu(): number;
  /** Move the calling thread off cpu (its CPU mask is left as it was): true when it moved. */
  stepAside(cpu: number): boolean;
}

/**
 * The server's native helper, built like the shim and loaded into this
 * process; a string (why not) when it cannot be, and the bridge then
 * reads and writes the channels with pread/pwrite.
 */
export function loadBridgeNative(env: NodeJS.ProcessEnv = process.env): BridgeNative | string {
  try {
    const src = join(dirname(shimSourceDir()), "native");
    const path = ccBuildCached(
      {
        what: "the bridge server's native helper",
        src,
        files: ["mapshared.c"],
        prefix: "native-",
        suffix: ".node",
        libs: [],
      },
      env,
    );
    const mod = createRequire(import.meta.url)(path) as Partial<BridgeNative>;
    if (
      typeof mod.mapShared !== "function" ||
      typeof mod.getcpu !== "function" ||
      typeof mod.stepAside !== "function"
    )
      return `${path} does not have mapShared, getcpu and stepAside`;
    return mod as BridgeNative;
  } catch (e) {
    return (e as Error).message;
  }
}
