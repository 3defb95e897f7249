/**
 * The bridge's wire protocol (mirrors src/bridge/shim/bridge-proto.h; a
 * test compares the two). Little-endian fixed headers; a request is
 * REQ_SIZE bytes then a payload (a path), a reply REP_SIZE bytes then a
 * payload.
 */
export const OP = {
  HELLO: 1,
  OPEN: 2,
  CLOSE: 3,
  IOCTL: 4,
  READ: 5,
  WRITE: 6,
  PREAD: 7,
  PWRITE: 8,
  STAT: 9,
  FSTAT: 10,
  READLINK: 11,
  READDIR: 12,
  REALPATH: 13,
  DUP: 14,
  FORK: 15,
  FORK_DONE: 16,
  EXIT: 17,
  DETACH: 18,
  LSEEK: 19,
  MMAP: 20,
  PING: 21,
  MUNMAP: 22,
  MMIO: 23,
  MREMAP: 24,
  HUGETLB: 25,
  HUGETLB_FD: 30,
  HUGETLB_MMAP: 31,
  CRED: 32,
  NUDGE: 40,
} as const;

export const STAT_NOFOLLOW = 1;
export const REP_SPARE_USED = 1;
export const REP_HAS_PINS = 2;
/** The reply's payload starts with u32 n and n i32 eventfds the shim writes 1 to (interrupts). */
export const REP_IRQS = 4;
export const MMIO_WRITE = 1;
/** OP.HUGETLB: the range leaves the process (flags). */
export const HUGETLB_UNMAP = 1;
/** OP.HUGETLB: MAP_NORESERVE (in c, beside the page shift). */
export const HUGETLB_NORESERVE = 256;
/** ret of OP.MMIO when the kernel would send SIGBUS (the device refused the access: -EIO). */
export const MMIO_SIGBUS = -5;
/** HELLO's reply: the server polls the channel the request named. */
export const REP_CHANNEL = 8;
/** Not a reply: the server wakes a shim that went to sleep on the channel. */
export const REP_WAKE = 16;
/** IOCTL: the payload is the memory at b when the call was made (as much of it as the shim could read). */
export const REQ_PREFETCH = 1;
/** HELLO: c is the fd of the shim's channel (a memfd). */
export const REQ_CHANNEL = 2;

/**
 * The request channel (a memfd of CHAN_SIZE bytes the shim maps; see
 * channel.ts): u32 seq at 0, the u32 seq the shim sleeps on at CHAN_SLEEP, struct br_req at CHAN_REQ, u32 seq copy at
 * CHAN_REQ_SEQ2, the CPU the shim posted from at CHAN_CPU, payload at CHAN_REQ_PAYLOAD; the server's polling flag at
 * CHAN_SRV; u32 seq, u32 0, struct br_rep, u32 seq copy at CHAN_REP, the
 * reply payload at CHAN_REP_PAYLOAD.
 */
export const CHAN_NAME = "iommufd-sim-chan";
export const CHAN_SIZE = 16384;
export const CHAN_SLEEP = 4;
export const CHAN_REQ = 8;
export const CHAN_REQ_SEQ2 = 48;
export const CHAN_CPU = 52;
export const CHAN_REQ_PAYLOAD = 64;
export const CHAN_REQ_MAX = 8128;
export const CHAN_SRV = 8192;
export const CHAN_REP = 8256;
export const CHAN_REP_PAYLOAD = 8320;
export const CHAN_REP_MAX = 8064;
/** ret of a path call the model does not answer: the shim does the real call. */
export const PASSTHROUGH = -100000;

/** struct br_req: u32 len, u16 op, u16 flags, i32 fd, i32 fd2, u64 a, u64 b, u64 c. */
export const REQ_SIZE = 40;
/** struct br_rep: u32 len, u32 flags, i64 ret. */
export const REP_SIZE = 16;
/** struct br_stat: u32 mode, u32 nlink, u64 rdev, u64 size, u64 ino, u64 dev. */
export const STAT_SIZE = 40;
export const MAX_PAYLOAD = 1 << 20;

export interface Request {
  op: number;
  flags: number;
  fd: number;
  fd2: number;
  a: bigint;
  b: bigint;
  c: bigint;
  payload: Uint8Array;
}

/** Decode the request at the start of buf: the request and its length, or null when incomplete, or a string when malformed. */
export function decodeRequest(buf: Buffer): { req: Request; size: number } | null | string {
  if (buf.length < 4) return null;
  const len = buf.readUInt32LE(0);
  if (len < REQ_SIZE || len > REQ_SIZE + MAX_PAYLOAD) return `bad request length ${len}`;
  if (buf.length < len) return null;
  return {
    size: len,
    req: {
      op: buf.readUInt16LE(4),
      flags: buf.readUInt16LE(6),
      fd: buf.readInt32LE(8),
      fd2: buf.readInt32LE(12),
      a: buf.readBigUInt64LE(16),
      b: buf.readBigUInt64LE(24),
      c: buf.readBigUInt64LE(32),
      payload: buf.subarray(REQ_SIZE, len),
    },
  };
}

/**
 * A reply; `irqs` (eventfd numbers the shim must signal before it returns)
 * go first in the payload with REP_IRQS set.
 */
export function encodeReply(
  ret: number | bigint,
  flags: number,
  payload?: Uint8Array,
  irqs?: readonly number[],
): Buffer {
  const n = payload?.length ?? 0;
  const k = irqs !== undefined && irqs.length > 0 ? 4 + 4 * irqs.length : 0;
  const out = Buffer.allocUnsafe(REP_SIZE + k + n);
  out.writeUInt32LE(REP_SIZE + k + n, 0);
  out.writeUInt32LE(k > 0 ? flags | REP_IRQS : flags, 4);
  out.writeBigInt64LE(BigInt(ret), 8);
  if (k > 0) {
    out.writeUInt32LE(irqs!.length, REP_SIZE);
    for (let i = 0; i < irqs!.length; i++) out.writeInt32LE(irqs![i], REP_SIZE + 4 + 4 * i);
  }
  if (n > 0) out.set(payload!, REP_SIZE + k);
  return out;
}

export function encodeRequest(r: Partial<Request> & { op: number }): Buffer {
  const payload = r.payload ?? new Uint8Array(0);
  const out = Buffer.alloc(REQ_SIZE + payload.length);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt16LE(r.op, 4);
  out.writeUInt16LE(r.flags ?? 0, 6);
  out.writeInt32LE(r.fd ?? 0, 8);
  out.writeInt32LE(r.fd2 ?? 0, 12);
  out.writeBigUInt64LE(r.a ?? 0n, 16);
  out.writeBigUInt64LE(r.b ?? 0n, 24);
  out.writeBigUInt64LE(r.c ?? 0n, 32);
  out.set(payload, REQ_SIZE);
  return out;
}
