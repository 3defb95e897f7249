import { errnoName, KernelError } from "../uapi/errno.js";

/** One system call as the trace keeps it (printed later from the uapi tables). */
export interface TraceEvent {
  seq: number;
  pid: number;
  call: string;
  /** Arguments as passed (fd, request, pointers, lengths...). */
  args: (number | bigint | string)[];
  /** For ioctl: the kind of file the fd refers to ("iommufd", "vfio-device", ...). */
  fdKind?: string;
  /** For struct ioctls: the struct bytes before and after the call. */
  argIn?: Uint8Array;
  argOut?: Uint8Array;
  ret: number | bigint;
  errno?: number;
  /** The rule that produced the errno, in kernel terms. */
  reason?: string;
  /** Bytes written (write, pwrite64, write_memory) or read (read, pread64, read_memory), when tracing. */
  data?: Uint8Array;
  /** Machine operations only: the capabilities of a spawned process, a module parameter's value. */
  caps?: string[];
  value?: boolean | number | string;
}

export interface LastError {
  call: string;
  errno: number;
  name: string;
  reason: string;
}

/** Records the trace (when enabled) and every failed call's reason (always, bounded). */
export class Tracer {
  enabled = false;
  readonly events: TraceEvent[] = [];
  readonly failures: TraceEvent[] = [];
  /**
   * Operations that are no system call but change what later calls see
   * (spawn, bind_driver, unbind_driver, set_param, fail_nth, the process's
   * own loads and stores), numbered in the same sequence as the syscalls so
   * a recorder can replay them in order (src/scenario/record.ts). Kept
   * apart from `events` so the strace-style trace shows syscalls only.
   */
  readonly ops: TraceEvent[] = [];
  private seq = 0;
  /** Unexpected exceptions caught at the syscall boundary: each one is a model bug. */
  readonly internalErrors: string[] = [];
  /**
   * How many failed calls `failures` keeps. Few on purpose: every kept
   * event survives the young generation, and copying 10 000 of them per
   * scavenge cost a failing call more than the call itself (a scenario
   * step's failures are taken per step; the trace, when on, keeps all).
   */
  static readonly MAX_FAILURES = 1024;

  nextSeq(): number {
    return ++this.seq;
  }

  /** Keep a machine operation (when tracing). */
  op(ev: Omit<TraceEvent, "seq">): void {
    if (this.enabled) this.ops.push({ seq: this.nextSeq(), ...ev });
  }

  record(ev: TraceEvent): void {
    if (this.enabled) this.events.push(ev);
    if (ev.errno !== undefined) {
      // trimmed in batches: a shift() per failure moved the whole array once it was full
      if (this.failures.push(ev) > Tracer.MAX_FAILURES + 256) {
        this.failures.splice(0, this.failures.length - Tracer.MAX_FAILURES);
      }
    }
  }
}

/** Turn anything thrown inside the kernel into { errno, reason }. */
export function toErrno(e: unknown, tracer: Tracer, call: string): { errno: number; reason: string } {
  if (e instanceof KernelError) return { errno: e.errno, reason: e.reason };
  const msg = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
  tracer.internalErrors.push(`${call}: ${msg}`);
  // EIO: the model failed; the trace and counters say so loudly.
  return {
    errno: 5,
    reason: `internal model error in ${call}: ${e instanceof Error ? e.message : String(e)}`,
  };
}

export function describeErr(call: string, errno: number, reason: string): LastError {
  return { call, errno, name: errnoName(errno), reason };
}
