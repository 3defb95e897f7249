import type { MmStruct } from "../mm/index.js";
import type { Cred } from "./cred.js";
import type { KFile } from "./file.js";
import type { Process } from "./process.js";
import type { Task } from "./task.js";
import type { Tracer } from "./trace.js";
import type { Vfs } from "./vfs.js";

/** What a Process needs from the machine it runs on. */
export interface KernelServices {
  readonly vfs: Vfs;
  readonly tracer: Tracer;
  newMm(cred: Cred): MmStruct;
  mmMmap(
    task: Task,
    addr: bigint,
    len: bigint,
    prot: number,
    flags: number,
    backing: unknown,
    off: bigint,
  ): bigint;
  mmMunmap(task: Task, va: bigint, len: bigint): number;
  mmRelease(task: Task): void;
  userRead(task: Task, va: bigint, len: number): Uint8Array;
  userWrite(task: Task, va: bigint, bytes: Uint8Array): number;
  newMemfd(name: string, flags: number): KFile;
  truncate(file: KFile, len: bigint): number;
  openAttr(path: string, flags: number): KFile;
  processExited(p: Process): void;
  /** The kernel half of fork(2): the child process, or throws KernelError (parent unchanged). */
  forkProcess(parent: Process): Process;
}
