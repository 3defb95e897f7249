// Syscalls the way a C program makes them: the struct lives in the
// process's own (already faulted-in) memory and the ioctl gets a pointer, so
// nothing but the system call itself runs while fail_nth is armed.
import { Machine, type MachineOptions } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { errnoName } from "../../src/uapi/errno.js";
import {
  decode,
  encode,
  type StructDef,
  type StructInput,
  type StructValues,
} from "../../src/uapi/struct.js";

export const PROT_RW = 3;
export const MAP_PRIVATE_ANON = 0x22;
export const MAP_SHARED = 0x01;

/** Bytes of struct scratch each process keeps mapped and faulted in. */
const ARG_BYTES = 8192;

const argPage = new WeakMap<Process, bigint>();

/** A page of the process's memory for ioctl structs, faulted in up front. */
export function argArea(p: Process): bigint {
  let va = argPage.get(p);
  if (va !== undefined) return va;
  va = p.mmap(0n, BigInt(ARG_BYTES), PROT_RW, MAP_PRIVATE_ANON);
  if (va < 0n) throw new Error(`mmap of the argument area failed: ${va}`);
  if (p.writeMemory(va, new Uint8Array(ARG_BYTES)) !== 0)
    throw new Error("cannot fault in the argument area");
  argPage.set(p, va);
  return va;
}

export interface Ret {
  rc: number;
  out: StructValues;
}

/** ioctl(fd, req, &struct): rc and the struct as the kernel left it. */
export function sioctl(
  p: Process,
  fd: number,
  req: number,
  def: StructDef,
  v: StructInput,
  size = def.size,
): Ret {
  const va = argArea(p);
  const bytes = encode(def, { size, ...v }, Math.max(size, 4));
  if (p.writeMemory(va, bytes) !== 0) throw new Error("argument area write failed");
  const rc = p.ioctl(fd, req, va);
  const back = p.readMemory(va, bytes.length);
  if (typeof back === "number") throw new Error("argument area read failed");
  return { rc, out: decode(def, back) };
}

/** Same, for VFIO structs whose first field is argsz. */
export function vioctl(
  p: Process,
  fd: number,
  req: number,
  def: StructDef,
  v: StructInput,
  size = def.size,
): Ret {
  const va = argArea(p);
  const bytes = encode(def, { argsz: size, ...v }, size);
  if (p.writeMemory(va, bytes) !== 0) throw new Error("argument area write failed");
  const rc = p.ioctl(fd, req, va);
  const back = p.readMemory(va, bytes.length);
  if (typeof back === "number") throw new Error("argument area read failed");
  return { rc, out: decode(def, back) };
}

export function must(p: Process, rc: number | bigint, what: string): number {
  if (Number(rc) < 0) {
    throw new Error(`${what}: ${errnoName(-Number(rc))} (${p.lastError()?.reason ?? "?"})`);
  }
  return Number(rc);
}

export function newMachine(opts: MachineOptions = {}): Machine {
  return new Machine({ iommu: "amd", memoryBytes: 1n << 30n, ...opts });
}
