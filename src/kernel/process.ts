import type { MmStruct } from "../mm/index.js";
import { EBADF, EINVAL, EISDIR, ENODEV, ENOTTY, ESRCH, fail } from "../uapi/errno.js";
import { MAP_ANONYMOUS, O_ACCMODE, O_RDONLY } from "../uapi/linux.js";
import type { Cred } from "./cred.js";
import { newEventFd } from "./eventfd.js";
import { KFile } from "./file.js";
import type { KernelServices } from "./services.js";
import { Task } from "./task.js";
import { describeErr, type LastError, type TraceEvent, toErrno } from "./trace.js";
import { normalize } from "./vfs.js";

const EXITED = "the process has exited";
const U64_MAX = (1n << 64n) - 1n;

/** What the trace calls the file an ioctl went to ("iommufd", "vfio-container-spapr", ...). */
function fdKind(file: KFile): string {
  return file.ops.traceKind?.(file) ?? file.kind;
}

function noIoctls(file: KFile): string {
  return `${file.kind} files have no ioctls`;
}

/**
 * A user process: the one way into the model. Every method is a system
 * call: it returns a value or -errno and never throws for bad input (the
 * syscall contract of DESIGN.md). The reason behind the last failure is
 * kept for `lastError()` and the trace.
 */
export class Process {
  readonly task: Task;
  /** The last failed call's event (the LastError is made from it when asked for). */
  private lastFailed: TraceEvent | undefined;
  private scratchVa = 0n;
  private scratchLen = 0;

  constructor(
    private readonly k: KernelServices,
    readonly pid: number,
    cred: Cred,
    /** The address space, when it is not a new empty one (fork). */
    mm?: MmStruct,
  ) {
    this.task = new Task(pid, cred, mm ?? k.newMm(cred));
  }

  get cred(): Cred {
    return this.task.cred;
  }

  /** The errno and rule of the last failed call of this process. */
  lastError(): LastError | undefined {
    const ev = this.lastFailed;
    return ev === undefined ? undefined : describeErr(ev.call, ev.errno!, ev.reason!);
  }

  open(path: string, flags = 2): number {
    return this.sys("open", [path, flags], () => {
      const p = normalize(path);
      const node = this.k.vfs.lookup(p);
      if (node === undefined) {
        if (this.k.vfs.exists(p)) {
          if ((flags & O_ACCMODE) !== O_RDONLY) fail(EISDIR, `${p} is a directory`);
          return this.task.fdInstall(new KFile({ kind: "dir" }, undefined, p, flags));
        }
        this.k.vfs.readFile(p); // throws ENOENT with the reason
      }
      if (node!.type === "chr") {
        const { ops, priv } = node!.open(this.task, flags, p);
        return this.task.fdInstall(new KFile(ops, priv, p, flags));
      }
      return this.task.fdInstall(this.k.openAttr(p, flags));
    });
  }

  close(fd: number): number {
    const tr = this.k.tracer;
    if (tr.enabled) return this.sys("close", [fd], () => this.task.fdClose(fd));
    // untraced: no event unless it fails, no closure, no throw for a bad fd
    const seq = tr.nextSeq();
    const t = this.task;
    if (t.exited) return this.refused(seq, "close", [fd], undefined, ESRCH, EXITED);
    if (t.fdLookup(fd) === undefined) return this.refused(seq, "close", [fd], undefined, EBADF, t.badFd(fd));
    try {
      return t.fdClose(fd);
    } catch (e) {
      const { errno, reason } = toErrno(e, tr, "close");
      return this.refused(seq, "close", [fd], undefined, errno, reason);
    }
  }

  /**
   * ioctl(2). `arg` is the raw unsigned long (a user pointer or a value) or a
   * Uint8Array, which is copied into the process, passed by pointer, and
   * copied back in place.
   */
  ioctl(fd: number, request: number | bigint, arg: bigint | Uint8Array = 0n): number {
    // (numbers and in-range bigints pass as they are: a BigInt made per call is garbage per call)
    const req = typeof request === "number" ? request >>> 0 : Number(BigInt.asUintN(32, request));
    if (arg instanceof Uint8Array) return this.ioctlBuffer(fd, req, arg);
    const ptr = arg >= 0n && arg <= U64_MAX ? arg : BigInt.asUintN(64, arg);
    const tr = this.k.tracer;
    if (tr.enabled) return this.ioctlTraced(fd, req, ptr);
    // untraced: no event unless it fails, no closure; a handler's refuse() costs no throw
    const seq = tr.nextSeq();
    const t = this.task;
    if (t.exited) return this.refused(seq, "ioctl", [fd, req, ptr], undefined, ESRCH, EXITED);
    const file = t.fdLookup(fd);
    if (file === undefined) return this.refused(seq, "ioctl", [fd, req, ptr], undefined, EBADF, t.badFd(fd));
    const ops = file.ops;
    if (ops.ioctl === undefined) {
      return this.refused(seq, "ioctl", [fd, req, ptr], fdKind(file), ENOTTY, noIoctls(file));
    }
    t.refusal = undefined;
    let ret: number;
    try {
      ret = ops.ioctl(file, t, req, ptr);
    } catch (e) {
      const { errno, reason } = toErrno(e, tr, "ioctl");
      return this.refused(seq, "ioctl", [fd, req, ptr], fdKind(file), errno, reason);
    }
    if (ret >= 0) return ret;
    const { errno, reason } = this.refusalOf(ret);
    return this.refused(seq, "ioctl", [fd, req, ptr], fdKind(file), errno, reason);
  }

  /** ioctl with the trace on: the event with the struct before and after. */
  private ioctlTraced(fd: number, req: number, ptr: bigint): number {
    const ev = this.begin("ioctl", [fd, req, ptr]);
    let ret: number;
    try {
      if (this.task.exited) fail(ESRCH, EXITED);
      const file = this.task.fdget(fd);
      ev.fdKind = fdKind(file);
      ev.argIn = this.snapshot(ptr);
      if (file.ops.ioctl === undefined) fail(ENOTTY, noIoctls(file));
      this.task.refusal = undefined;
      ret = file.ops.ioctl(file, this.task, req, ptr);
      if (ret < 0) {
        const { errno, reason } = this.refusalOf(ret);
        ret = -this.failedWith(ev, errno, reason);
      }
    } catch (e) {
      ret = -this.failed(ev, e);
    }
    if (ev.argIn !== undefined) ev.argOut = this.snapshot(ptr, ev.argIn.length);
    return this.end(ev, ret);
  }

  /**
   * The errno and reason of a handler's -errno return: the reason refuse()
   * left. None is a model bug (every errno has a reason): EIO, counted.
   */
  private refusalOf(ret: number): { errno: number; reason: string } {
    const reason = this.task.takeRefusal();
    if (reason !== undefined) return { errno: -ret, reason };
    return toErrno(
      new Error(`a handler returned ${ret} without a reason (Task.refuse)`),
      this.k.tracer,
      "ioctl",
    );
  }

  mmap(addr: bigint, len: bigint, prot: number, flags: number, fd = -1, off = 0n): bigint {
    return this.sysBig("mmap", [addr, len, prot, flags, fd, off], () => {
      let backing: unknown = null;
      if ((flags & MAP_ANONYMOUS) === 0) {
        const file = this.task.fdget(fd);
        if (file.ops.mmap === undefined) fail(ENODEV, `${file.kind} files cannot be mapped`);
        backing = file.ops.mmap(file, this.task, len, off, prot);
      }
      return this.k.mmMmap(this.task, addr, len, prot, flags, backing, off);
    });
  }

  munmap(va: bigint, len: bigint): number {
    return this.sys("munmap", [va, len], () => this.k.mmMunmap(this.task, va, len));
  }

  memfdCreate(name: string, flags = 0): number {
    return this.sys("memfd_create", [name, flags], () => this.task.fdInstall(this.k.newMemfd(name, flags)));
  }

  ftruncate(fd: number, len: bigint): number {
    return this.sys("ftruncate", [fd, len], () => {
      const file = this.task.fdget(fd);
      return this.k.truncate(file, len);
    });
  }

  eventfd(initval = 0, flags = 0): number {
    return this.sys("eventfd", [initval, flags], () => this.task.fdInstall(newEventFd(initval, flags)));
  }

  read(fd: number, len: number): Uint8Array | number {
    return this.sysBytes("read", [fd, len], () => {
      const file = this.task.fdget(fd);
      if (file.ops.read === undefined) fail(EINVAL, `${file.kind} files cannot be read`);
      return file.ops.read(file, this.task, len);
    });
  }

  write(fd: number, bytes: Uint8Array): number {
    return this.sys(
      "write",
      [fd, bytes.length],
      () => {
        const file = this.task.fdget(fd);
        if (file.ops.write === undefined) fail(EINVAL, `${file.kind} files cannot be written`);
        return file.ops.write(file, this.task, bytes);
      },
      this.traced(bytes),
    );
  }

  pread(fd: number, len: number, off: bigint): Uint8Array | number {
    return this.sysBytes("pread64", [fd, len, off], () => {
      const file = this.task.fdget(fd);
      if (file.ops.pread === undefined) fail(EINVAL, `${file.kind} files do not support pread`);
      if (len < 0) fail(EINVAL, "negative length");
      return file.ops.pread(file, this.task, len, BigInt.asUintN(64, off));
    });
  }

  pwrite(fd: number, bytes: Uint8Array, off: bigint): number {
    return this.sys(
      "pwrite64",
      [fd, bytes.length, off],
      () => {
        const file = this.task.fdget(fd);
        if (file.ops.pwrite === undefined) fail(EINVAL, `${file.kind} files do not support pwrite`);
        return file.ops.pwrite(file, this.task, bytes, BigInt.asUintN(64, off));
      },
      this.traced(bytes),
    );
  }

  /** The process reading its own memory (a load): bytes, or -EFAULT. */
  readMemory(va: bigint, len: number): Uint8Array | number {
    let r: Uint8Array | number;
    if (this.task.exited) r = -ESRCH;
    else {
      try {
        r = this.k.userRead(this.task, va, len);
      } catch (e) {
        r = -toErrno(e, this.k.tracer, "readMemory").errno;
      }
    }
    const ret = typeof r === "number" ? r : r.length;
    const data = typeof r === "number" ? undefined : this.traced(r);
    this.k.tracer.op({ pid: this.pid, call: "read_memory", args: [va, len], ret, ...(data && { data }) });
    return r;
  }

  /** The process writing its own memory (a store): 0, or -EFAULT. */
  writeMemory(va: bigint, bytes: Uint8Array): number {
    let ret: number;
    if (this.task.exited) ret = -ESRCH;
    else {
      try {
        ret = this.k.userWrite(this.task, va, bytes);
      } catch (e) {
        ret = -toErrno(e, this.k.tracer, "writeMemory").errno;
      }
    }
    const data = this.traced(bytes);
    this.k.tracer.op({
      pid: this.pid,
      call: "write_memory",
      args: [va, bytes.length],
      ret,
      ...(data && { data }),
    });
    return ret;
  }

  /** exit(2): every fd is closed and the address space released. */
  exit(): void {
    if (this.task.exited) return;
    const ev = this.begin("exit", []);
    try {
      for (let fd = this.task.fds.length - 1; fd >= 0; fd--) {
        if (this.task.fds[fd] !== undefined) this.task.fdClose(fd);
      }
      this.k.mmRelease(this.task);
    } catch (e) {
      this.failed(ev, e);
    }
    this.task.exited = true;
    this.k.processExited(this);
    this.end(ev, 0);
  }

  /**
   * fork(2): the child Process, or -errno (ENOMEM; the parent is unchanged
   * and nothing is left allocated). The child has the parent's credentials
   * and RLIMIT_MEMLOCK, a copy of its fd table (each fd a new reference to
   * the same open file description) and a copy of its address space:
   * private pages copy-on-write, shared and device mappings shared, pinned
   * private pages copied for the child at once, no VM_LOCKED, locked_vm and
   * pinned_vm 0 (see MmStruct.fork).
   */
  fork(): Process | number {
    const ev = this.begin("fork", []);
    try {
      if (this.task.exited) fail(ESRCH, EXITED);
      const child = this.k.forkProcess(this);
      // the ioctl scratch area was copied with the address space
      child.scratchVa = this.scratchVa;
      child.scratchLen = this.scratchLen;
      this.end(ev, child.pid);
      return child;
    } catch (e) {
      return this.end(ev, -this.failed(ev, e));
    }
  }

  /** Duplicate an fd (dup(2)); handy to pass a file to another process with `k.passFd`. */
  dup(fd: number): number {
    return this.sys("dup", [fd], () => this.task.fdInstall(this.task.fdget(fd).get()));
  }

  // --- plumbing -----------------------------------------------------------

  private ioctlBuffer(fd: number, req: number, buf: Uint8Array): number {
    if (this.task.exited) return -ESRCH;
    const va = this.scratch(buf.length);
    if (va < 0n) return Number(va);
    // The scratch area is the process's own writable memory: a failed copy
    // means the model is broken, which the boundary reports, not hides.
    try {
      this.k.userWrite(this.task, va, buf);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return -toErrno(new Error(`ioctl scratch area is not writable: ${why}`), this.k.tracer, "ioctl").errno;
    }
    const r = this.ioctl(fd, req, va);
    try {
      buf.set(this.k.userRead(this.task, va, buf.length));
    } catch {
      // the process unmapped its scratch area during the call: nothing to copy back
    }
    return r;
  }

  /** A private anonymous area for Uint8Array ioctl arguments, kept for the process's life. */
  private scratch(len: number): bigint {
    const need = Math.max(4096, Math.ceil(len / 4096) * 4096);
    if (need <= this.scratchLen) return this.scratchVa;
    if (this.scratchLen > 0) this.k.mmMunmap(this.task, this.scratchVa, BigInt(this.scratchLen));
    try {
      this.scratchVa = this.k.mmMmap(this.task, 0n, BigInt(need), 3, 0x22, null, 0n);
    } catch (e) {
      this.scratchLen = 0;
      return -BigInt(toErrno(e, this.k.tracer, "ioctl scratch").errno);
    }
    this.scratchLen = need;
    return this.scratchVa;
  }

  /** Struct bytes at a user pointer for the trace: `size`/`argsz` (first u32) bytes, if readable. */
  private snapshot(ptr: bigint, len?: number): Uint8Array | undefined {
    if (ptr === 0n) return undefined;
    try {
      if (len === undefined) {
        const head = this.k.userRead(this.task, ptr, 4);
        if (!(head instanceof Uint8Array)) return undefined;
        const n = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
        // a struct starts with its size; anything else (an fd, a name) gets
        // what the rest of the page holds, at most 256 bytes
        len = n >= 4 && n <= 4096 ? n : Math.min(256, 4096 - Number(ptr & 4095n));
      }
      const b = this.k.userRead(this.task, ptr, len);
      return b instanceof Uint8Array ? b : undefined;
    } catch {
      return undefined;
    }
  }

  private begin(call: string, args: (number | bigint | string)[]): TraceEvent {
    return { seq: this.k.tracer.nextSeq(), pid: this.pid, call, args, ret: 0 };
  }

  private failed(ev: TraceEvent, e: unknown): number {
    const { errno, reason } = toErrno(e, this.k.tracer, ev.call);
    return this.failedWith(ev, errno, reason);
  }

  private failedWith(ev: TraceEvent, errno: number, reason: string): number {
    ev.errno = errno;
    ev.reason = reason;
    this.lastFailed = ev;
    return errno;
  }

  /** An untraced call that failed: its event, made now, kept as the last failure. Returns -errno. */
  private refused(
    seq: number,
    call: string,
    args: (number | bigint | string)[],
    fdKind: string | undefined,
    errno: number,
    reason: string,
  ): number {
    const ev: TraceEvent = { seq, pid: this.pid, call, args, ret: -errno };
    if (fdKind !== undefined) ev.fdKind = fdKind;
    ev.errno = errno;
    ev.reason = reason;
    this.lastFailed = ev;
    this.k.tracer.record(ev);
    return -errno;
  }

  private end<T extends number | bigint>(ev: TraceEvent, ret: T): T {
    ev.ret = ret;
    this.k.tracer.record(ev);
    return ret;
  }

  /** A copy of bytes a call moved, for the trace (only when tracing: the copy costs). */
  private traced(b: Uint8Array): Uint8Array | undefined {
    return this.k.tracer.enabled ? b.slice() : undefined;
  }

  private sys(call: string, args: (number | bigint | string)[], fn: () => number, data?: Uint8Array): number {
    const ev = this.begin(call, args);
    if (data !== undefined) ev.data = data;
    let ret: number;
    try {
      if (this.task.exited) fail(ESRCH, EXITED);
      ret = fn();
    } catch (e) {
      ret = -this.failed(ev, e);
    }
    return this.end(ev, ret);
  }

  private sysBig(call: string, args: (number | bigint | string)[], fn: () => bigint): bigint {
    const ev = this.begin(call, args);
    let ret: bigint;
    try {
      if (this.task.exited) fail(ESRCH, EXITED);
      ret = fn();
    } catch (e) {
      ret = -BigInt(this.failed(ev, e));
    }
    return this.end(ev, ret);
  }

  private sysBytes(
    call: string,
    args: (number | bigint | string)[],
    fn: () => Uint8Array,
  ): Uint8Array | number {
    const ev = this.begin(call, args);
    let ret: Uint8Array | number;
    try {
      if (this.task.exited) fail(ESRCH, EXITED);
      ret = fn();
      const data = this.traced(ret);
      if (data !== undefined) ev.data = data;
      this.end(ev, ret.length);
    } catch (e) {
      ret = -this.failed(ev, e);
      this.end(ev, ret);
    }
    return ret;
  }
}
