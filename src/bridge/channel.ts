import { closeSync, openSync, readlinkSync, readSync, statfsSync, writeSync } from "node:fs";
import {
  CHAN_CPU,
  CHAN_NAME,
  CHAN_REP,
  CHAN_REP_MAX,
  CHAN_REP_PAYLOAD,
  CHAN_REQ,
  CHAN_REQ_MAX,
  CHAN_REQ_PAYLOAD,
  CHAN_REQ_SEQ2,
  CHAN_SIZE,
  CHAN_SLEEP,
  CHAN_SRV,
  REP_IRQS,
  REQ_SIZE,
  type Request,
} from "./protocol.js";
import type { BridgeNative } from "./shim-build.js";

/** A memfd's file system (shmem); a hugetlb memfd's is not, and cannot be written with pwrite. */
export const TMPFS_MAGIC = 0x01021994;

/** Bytes one poll reads: the request line and the start of its payload (an ioctl's prefetched struct fits). */
const HEAD = CHAN_REQ_PAYLOAD + 448;

/**
 * A process's request channel: a memfd the shim maps shared and the server
 * opens through /proc/PID/fd/N (bridge-proto.h has the layout). The shim
 * posts a request and spins on the reply in memory; the server, while it
 * is active, polls the request seq with pread instead of waiting on the
 * socket, so no round trip pays for waking a sleeping thread (a cross-CPU
 * wake-up costs several µs in a VM, more than the model's work). The
 * socket stays for the handshake, the requests too big for the channel,
 * and the nudges that wake whichever side went to sleep.
 *
 * With the server's native helper (shim-build.ts loadBridgeNative) the
 * server maps the memfd too and polls and answers in memory, with no
 * syscall in the round trip; without it, each poll is a pread and each
 * reply a pwrite or two (about 0.6 µs each, plus their binding's cost).
 *
 * Ordering: the shim writes the request, then seq2, then seq; a poll reads
 * seq before the rest (one ascending copy) and takes the request only when
 * both seqs agree. The server writes a reply's payload first and the header
 * (seq, reply, seq2) after it, in a second write when there is a payload.
 */
export class Channel {
  /** The pread path's copy of the channel's head, and its u32 words. */
  private readonly head = Buffer.alloc(HEAD);
  private readonly headWords = new Uint32Array(this.head.buffer, this.head.byteOffset, HEAD >> 2);
  private readonly rep = Buffer.alloc(32);
  private readonly flag = Buffer.alloc(4);
  /** The request's payload, copied out of the channel: its u32 words, and the view last handed out. */
  private readonly scratch = Buffer.alloc(CHAN_REQ_MAX);
  private readonly scratchWords = new Uint32Array(
    this.scratch.buffer,
    this.scratch.byteOffset,
    CHAN_REQ_MAX >> 2,
  );
  private view: Buffer = this.scratch.subarray(0, 0);
  private readonly req: Request = { op: 0, flags: 0, fd: 0, fd2: 0, a: 0n, b: 0n, c: 0n, payload: this.view };
  /** The seq of the last request taken. */
  private seq = 0;
  /** The seq of the last reply written (the request the shim waits on is answered when it matches). */
  repliedSeq = 0;
  /** The seq the shim sleeps on (as of the last poll), and the last seq a wake-up was sent for. */
  private sleepSeq = 0;
  private wokenSeq = 0;
  /** The shim was woken from a sleep on this channel at least once. */
  get hasSlept(): boolean {
    return this.wokenSeq !== 0;
  }
  /** What the server last told the shim about polling (the shim nudges over the socket when it is off). */
  polling = false;

  /** The channel mapped into the server (null: pread and pwrite), and its u32 words. */
  private readonly m: Buffer | null;
  private readonly w: Uint32Array | null;

  private constructor(
    private fd: number,
    map: ArrayBuffer | null,
  ) {
    this.m = map === null ? null : Buffer.from(map);
    this.w = map === null ? null : new Uint32Array(map);
  }

  /**
   * The channel at the process's fd, mapped when native is given and the
   * memfd is sealed at its size (the shim seals it), or a reason it cannot
   * be one; why it is not mapped goes to unmapped.
   */
  static open(pid: number, fd: number, native: BridgeNative | null = null): Channel | string {
    if (!Number.isSafeInteger(fd) || fd < 0) return `bad channel fd ${fd}`;
    const path = `/proc/${pid}/fd/${fd}`;
    let cfd = -1;
    try {
      const target = readlinkSync(path);
      if (!target.startsWith(`/memfd:${CHAN_NAME}`)) return `fd ${fd} is not the shim's channel (${target})`;
      cfd = openSync(path, "r+");
      // (the file opened, not the path: the program may swap its fd in between)
      if (statfsSync(`/proc/self/fd/${cfd}`).type !== TMPFS_MAGIC) {
        closeSync(cfd);
        return `fd ${fd} is not a memfd on shmem (a hugetlb one?)`;
      }
    } catch (e) {
      if (cfd >= 0) closeSync(cfd);
      return `cannot open the channel at ${path} (${(e as Error).message})`;
    }
    let map: ArrayBuffer | null = null;
    let why = "no native helper";
    if (native !== null) {
      try {
        map = native.mapShared(cfd, CHAN_SIZE);
      } catch (e) {
        why = (e as Error).message;
      }
    }
    const ch = new Channel(cfd, map);
    if (map === null) ch.unmapped = why;
    return ch;
  }

  /**
   * The CPU the shim posted the request taken last from, when it spins on
   * the reply in a mapped channel (-1: it sleeps, or unknown).
   */
  shimCpu = -1;

  /** Why the server reads this channel with pread rather than in memory (null: mapped). */
  unmapped: string | null = null;

  /**
   * The request posted since the last one taken, null when there is none,
   * or a string when the shim wrote a malformed one. The request and its
   * payload are the channel's own, filled again by the next poll.
   */
  poll(): Request | null | string {
    if (this.fd < 0) return null;
    let v = this.w;
    let seq: number;
    if (v !== null) {
      // the seq first, then the rest (the shim wrote it before the seq)
      seq = Atomics.load(v, 0);
      this.sleepSeq = v[CHAN_SLEEP >> 2];
      if (seq === this.seq || v[CHAN_REQ_SEQ2 >> 2] !== seq) return null;
      this.shimCpu = this.sleepSeq === seq ? -1 : v[CHAN_CPU >> 2] | 0;
    } else {
      if (this.io(() => readSync(this.fd, this.head, 0, HEAD, 0)) < HEAD) return this.broken;
      v = this.headWords;
      this.sleepSeq = v[CHAN_SLEEP >> 2];
      seq = v[0];
      if (seq === this.seq || v[CHAN_REQ_SEQ2 >> 2] !== seq) return null;
    }
    // each field read once: the program may change its channel while the model reads the request
    const o = CHAN_REQ >> 2;
    const len = v[o];
    if (len < REQ_SIZE || len - REQ_SIZE > CHAN_REQ_MAX) return `bad request length ${len} in the channel`;
    this.seq = seq;
    const plen = len - REQ_SIZE;
    const words = (plen + 3) >> 2;
    const p0 = CHAN_REQ_PAYLOAD >> 2;
    if (p0 + words <= v.length) {
      const sw = this.scratchWords;
      for (let i = 0; i < words; i++) sw[i] = v[p0 + i];
    } else if (this.io(() => readSync(this.fd, this.scratch, 0, plen, CHAN_REQ_PAYLOAD)) !== plen)
      return this.broken ?? "short channel read";
    if (this.view.length !== plen) this.view = this.scratch.subarray(0, plen);
    const opFlags = v[o + 1];
    const q = this.req;
    q.op = opFlags & 0xffff;
    q.flags = opFlags >>> 16;
    q.fd = v[o + 2] | 0;
    q.fd2 = v[o + 3] | 0;
    q.a = u64(v, o + 4);
    q.b = u64(v, o + 6);
    q.c = u64(v, o + 8);
    q.payload = this.view;
    return q;
  }

  /**
   * Answer the request taken last. Interrupts to signal go first in the
   * payload (u32 count, the eventfds), as on the socket. A payload past
   * CHAN_REP_MAX is cut (the shim asks for no more than fits beside 1024
   * interrupts); false when even the interrupts did not fit.
   */
  reply(ret: number | bigint, flags: number, payload?: Uint8Array, irqs?: readonly number[]): boolean {
    if (this.fd < 0) return true;
    let n = payload?.length ?? 0;
    let k = 0;
    let fits = true;
    if (irqs !== undefined && irqs.length > 0) {
      let count = irqs.length;
      if (4 + 4 * count > CHAN_REP_MAX) {
        count = (CHAN_REP_MAX - 4) >> 2;
        fits = false;
      }
      k = 4 + 4 * count;
      const pre = Buffer.allocUnsafe(k);
      pre.writeUInt32LE(count, 0);
      for (let i = 0; i < count; i++) pre.writeInt32LE(irqs[i], 4 + 4 * i);
      this.put(pre, k, CHAN_REP_PAYLOAD);
      flags |= REP_IRQS;
    }
    if (k + n > CHAN_REP_MAX) n = CHAN_REP_MAX - k;
    if (n > 0) this.put(payload!, n, CHAN_REP_PAYLOAD + k);
    // struct br_rep (len, flags, ret) between the seq and its copy
    let lo: number;
    let hi: number;
    if (typeof ret === "bigint") {
      lo = Number(BigInt.asUintN(32, ret));
      hi = Number(BigInt.asIntN(32, ret >> 32n));
    } else {
      lo = ret >>> 0;
      hi = Math.floor(ret / 0x1_0000_0000);
    }
    const w = this.w;
    if (w !== null) {
      // in place, the seq last: the shim takes the reply when both seqs match
      const r = CHAN_REP >> 2;
      w[r + 1] = 0;
      w[r + 2] = 16 + k + n;
      w[r + 3] = flags;
      w[r + 4] = lo;
      w[r + 5] = hi;
      w[r + 6] = this.seq;
      Atomics.store(w, r, this.seq);
    } else {
      const r = this.rep;
      r.writeUInt32LE(this.seq, 0);
      r.writeUInt32LE(0, 4);
      r.writeUInt32LE(16 + k + n, 8);
      r.writeUInt32LE(flags, 12);
      r.writeUInt32LE(lo, 16);
      r.writeInt32LE(hi, 20);
      r.writeUInt32LE(this.seq, 24);
      this.io(() => writeSync(this.fd, r, 0, 28, CHAN_REP));
    }
    this.repliedSeq = this.seq;
    return fits;
  }

  /** The first n bytes of src into the channel at off. */
  private put(src: Uint8Array, n: number, off: number): void {
    if (this.m !== null) this.m.set(n === src.length ? src : src.subarray(0, n), off);
    else this.io(() => writeSync(this.fd, src, 0, n, off));
  }

  /** Why pread or pwrite on the channel failed (the next poll says so, and the connection closes). */
  private broken: string | null = null;

  /** A pread or pwrite of the channel: its count, or -1 when it threw (the channel is then broken). */
  private io(op: () => number): number {
    if (this.broken !== null) return -1;
    try {
      return op();
    } catch (e) {
      this.broken = `channel I/O failed (${(e as Error).message})`;
      return -1;
    }
  }

  /**
   * The shim sleeps on the socket for a reply already written: true once
   * per reply (the caller sends the wake-up).
   */
  takeWake(): boolean {
    if (this.repliedSeq === 0 || this.sleepSeq !== this.repliedSeq || this.wokenSeq === this.repliedSeq)
      return false;
    this.wokenSeq = this.repliedSeq;
    return true;
  }

  /** Tell the shim whether the server polls (it then posts without a nudge). */
  setPolling(on: boolean): void {
    if (this.fd < 0 || this.polling === on) return;
    this.polling = on;
    // (seq_cst when mapped: the server clears the flag, then looks at the seq once more)
    if (this.w !== null) Atomics.store(this.w, CHAN_SRV >> 2, on ? 1 : 0);
    else {
      this.flag.writeUInt32LE(on ? 1 : 0, 0);
      this.io(() => writeSync(this.fd, this.flag, 0, 4, CHAN_SRV));
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** The u64 at word i (little-endian): one BigInt from a number when it fits 53 bits, as most do. */
function u64(v: Uint32Array, i: number): bigint {
  const lo = v[i];
  const hi = v[i + 1];
  return hi < 0x20_0000 ? BigInt(lo + hi * 0x1_0000_0000) : (BigInt(hi) << 32n) | BigInt(lo);
}
