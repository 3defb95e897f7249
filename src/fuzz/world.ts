// The two sides of model-based fuzzing: the real machine, driven only
// through the syscall contract, and a small reference model of the state
// that matters (open fds, iommufd contexts and their IOAS ids, the IOVA
// ranges mapped in each IOAS, device bindings and attachments). Commands
// (commands.ts) run on both and compare.
import { Machine, type Process, uapi } from "../index.js";

export const BDFS = ["0000:00:04.0", "0000:00:05.0"];
export const MAX_PROCS = 3;
/** Valid fixed IOVAs sit on this grid, inside every IOMMU's aperture and clear of reserved ranges. */
export const IOVA_BASE = 0x1000000n;
export const IOVA_SLOT = 0x4000n;
export const IOVA_SLOTS = 64;
export const PAGE = 4096n;

export const PROT_R = 1;
export const PROT_W = 2;

export interface MMap {
  iova: bigint;
  len: bigint;
  prot: number;
  va: bigint;
}

export interface MIoas {
  maps: MMap[];
}

/** An iommufd context (lives while its fd is open or a device bound to it is). */
export interface MCtx {
  key: number;
  proc: number;
  fdOpen: boolean;
  ioas: Map<number, MIoas>;
  /** Every object id the context holds and its kind (auto HWPTs included). */
  objs: Map<number, "IOAS" | "DEVICE" | "HWPT">;
}

export interface MDev {
  bdf: string;
  bound?: { proc: number; fd: number; ctx: number; devid: number };
  attached?: { ioas: number; hwpt: number };
}

export type MFd =
  | { kind: "iommufd"; ctx: number }
  | { kind: "dev"; dev: number }
  /** An iommufd for random, unchecked ioctls: its state is not modelled. */
  | { kind: "chaos" };

export interface MProc {
  alive: boolean;
  fds: Map<number, MFd>;
  /** Live anonymous buffers the process mapped (whole mappings). */
  bufs: { va: bigint; len: bigint }[];
}

export interface Model {
  procs: MProc[];
  ctxs: Map<number, MCtx>;
  devs: MDev[];
  nextCtx: number;
  steps: number;
  /** Outcomes seen, by label (coverage of the interesting paths). */
  seen: Record<string, number>;
}

export function note(m: Model, label: string): void {
  m.seen[label] = (m.seen[label] ?? 0) + 1;
}

export interface Real {
  m: Machine;
  procs: Process[];
  /** Per process: a faulted-in page for ioctl structs. */
  argVa: bigint[];
  /** Counters after boot, before any process. */
  baseline: Record<string, number>;
  /** BAR0 and config region offsets of each device fd (filled on bind). */
  regions: Map<string, { cfg: bigint; bar0: bigint }>;
}

export function newWorld(seed: number): { model: Model; real: Real } {
  const m = new Machine({
    iommu: "amd",
    memoryBytes: 512n << 20n,
    seed,
    pci: BDFS.map((bdf) => ({ bdf, kind: "memcpy" as const })),
  });
  for (const bdf of BDFS) if (m.bindDriver(bdf, "vfio-pci") !== 0) throw new Error(`cannot bind ${bdf}`);
  const baseline = m.debug.counters();
  return {
    model: { procs: [], ctxs: new Map(), devs: BDFS.map((bdf) => ({ bdf })), nextCtx: 1, steps: 0, seen: {} },
    real: { m, procs: [], argVa: [], baseline, regions: new Map() },
  };
}

/** The lowest fd number free in the model's table (what open() must return). */
export function lowestFreeFd(p: MProc, reserved: Set<number>): number {
  let fd = 0;
  while (p.fds.has(fd) || reserved.has(fd)) fd++;
  return fd;
}

export function overlaps(a: bigint, alen: bigint, b: bigint, blen: bigint): boolean {
  return a < b + blen && b < a + alen;
}

/** Is [va, va+len) covered by live buffers of the process (adjacent mappings join)? */
export function backed(p: MProc | undefined, va: bigint, len: bigint): boolean {
  if (p === undefined || !p.alive) return false;
  let at = va;
  const end = va + len;
  for (;;) {
    const b = p.bufs.find((x) => at >= x.va && at < x.va + x.len);
    if (b === undefined) return false;
    at = b.va + b.len;
    if (at >= end) return true;
  }
}

export function ioasHasDomain(model: Model, ctx: number, ioas: number): boolean {
  return model.devs.some((d) => d.bound?.ctx === ctx && d.attached?.ioas === ioas);
}

// --- syscalls through the contract ------------------------------------------

export interface Ret {
  rc: number;
  out: uapi.StructValues;
}

/** ioctl with the struct in the process's argument page; `size` may differ from the struct's. */
export function sioctl(
  real: Real,
  proc: number,
  fd: number,
  req: number,
  def: uapi.StructDef,
  v: uapi.StructInput,
  sizeField: "size" | "argsz" = "size",
  size = def.size,
): Ret {
  const p = real.procs[proc];
  const va = real.argVa[proc];
  const bytes = uapi.encode(def, { [sizeField]: size, ...v }, Math.max(size, def.size, 4));
  if (p.writeMemory(va, bytes) !== 0) throw new Error("argument page write failed");
  const rc = p.ioctl(fd, req, va);
  const back = p.readMemory(va, bytes.length);
  if (typeof back === "number") throw new Error("argument page read failed");
  return { rc, out: uapi.decode(def, back) };
}

export function rawIoctl(real: Real, proc: number, fd: number, req: number, bytes: Uint8Array): number {
  const p = real.procs[proc];
  const va = real.argVa[proc];
  if (p.writeMemory(va, bytes.subarray(0, 8192)) !== 0) throw new Error("argument page write failed");
  return p.ioctl(fd, req, va);
}

export function le(v: bigint | number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = BigInt(v);
  for (let i = 0; i < n; i++) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return b;
}
