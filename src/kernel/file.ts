import type { Task } from "./task.js";

/**
 * An open file description (struct file). Several fds (in one process or
 * several) may refer to one KFile; `release` runs when the last reference
 * goes, as the kernel's fput does.
 */
export interface FileOps {
  /** What the file is, for dispatch by fd kind and for `/proc/<pid>/fd`-like views. */
  readonly kind: string;
  /** An ioctl. `arg` is the raw unsigned long. Returns >= 0 or throws KernelError. */
  ioctl?(file: KFile, task: Task, cmd: number, arg: bigint): number;
  read?(file: KFile, task: Task, len: number): Uint8Array;
  write?(file: KFile, task: Task, bytes: Uint8Array): number;
  pread?(file: KFile, task: Task, len: number, off: bigint): Uint8Array;
  pwrite?(file: KFile, task: Task, bytes: Uint8Array, off: bigint): number;
  /**
   * mmap of the file: returns a backing the mm layer maps (device memory or
   * a MemFile); undefined when the file cannot be mapped (ENODEV).
   */
  mmap?(file: KFile, task: Task, len: bigint, off: bigint, prot: number): unknown;
  /**
   * What the file is right now, when that refines `kind` for the trace
   * (a container's numbers mean type1 or sPAPR commands by its backend).
   */
  traceKind?(file: KFile): string;
  /** The last reference went away. */
  release?(file: KFile): void;
}

export class KFile {
  refs = 1;
  constructor(
    readonly ops: FileOps,
    /** The file's private data (private_data in the kernel). */
    public priv: unknown,
    readonly path: string,
    public flags: number,
  ) {}

  get kind(): string {
    return this.ops.kind;
  }

  get(): this {
    this.refs++;
    return this;
  }

  /** Drop a reference; release on the last one. Returns true when released. */
  put(): boolean {
    if (--this.refs > 0) return false;
    this.ops.release?.(this);
    return true;
  }
}
