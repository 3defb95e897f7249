// Linux x86-64 errno values (include/uapi/asm-generic/errno-base.h, errno.h).
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const E2BIG = 7;
export const ENOEXEC = 8;
export const EBADF = 9;
export const ECHILD = 10;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENODEV = 19;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const ENFILE = 23;
export const EMFILE = 24;
export const ENOTTY = 25;
export const EFBIG = 27;
export const ENOSPC = 28;
export const ESPIPE = 29;
export const EROFS = 30;
export const ERANGE = 34;
export const EDEADLK = 35;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const ENOMSG = 42;
export const ENODATA = 61;
export const EOVERFLOW = 75;
export const EBADFD = 77;
export const EMSGSIZE = 90;
export const EOPNOTSUPP = 95;
export const EADDRINUSE = 98;
export const ETIMEDOUT = 110;
/**
 * Kernel-internal "no such ioctl here" (include/linux/errno.h); fs/ioctl.c
 * turns it into ENOTTY before user space sees it.
 */
export const ENOIOCTLCMD = 515;

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  34: "ERANGE",
  35: "EDEADLK",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  42: "ENOMSG",
  61: "ENODATA",
  75: "EOVERFLOW",
  77: "EBADFD",
  90: "EMSGSIZE",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  110: "ETIMEDOUT",
  515: "ENOIOCTLCMD",
};

/** "EINVAL" for 22 (or -22); "E?123" for a value we have no name for. */
export function errnoName(e: number): string {
  const n = e < 0 ? -e : e;
  return NAMES[n] ?? `E?${n}`;
}

/** The errno for a name such as "EINVAL", or undefined. */
export function errnoValue(name: string): number | undefined {
  for (const [k, v] of Object.entries(NAMES)) if (v === name) return Number(k);
  return undefined;
}

/**
 * A failure inside the model: an errno and the rule that produced it.
 * Thrown inside the kernel and turned into `-errno` at the syscall boundary;
 * it never crosses the syscall contract.
 *
 * Failing is an ordinary outcome of a system call, so it must cost about
 * what a return does. An `Error` would capture a stack trace (about half of
 * a failing ioctl's time) and even without one its constructor costs
 * several times a plain object's; so a KernelError is a plain object whose
 * prototype chain reaches `Error.prototype` (`instanceof Error` holds, test
 * runners print it as an error) and its message is built only when read.
 * Set `KernelError.captureStacks = true` while debugging to get stacks.
 */
export class KernelError {
  /** Capture a JS stack trace for each KernelError (debugging only: it costs microseconds a throw). */
  static captureStacks = false;
  declare stack?: string;

  constructor(
    readonly errno: number,
    readonly reason: string,
  ) {
    if (KernelError.captureStacks) Error.captureStackTrace(this, KernelError);
  }

  get message(): string {
    return `${errnoName(this.errno)}: ${this.reason}`;
  }

  get name(): string {
    return "KernelError";
  }

  toString(): string {
    return `KernelError: ${this.message}`;
  }
}
Object.setPrototypeOf(KernelError.prototype, Error.prototype);

/**
 * Rethrow `e` with the caller's context before its reason (and `errno` in
 * place of its own when the caller's rule says so); anything that is not a
 * KernelError passes unchanged. The reason of a lower layer is never dropped.
 */
export function rethrowWith(e: unknown, prefix: string, errno?: number): never {
  if (e instanceof KernelError) throw new KernelError(errno ?? e.errno, `${prefix}${e.reason}`);
  throw e;
}

/** Throw a KernelError; `return fail(...)` keeps control flow obvious. */
export function fail(errno: number, reason: string): never {
  throw new KernelError(errno, reason);
}
