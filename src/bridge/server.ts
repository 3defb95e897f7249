import { randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { RLIM_INFINITY } from "../kernel/cred.js";
import { type FileOps, KFile } from "../kernel/file.js";
import type { Machine } from "../kernel/machine.js";
import type { Process } from "../kernel/process.js";
import { type ForeignMemFile, ForeignMm } from "../mm/index.js";
import { EBADF, EFAULT, EINVAL, ENOSYS, EPERM, ESPIPE, fail, KernelError } from "../uapi/errno.js";
import { O_CLOEXEC, O_NOFOLLOW } from "../uapi/linux.js";
import { Channel } from "./channel.js";
import { bridgeHugetlb, bridgeMmap, bridgeMmio, bridgeMremap, bridgeMunmap } from "./devmem.js";
import { hugetlbMemfd, hugetlbMmap } from "./hugetlb-fd.js";
import { EVENTFD_LINK, realEventFd } from "./irq.js";
import { BridgeNamespace, type NodeKind, STATUS, type StatInfo } from "./namespace.js";
import { pagemapOps } from "./pagemap.js";
import { capNames, openProcShmemFile, ProcMemory, procCred } from "./proc-mem.js";
import { procStatusOps } from "./proc-status.js";
import {
  decodeRequest,
  encodeReply,
  OP,
  PASSTHROUGH,
  REP_CHANNEL,
  REP_HAS_PINS,
  REP_SPARE_USED,
  REP_WAKE,
  REQ_CHANNEL,
  REQ_PREFETCH,
  type Request,
  STAT_NOFOLLOW,
  STAT_SIZE,
} from "./protocol.js";
import { type BridgeNative, loadBridgeNative } from "./shim-build.js";

const EMFILE = 24;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** What the server says about itself besides the model's trace (bridge-level failures, process lifetimes). */
export type BridgeLog = (line: string) => void;

interface Pending {
  proc: Process;
  /** The real child's pid once the parent reported it. */
  pid?: number;
}

/**
 * How long the server keeps polling the channels after the last request
 * (ms), at most and at least: a program's next call usually comes within a
 * few µs, and a poll costs about one pread. The window halves after a
 * polling episode that found nothing (the program is slow, or it could not
 * run because this polling held the CPU it needs: on a loaded machine) and
 * doubles after one that did; below SPIN_MIN_MS polling stops, but for a
 * probe every PROBE_EVERY nudges.
 */
const SPIN_MAX_MS = 0.2;
const SPIN_MIN_MS = 0.01;
const PROBE_EVERY = 16;
/** The longest the server polls before it lets the event loop run (new connections, nudges, exits). */
const SPIN_SLICE_MS = 0.5;

/** Files the bridge reads at a position of its own (sysfs text, fail-nth): read(2) advances it. */
const POSITIONED = new Set(["sysfs", "fail-nth", "debugfs", "dir", "pagemap", "proc-status"]);

/**
 * One connection: one real process (a thread group). Its model Process,
 * its memory, the fd number the next model file must take.
 */
class Client {
  proc: Process | null = null;
  mem: ProcMemory | null = null;
  pid = 0;
  /** The shared request channel (null: every request comes over the socket). */
  chan: Channel | null = null;
  /** When the server last found a request there (performance.now() ms), while it polls this channel. */
  lastActive = 0;
  buf: Buffer = Buffer.alloc(0);
  /** The real fd reserved for the next file the model installs (-1: none). */
  nextFd = -1;
  consumed = false;
  readonly pos = new WeakMap<KFile, number>();
  /** The process's shmem files the model has seen (IOAS_MAP_FILE), by fd. */
  readonly memfds = new Map<number, { kfile: KFile; mf: ForeignMemFile }>();
  /** Real eventfds the model signalled since the last reply: the shim writes 1 to each. */
  irqs: number[] = [];
  constructor(readonly sock: Socket) {}

  takeFd(): number {
    const fd = this.nextFd;
    this.nextFd = -1;
    if (fd >= 0) this.consumed = true;
    return fd;
  }
}

/**
 * The bridge server: one Machine, any number of real processes connected
 * over a Unix socket (the shim in each). Requests are handled one at a time,
 * synchronously, so the model sees one syscall at a time as before. A
 * malformed request closes that connection; an exception inside a handler
 * becomes EIO for that call and is counted as a model bug; a connection
 * that goes away (the process died) exits its process.
 *
 * Most requests come through each process's channel (channel.ts) rather
 * than the socket: once a request arrived, the server polls every channel
 * round-robin until none posted for a while (SPIN_MAX_MS at most), giving the event loop a
 * turn every SPIN_SLICE_MS (so a connection, a socket request or an exit
 * never waits longer than that); it never blocks on a client.
 */
export class BridgeServer {
  readonly ns: BridgeNamespace;
  private server: Server | null = null;
  private readonly clients = new Set<Client>();
  private readonly forks = new Map<number, Pending>();
  /** Handlers that threw (model or bridge bugs); --report prints them. */
  readonly internalErrors: string[] = [];
  /** Connections dropped for a malformed request. */
  malformed = 0;
  /** Processes that went with files still open or memory still pinned (exit released them): --report. */
  readonly leftAtExit: { pid: number; files: number; pinnedPages: number }[] = [];
  private idleWaiters: (() => void)[] = [];
  /** The polling loop is running or scheduled. */
  private spinning = false;
  /** The clients whose channels the loop polls (their shims were told so): those that posted lately. */
  private readonly active: Client[] = [];

  /** The current polling window (ms), between SPIN_MIN_MS and SPIN_MAX_MS. */
  private spinWindow = SPIN_MAX_MS;
  /** false: the server never polls; every channel request comes with a nudge (tests use it). */
  polling = true;
  /** false: channels are read with pread and written with pwrite even where they could be mapped (tests use it). */
  mapChannels = true;
  /**
   * The native helper that maps channels and steps aside (loaded at the
   * first channel), or why there is none; a test may set its own first.
   */
  native: BridgeNative | string | undefined;
  private sinceProbe = 0;
  /**
   * Requests answered through a channel, polling episodes, and wake-ups
   * sent to a shim that slept on its reply (the bench and tests read them).
   */
  readonly stats = {
    channelRequests: 0,
    socketRequests: 0,
    /** Channels the server mapped, and those it reads with pread (mapChannels on, no native helper). */
    channelsMapped: 0,
    channelsUnmapped: 0,
    /** Times the polling server moved off the CPU a spinning shim posted from. */
    stepsAside: 0,
    /** Requests a shim posted spinning (a mapped channel) after it had slept on its channel once: its tries. */
    spinningAfterSleep: 0,
    spins: 0,
    wakes: 0,
    memReads: 0,
    memReadsPrefetched: 0,
    mapsReads: 0,
  };
  private readonly anonInodes = new WeakMap<KFile, number>();
  private nextAnonIno = 0x10000;
  private readonly keepStacks = process.env.IOMMUFD_SIM_DEBUG !== undefined;
  /** Real memfds backed by the model's hugetlb pool (shim memfd_create(MFD_HUGETLB)), by "MAJ:MIN INODE". */
  private readonly hugetlbFiles = new Map<string, number>();
  /** Called after each request (the trace writer drains the model's trace). */
  afterRequest: (() => void) | null = null;

  constructor(
    readonly m: Machine,
    private readonly log: BridgeLog = () => {},
  ) {
    this.ns = new BridgeNamespace(m);
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = createServer((sock) => this.accept(sock));
      s.once("error", reject);
      s.listen(path, () => {
        this.server = s;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    for (const c of this.clients) c.sock.destroy();
    return new Promise((resolve) => {
      if (this.server === null) resolve();
      else this.server.close(() => resolve());
    });
  }

  /** Connections still open. */
  get connections(): number {
    return this.clients.size;
  }

  /** Resolves when no connection is open. */
  idle(): Promise<void> {
    if (this.clients.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Exit every model process still alive (forks that never joined included). */
  shutdown(): void {
    for (const c of this.clients) this.drop(c);
    for (const [t, p] of this.forks) {
      p.proc.exit();
      this.forks.delete(t);
    }
  }

  private accept(sock: Socket): void {
    const c = new Client(sock);
    this.clients.add(c);
    sock.setNoDelay?.(true);
    sock.on("data", (d: Buffer) => this.onData(c, d));
    sock.on("error", () => {});
    sock.on("close", () => {
      this.deactivate(c);
      this.drop(c);
      c.chan?.close();
      c.chan = null;
      this.clients.delete(c);
      this.reapForks();
      if (this.clients.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private onData(c: Client, d: Buffer): void {
    c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d]);
    for (;;) {
      const r = decodeRequest(c.buf);
      if (r === null) return;
      if (typeof r === "string") {
        this.malformed++;
        this.log(`bridge: pid ${c.pid}: ${r}; connection closed`);
        c.buf = Buffer.alloc(0);
        c.sock.destroy();
        return;
      }
      c.buf = c.buf.subarray(r.size);
      if (r.req.op === OP.NUDGE) {
        this.nudge(c, r.req);
        continue;
      }
      this.stats.socketRequests++;
      const rep = this.handle(c, r.req);
      if (!c.sock.destroyed) c.sock.write(rep);
      this.afterRequest?.();
      if (c.chan !== null && this.spinWindow > 0) this.activate(c);
    }
  }

  /** The shim posted on its channel, or went to sleep on it, while the server was not polling. */
  private nudge(c: Client, _q: Request): void {
    const ch = c.chan;
    if (ch === null) return;
    let spin = false;
    if (this.polling) {
      if (!this.spinning && this.spinWindow === 0 && ++this.sinceProbe >= PROBE_EVERY) {
        this.sinceProbe = 0;
        this.spinWindow = SPIN_MIN_MS;
      }
      spin = this.spinWindow > 0;
    }
    // (polling from here on: the shim's next request, posted as soon as it sees this reply, needs no nudge)
    if (spin) ch.setPolling(true);
    this.serveChannel(c, ch);
    if (spin) this.activate(c);
  }

  private static readonly WAKE = encodeReply(0, REP_WAKE);

  /** Poll c's channel from now on (and start the loop). */
  private activate(c: Client): void {
    if (!this.polling || c.chan === null) return;
    c.chan.setPolling(true);
    c.lastActive = performance.now();
    if (!this.active.includes(c)) this.active.push(c);
    if (this.spinning) return;
    this.spinning = true;
    this.stats.spins++;
    this.episodeHits = 0;
    this.spin();
  }

  /** Stop polling c's channel (its connection went). */
  private deactivate(c: Client): void {
    const i = this.active.indexOf(c);
    if (i >= 0) this.active.splice(i, 1);
  }

  /** Requests the loop found by polling since it started (the window's feedback). */
  private episodeHits = 0;

  /**
   * Poll the active channels round-robin; a channel with no request for
   * the window leaves the set (its shim is told, then it is looked at once
   * more). Until the set is empty, or the slice is over (then again after
   * a turn of the event loop).
   */
  private readonly spin = (): void => {
    const t0 = performance.now();
    let t = t0;
    // (no iterator, and the clock read every 16 rounds: a round that finds nothing is a few loads)
    const act = this.active;
    for (let round = 1; ; round++) {
      for (let i = 0; i < act.length; i++) {
        const c = act[i];
        if (c.chan !== null && this.serveChannel(c, c.chan)) {
          c.lastActive = t = performance.now();
          this.episodeHits++;
        }
      }
      if ((round & 15) !== 0) continue;
      t = performance.now();
      for (let i = act.length - 1; i >= 0; i--) {
        const c = act[i];
        const ch = c.chan;
        if (ch === null) act.splice(i, 1);
        else if (t - c.lastActive > this.spinWindow) {
          // stop polling it: say so, then look once more for a request posted before the shim saw that
          ch.setPolling(false);
          if (this.serveChannel(c, ch)) {
            ch.setPolling(true);
            c.lastActive = performance.now();
            this.episodeHits++;
          } else act.splice(i, 1);
        }
      }
      if (act.length === 0) {
        if (this.episodeHits > 0) this.spinWindow = Math.min(SPIN_MAX_MS, this.spinWindow * 2);
        else this.spinWindow = this.spinWindow / 2 < SPIN_MIN_MS ? 0 : this.spinWindow / 2;
        this.spinning = false;
        return;
      }
      // a long call or a busy program: let the event loop run (connections, socket requests, exits)
      if (t - t0 > SPIN_SLICE_MS) break;
    }
    setImmediate(this.spin);
  };

  /** Answer the request the channel holds, if any: true when there was one. */
  private serveChannel(c: Client, ch: Channel): boolean {
    const q = ch.poll();
    if (q === null) {
      this.wake(c, ch);
      return false;
    }
    if (typeof q === "string") {
      this.malformed++;
      this.log(`bridge: pid ${c.pid}: ${q}; connection closed`);
      ch.close();
      c.chan = null;
      c.sock.destroy();
      return false;
    }
    this.stats.channelRequests++;
    if (ch.shimCpu >= 0 && ch.hasSlept) this.stats.spinningAfterSleep++;
    this.stepAside(ch);
    const r = this.serve(c, q);
    if (!ch.reply(r.ret, r.flags, r.payload, r.irqs)) {
      this.internalErrors.push(`op ${q.op}: ${r.irqs?.length} interrupts do not fit one channel reply`);
      this.log(
        `bridge: pid ${c.pid}: ${r.irqs?.length} interrupts in one call; the channel carried the first ones`,
      );
    }
    this.wake(c, ch);
    this.afterRequest?.();
    return true;
  }

  /** What maps a channel into the server: the native helper, built and loaded once (null: none, or not wanted). */
  private channelMapper(): BridgeNative | null {
    if (!this.mapChannels) return null;
    if (this.native === undefined) this.native = loadBridgeNative();
    return typeof this.native === "string" ? null : this.native;
  }

  /**
   * A shim spinning on its reply on the CPU this server runs on: the
   * scheduler put them together (a wake-up, most often), and each now
   * waits for the other's time slice. The server moves to another CPU,
   * where both can spin; the program's own CPU mask is never touched.
   */
  private stepAside(ch: Channel): void {
    const n = this.native;
    if (ch.shimCpu < 0 || n === undefined || typeof n === "string" || n.getcpu() !== ch.shimCpu) return;
    if (n.stepAside(ch.shimCpu)) this.stats.stepsAside++;
  }

  /** The shim sleeps on a reply already in its channel: wake it (once). */
  private wake(c: Client, ch: Channel): void {
    if (!ch.takeWake() || c.sock.destroyed) return;
    this.stats.wakes++;
    c.sock.write(BridgeServer.WAKE);
  }

  /** One request over the socket: always a reply, never an exception. */
  handle(c: Client, q: Request): Buffer {
    const r = this.serve(c, q);
    return encodeReply(r.ret, r.flags, r.payload, r.irqs);
  }

  /** One request: always an answer, never an exception. */
  private serve(
    c: Client,
    q: Request,
  ): { ret: number | bigint; flags: number; payload?: Uint8Array; irqs?: readonly number[] } {
    ProcMemory.epoch++;
    c.consumed = false;
    c.nextFd = -1;
    let ret: number | bigint;
    let payload: Uint8Array | undefined;
    // every errno is a thrown KernelError inside the model: capturing its stack costs
    // microseconds per failing call on the bridge's hot path (IOMMUFD_SIM_DEBUG keeps stacks)
    const limit = Error.stackTraceLimit;
    if (!this.keepStacks) Error.stackTraceLimit = 0;
    const pre = q.op === OP.IOCTL && (q.flags & REQ_PREFETCH) !== 0 && c.mem !== null;
    if (pre) c.mem!.prefetched(Number(q.b), q.payload);
    try {
      const r = this.dispatch(c, q);
      if (typeof r === "object") {
        ret = r.ret;
        payload = r.payload;
      } else ret = r;
    } catch (e) {
      const msg = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
      this.internalErrors.push(`op ${q.op}: ${msg}`);
      this.log(`bridge: pid ${c.pid}: internal error in op ${q.op}: ${msg.split("\n")[0]}`);
      ret = -5;
    } finally {
      Error.stackTraceLimit = limit;
      if (pre) c.mem?.prefetched(0, null);
    }
    c.nextFd = -1;
    // only an ioctl uses the shim's spare fd (open and dup name the fd they reserved)
    let flags = c.consumed && q.op === OP.IOCTL ? REP_SPARE_USED : 0;
    const mm = c.proc?.task.mm;
    if (mm instanceof ForeignMm && mm.hasAttached()) flags |= REP_HAS_PINS;
    if (q.op === OP.HELLO && c.chan !== null && typeof ret === "number" && ret >= 0) flags |= REP_CHANNEL;
    if (c.irqs.length === 0) return { ret, flags, payload };
    const irqs = c.irqs;
    c.irqs = [];
    return { ret, flags, payload, irqs };
  }

  private dispatch(c: Client, q: Request): number | bigint | { ret: number | bigint; payload: Uint8Array } {
    if (q.op === OP.HELLO) return this.hello(c, q);
    if (q.op === OP.PING) return 0;
    const p = c.proc;
    if (p === null) return -EPERM; // no HELLO yet, or after EXIT
    const path = () => dec.decode(q.payload);
    switch (q.op) {
      case OP.OPEN:
        return this.open(c, p, path(), Number(q.a), q.fd);
      case OP.CLOSE:
        return p.close(q.fd);
      case OP.IOCTL:
        c.nextFd = q.fd2;
        // (the kernel's cmd is 32 bits; no BigInt arithmetic for the usual request that fits)
        return p.ioctl(q.fd, q.a <= 0xffffffffn ? Number(q.a) : Number(q.a & 0xffffffffn), q.b);
      case OP.READ:
      case OP.PREAD:
        return this.read(c, p, q);
      case OP.WRITE:
      case OP.PWRITE:
        return this.write(c, p, q);
      case OP.LSEEK:
        return this.lseek(c, p, q.fd, BigInt.asIntN(64, q.a), Number(q.b));
      case OP.STAT: {
        const s = this.ns.passthrough(path())
          ? PASSTHROUGH
          : this.ns.stat(path(), (Number(q.a) & STAT_NOFOLLOW) === 0);
        return typeof s === "number"
          ? this.pathFail(p, "stat", path(), s)
          : { ret: 0, payload: encodeStat(s) };
      }
      case OP.FSTAT:
        return this.fstat(p, q.fd);
      case OP.READLINK: {
        const t = this.ns.passthrough(path()) ? PASSTHROUGH : this.ns.readlink(path());
        return typeof t === "number"
          ? this.pathFail(p, "readlink", path(), t)
          : { ret: 0, payload: enc.encode(t) };
      }
      case OP.REALPATH: {
        const t = this.ns.passthrough(path()) ? PASSTHROUGH : this.ns.realpath(path());
        return typeof t === "number"
          ? this.pathFail(p, "realpath", path(), t)
          : { ret: 0, payload: enc.encode(t) };
      }
      case OP.READDIR: {
        const l = this.ns.passthrough(path()) ? PASSTHROUGH : this.ns.readdir(path());
        return typeof l === "number"
          ? this.pathFail(p, "opendir", path(), l)
          : { ret: l.length, payload: encodeDir(l) };
      }
      case OP.DUP:
        if (p.task.fds[q.fd] === undefined) return -EBADF;
        c.nextFd = q.fd2;
        return p.dup(q.fd);
      case OP.FORK:
        return this.fork(p);
      case OP.FORK_DONE:
        return this.forkDone(Number(q.a), Number(BigInt.asIntN(64, q.b)));
      case OP.EXIT:
        this.log(`bridge: pid ${c.pid} exited (status ${Number(q.a)})`);
        this.drop(c);
        return 0;
      case OP.DETACH:
        if (p.task.mm instanceof ForeignMm) p.task.mm.detach(q.a, q.b);
        return 0;
      case OP.HUGETLB_FD: {
        const h = hugetlbMemfd(c.pid, q.fd, Number(q.a));
        const what = `memfd_create(${JSON.stringify(path())}, MFD_HUGETLB)`;
        if ("errno" in h) {
          this.log(`[pid ${p.pid}] ${what} = -1 (${h.reason}, errno ${-h.errno})`);
          return h.errno;
        }
        this.hugetlbFiles.set(h.key, h.shift);
        this.log(
          `[pid ${p.pid}] ${what} = ${q.fd} (an ordinary memfd: its pages are 2^${h.shift} byte folios of the model's hugetlb pool)`,
        );
        return 0;
      }
      case OP.CRED:
        return this.setCred(p, q.a, q.b);
      case OP.HUGETLB_MMAP: {
        const attrs = (shift: number, a: string) => {
          const n = this.m.vfs.lookup(`/sys/kernel/mm/hugepages/hugepages-${1 << (shift - 10)}kB/${a}`);
          return n?.type === "attr" ? n.read() : undefined;
        };
        const r = hugetlbMmap(this.hugetlbFiles, attrs, c.pid, q.fd, q.a, q.b);
        if (typeof r === "number") return r;
        this.log(
          `[pid ${p.pid}] mmap(fd ${q.fd}, length 0x${q.a.toString(16)}) = -1 (${r.reason}, errno ${-r.errno})`,
        );
        return r.errno;
      }
      case OP.MMAP:
        return bridgeMmap(p, q);
      case OP.MUNMAP:
        return bridgeMunmap(p, q);
      case OP.MREMAP:
        return bridgeMremap(p, q);
      case OP.MMIO:
        return bridgeMmio(p, q);
      case OP.HUGETLB:
        return bridgeHugetlb(p, q);
      default:
        this.log(`bridge: pid ${c.pid}: unknown request ${q.op}`);
        return -ENOSYS;
    }
  }

  private hello(c: Client, q: Request): number {
    if (c.proc !== null) return -EINVAL;
    const pid = Number(q.a);
    const token = Number(q.b);
    if (!Number.isSafeInteger(pid) || pid <= 0) return -EINVAL;
    let mem: ProcMemory;
    try {
      mem = new ProcMemory(pid);
    } catch (e) {
      this.log(`bridge: pid ${pid}: cannot open /proc/${pid}/mem (${(e as Error).message}); refused`);
      return -EPERM;
    }
    let proc: Process;
    if (token !== 0) {
      const f = this.forks.get(token);
      if (f === undefined || (f.pid !== undefined && f.pid !== pid)) {
        mem.close();
        this.log(`bridge: pid ${pid}: joined with an unknown fork token; refused`);
        return -EPERM;
      }
      this.forks.delete(token);
      proc = f.proc;
      if (proc.task.mm instanceof ForeignMm) proc.task.mm.attach(mem);
    } else {
      const cred = procCred(pid);
      if (cred === undefined) {
        mem.close();
        return -EPERM;
      }
      proc = this.m.spawn({
        uid: cred.uid,
        caps: capNames(cred.capEff),
        rlimitMemlock: cred.rlimitMemlock,
        foreignMemory: mem,
      });
    }
    proc.task.fdAlloc = () => c.takeFd();
    proc.task.fdImport = (fd) => this.importFd(c, fd);
    mem.hugetlbFiles = this.hugetlbFiles;
    c.proc = proc;
    c.mem = mem;
    c.pid = pid;
    if ((q.flags & REQ_CHANNEL) !== 0) {
      const ch = Channel.open(pid, Number(q.c), this.channelMapper());
      if (typeof ch === "string") this.log(`bridge: pid ${pid}: ${ch}; requests come over the socket`);
      else {
        c.chan = ch;
        if (ch.unmapped === null) this.stats.channelsMapped++;
        else if (this.mapChannels && this.stats.channelsUnmapped++ === 0)
          this.log(`bridge: channels are read with pread, not mapped (${ch.unmapped})`);
      }
    }
    this.log(`bridge: pid ${pid} joined as model pid ${proc.pid}${token !== 0 ? " (forked)" : ""}`);
    return process.pid;
  }

  private open(c: Client, p: Process, path: string, flags: number, fd: number): number {
    if (STATUS.test(path)) return this.openStatus(c, p, path, flags, fd);
    if (this.ns.passthrough(path)) return PASSTHROUGH;
    const r = this.ns.resolve(path, (flags & O_NOFOLLOW) === 0);
    if (typeof r === "number") return this.pathFail(p, "open", path, r);
    if (r.synthetic !== undefined) {
      if (r.kind === "dir") return install(c, p, new KFile({ kind: "dir" }, undefined, r.path, flags), fd);
      if (r.synthetic === "pagemap") {
        // only the process's own pagemap: the shim forwards /proc/self and /proc/<its pid>
        const pid = /^\/proc\/(\d+)\//.exec(r.path)?.[1];
        if (pid !== undefined && Number(pid) !== c.pid) return PASSTHROUGH;
        return install(c, p, new KFile(pagemapOps(c.pid, p, c.mem!), undefined, r.path, flags), fd);
      }
      const ops = r.synthetic === "fail-nth" ? this.failNthOps() : this.debugfsOps(r.path);
      return install(c, p, new KFile(ops, undefined, r.path, flags), fd);
    }
    c.nextFd = fd;
    return p.open(r.model, flags & ~O_CLOEXEC);
  }

  /**
   * /proc/self/status or /proc/PID/status of a process of this machine (any
   * client, as ps reads another's): VmLck and VmPin with the model's
   * charges. Any other process's: the real file.
   */
  private openStatus(c: Client, p: Process, path: string, flags: number, fd: number): number {
    if ((flags & 3) !== 0) return PASSTHROUGH; // opened for writing: the real kernel's EACCES
    const pid = /^\/proc\/(\d+)\//.exec(path)?.[1];
    const owner =
      pid === undefined ? c : [...this.clients].find((o) => o.pid === Number(pid) && o.proc !== null);
    if (owner === undefined) return PASSTHROUGH;
    const ops = procStatusOps(owner.pid, () => owner.proc?.task.mm ?? null);
    return install(c, p, new KFile(ops, undefined, path, flags), fd);
  }

  /**
   * The process's capabilities or RLIMIT_MEMLOCK changed after it joined (a
   * libcap drop, setrlimit): the model's cred takes the real ones, as the
   * kernel's checks would see them from now on.
   */
  private setCred(p: Process, capEff: bigint, memlock: bigint): number {
    const cred = p.task.cred;
    const caps = capNames(capEff);
    const limit = memlock; // the shim sends ~0 for RLIM_INFINITY, which is the kernel's all-ones
    const before = [...cred.caps].sort().join(",");
    cred.caps.clear();
    for (const cap of caps) cred.caps.add(cap);
    cred.rlimitMemlock = limit;
    const after = [...cred.caps].sort().join(",");
    this.log(
      `[pid ${p.pid}] credentials changed: caps ${before === after ? "unchanged" : `{${after}}`}, RLIMIT_MEMLOCK ${limit === RLIM_INFINITY ? "unlimited" : limit}`,
    );
    return 0;
  }

  /** A path call the bridge answers itself failed: the trace gets the reason. */
  private pathFail(p: Process, call: string, path: string, errno: number): number {
    if (errno === PASSTHROUGH) return errno;
    const why = errno === -2 ? "no such file in the model's namespace" : `path resolution failed`;
    this.log(`[pid ${p.pid}] ${call}(${JSON.stringify(path)}) = -1 (${why}, errno ${-errno})`);
    return errno;
  }

  private read(c: Client, p: Process, q: Request): number {
    const len = Number(q.a);
    const f = p.task.fds[q.fd];
    if (f === undefined) return -EBADF;
    let r: Uint8Array | number;
    if (q.op === OP.READ && POSITIONED.has(f.kind)) {
      if (f.kind === "dir") return -21; // EISDIR
      const pos = c.pos.get(f) ?? 0;
      r = p.pread(q.fd, len, BigInt(pos));
      if (typeof r !== "number") c.pos.set(f, pos + r.length);
    } else if (q.op === OP.READ) r = p.read(q.fd, len);
    else r = p.pread(q.fd, len, BigInt.asIntN(64, q.b));
    if (typeof r === "number") return r;
    if (r.length > 0 && c.mem!.write(Number(q.c), r) !== 0) {
      this.log(
        `[pid ${p.pid}] read(${q.fd}) = -1 EFAULT (the buffer at 0x${q.c.toString(16)} is not writable)`,
      );
      return -EFAULT;
    }
    return r.length;
  }

  private write(c: Client, p: Process, q: Request): number {
    const len = Number(q.a);
    const bytes = len === 0 ? new Uint8Array(0) : c.mem!.read(Number(q.c), len);
    if (typeof bytes === "number") {
      this.log(
        `[pid ${p.pid}] write(${q.fd}) = -1 EFAULT (the buffer at 0x${q.c.toString(16)} is not readable)`,
      );
      return -EFAULT;
    }
    const f = p.task.fds[q.fd];
    // sysfs-like files the bridge serves take write(2) as a write at their position
    if (q.op === OP.WRITE && f !== undefined && f.ops.write === undefined && POSITIONED.has(f.kind)) {
      return p.pwrite(q.fd, bytes, BigInt(c.pos.get(f) ?? 0));
    }
    if (q.op === OP.WRITE) return p.write(q.fd, bytes);
    return p.pwrite(q.fd, bytes, BigInt.asIntN(64, q.b));
  }

  private lseek(c: Client, p: Process, fd: number, off: bigint, whence: number): number {
    const f = p.task.fds[fd];
    if (f === undefined) return -EBADF;
    if (!POSITIONED.has(f.kind)) return f.kind.startsWith("vfio") ? 0 : -ESPIPE;
    const cur = c.pos.get(f) ?? 0;
    let size = 0;
    if (whence === 2) {
      const all = p.pread(fd, 1 << 16, 0n);
      size = typeof all === "number" ? 0 : all.length;
    }
    const base = whence === 0 ? 0 : whence === 1 ? cur : whence === 2 ? size : -1;
    if (base < 0) return -EINVAL;
    const n = base + Number(off);
    if (n < 0) return -EINVAL;
    c.pos.set(f, n);
    return n;
  }

  private fstat(p: Process, fd: number): number | { ret: number; payload: Uint8Array } {
    const f = p.task.fds[fd];
    if (f === undefined) return -EBADF;
    const r = this.ns.resolve(f.path, true);
    let s: StatInfo;
    if (typeof r === "number") {
      // anonymous-inode files (a device fd from GET_DEVICE_FD, an access, a fault queue)
      s = { mode: 0o600, nlink: 1, rdev: 0n, size: 0n, ino: this.anonIno(f), dev: 14n };
    } else s = this.ns.statOf(r);
    return { ret: 0, payload: encodeStat(s) };
  }

  /** A stable inode number for an anonymous-inode file, per server. */
  private anonIno(f: KFile): bigint {
    let n = this.anonInodes.get(f);
    if (n === undefined) {
      n = ++this.nextAnonIno;
      this.anonInodes.set(f, n);
    }
    return BigInt(n);
  }

  private fork(p: Process): number {
    const child = p.fork();
    if (typeof child === "number") return child;
    let token = 0;
    while (token === 0 || this.forks.has(token)) token = randomInt(1, 2 ** 47);
    this.forks.set(token, { proc: child });
    return token;
  }

  private forkDone(token: number, pid: number): number {
    const f = this.forks.get(token);
    if (f === undefined) return 0; // the child joined already
    if (pid <= 0) {
      f.proc.exit();
      this.forks.delete(token);
      return 0;
    }
    f.pid = pid;
    return 0;
  }

  /** Forked children that never joined and whose real process is gone. */
  private reapForks(): void {
    for (const [t, f] of this.forks) {
      if (f.pid !== undefined && !existsSync(`/proc/${f.pid}`)) {
        f.proc.exit();
        this.forks.delete(t);
      }
    }
  }

  /**
   * A real fd of the process the model has no file for: its shmem file (a
   * memfd, a tmpfs file, for IOMMU_IOAS_MAP_FILE) becomes a ForeignMemFile
   * over the same file, whose pages are those of the program's MAP_SHARED
   * mappings of it.
   */
  private importFd(c: Client, fd: number): KFile | undefined {
    const r = openProcShmemFile(c.pid, fd);
    if (r === undefined) return undefined;
    // a real eventfd (SET_IRQS): the model's signals become writes to it by the shim
    if ("other" in r && r.other === EVENTFD_LINK)
      return realEventFd((n) => {
        for (let i = 0; i < n; i++) c.irqs.push(fd);
      });
    // another real file (a pipe, a socket): the model sees a file it has no driver for
    if ("other" in r) return new KFile({ kind: "file" }, undefined, r.other, 0);
    const had = c.memfds.get(fd);
    if (had !== undefined && had.mf.key === r.key && !had.mf.released) {
      r.file.close();
      return had.kfile;
    }
    if (had !== undefined) had.mf.put();
    const mf = this.m.newForeignMemFile(r.name, r.file, r.key);
    const kfile = new KFile({ kind: "memfd" }, mf, r.path, 2);
    c.memfds.set(fd, { kfile, mf });
    return kfile;
  }

  /** The process is gone (EXIT, or its connection closed): release everything it held. */
  private drop(c: Client): void {
    const p = c.proc;
    if (p === null) return;
    ProcMemory.epoch++;
    c.proc = null;
    const files = p.task.openFileCount();
    const pinned = p.task.mm instanceof ForeignMm ? p.task.mm.pinnedPagesHere() : 0;
    if (files > 0 || pinned > 0) this.leftAtExit.push({ pid: c.pid, files, pinnedPages: pinned });
    p.exit(); // the mm keeps a copy of each pinned page while the memory is still there
    for (const m of c.memfds.values()) m.mf.put();
    c.memfds.clear();
    if (c.mem !== null) {
      this.stats.memReads += c.mem.counts.preads;
      this.stats.memReadsPrefetched += c.mem.counts.prefetched;
      this.stats.mapsReads += c.mem.counts.mapsReads;
    }
    c.mem?.close();
    c.mem = null;
  }

  private failNthOps(): FileOps {
    const faults = this.m.faults;
    const m = this.m;
    return {
      kind: "fail-nth",
      pread(_f, _t, len, off) {
        const b = enc.encode(`${faults.remaining()}\n`);
        const o = Number(off > BigInt(b.length) ? BigInt(b.length) : off);
        return b.subarray(o, o + len);
      },
      pwrite(_f, _t, bytes) {
        const n = Number.parseInt(dec.decode(bytes).trim(), 10);
        if (!Number.isInteger(n) || n < 0) fail(EINVAL, "fail-nth takes a non-negative number");
        m.debug.failNth(n);
        return bytes.length;
      },
    };
  }

  private debugfsOps(path: string): FileOps {
    const store = this.ns.debugfs;
    return {
      kind: "debugfs",
      pread(_f, _t, len, off) {
        const b = enc.encode(store.get(path) ?? "0\n");
        const o = Number(off > BigInt(b.length) ? BigInt(b.length) : off);
        return b.subarray(o, o + len);
      },
      pwrite(_f, _t, bytes) {
        store.set(path, `${dec.decode(bytes).trim()}\n`);
        return bytes.length;
      },
    };
  }
}

/** Put a file the bridge made at the reserved fd. */
function install(c: Client, p: Process, f: KFile, fd: number): number {
  if (fd < 0) return -EMFILE;
  c.nextFd = fd;
  try {
    return p.task.fdInstall(f);
  } catch (e) {
    if (e instanceof KernelError) return -e.errno;
    throw e;
  }
}

function encodeStat(s: StatInfo): Uint8Array {
  const b = Buffer.alloc(STAT_SIZE);
  b.writeUInt32LE(s.mode, 0);
  b.writeUInt32LE(s.nlink, 4);
  b.writeBigUInt64LE(s.rdev, 8);
  b.writeBigUInt64LE(s.size, 16);
  b.writeBigUInt64LE(s.ino, 24);
  b.writeBigUInt64LE(s.dev, 32);
  return b;
}

const DT: Record<NodeKind, number> = { dir: 4, file: 8, link: 10, chr: 2 };

function encodeDir(l: { name: string; kind: NodeKind }[]): Uint8Array {
  const parts: number[] = [];
  for (const e of l) {
    const n = enc.encode(e.name).subarray(0, 255);
    parts.push(DT[e.kind], n.length, ...n);
  }
  return Uint8Array.from(parts);
}
