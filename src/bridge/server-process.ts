import { setFlagsFromString } from "node:v8";
import { loadBridgeNative } from "./shim-build.js";

/**
 * Make this process a bridge server (exec, serve, qemu; not a test worker
 * that starts a session). V8 optimizes a hot function on a background
 * thread; while a program spins on its reply on the other CPU of a small
 * machine, that thread takes a CPU from one of the two and a round trip
 * waits for a time slice (hundreds of µs) instead of a few µs. Compiled
 * on the main thread, the same work is one pause of the server's, while
 * the program's first few thousand calls warm it up. The native helper
 * that maps the channels is built now too (once per cache), not in the
 * middle of the program's first call.
 */
export function becomeBridgeServer(): void {
  setFlagsFromString("--no-concurrent-recompilation");
  loadBridgeNative();
}
