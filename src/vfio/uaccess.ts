import type { Task } from "../kernel/task.js";
import { EINVAL, fail } from "../uapi/errno.js";
import { type StructDef, type StructView, structView } from "../uapi/struct.js";

/**
 * The VFIO handler prologue (uapi.md §4.1): copy `minsz` bytes in, then
 * `argsz < minsz` is EINVAL. Returns the bytes (a buffer of at least
 * `size` bytes, zero past minsz) and a little-endian view.
 */
export function vfioCopyIn(
  task: Task,
  arg: bigint,
  minsz: number,
  what: string,
  size = minsz,
): { buf: Uint8Array; dv: DataView; argsz: number } {
  const head = task.copyFromUser(arg, minsz);
  const buf = new Uint8Array(Math.max(size, minsz));
  buf.set(head);
  const dv = new DataView(buf.buffer);
  const argsz = dv.getUint32(0, true);
  if (argsz < minsz) fail(EINVAL, `${what}: argsz ${argsz} is below minsz ${minsz}`);
  return { buf, dv, argsz };
}

/**
 * vfioCopyIn for a struct table: `minsz` bytes in (EINVAL below it), in a
 * buffer of at least sizeof the struct (zero past minsz, as the kernel
 * never reads there), and a typed view of its fields.
 */
export function vfioCopyInStruct<D extends StructDef>(
  task: Task,
  arg: bigint,
  def: D,
  minsz: number,
  what: string,
): { s: StructView<D>; buf: Uint8Array; argsz: number } {
  const { buf, argsz } = vfioCopyIn(task, arg, minsz, what, def.size);
  return { s: structView(def, buf), buf, argsz };
}

/** A zeroed struct to fill in and copy out, and its typed view. */
export function vfioStructOut<D extends StructDef>(def: D): { s: StructView<D>; buf: Uint8Array } {
  const buf = new Uint8Array(def.size);
  return { s: structView(def, buf), buf };
}

/** The `__s32` a pointer argument names (GROUP_SET_CONTAINER's container fd). */
export function getUserS32(task: Task, arg: bigint): number {
  const b = task.copyFromUser(arg, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
}

/** The first `count` elements of a `__s32` array payload (SET_IRQS data[], HOT_RESET group_fds[]). */
export function s32Array(bytes: Uint8Array, count: number): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: count }, (_, i) => dv.getInt32(4 * i, true));
}

/** A `__u32` as the 4 little-endian bytes copied to user space. */
export function u32Bytes(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

/** Lay out a VFIO capability chain after a fixed struct (vfio_info_cap_add + vfio_info_cap_shift). */
export interface InfoCap {
  id: number;
  version: number;
  /** Bytes after the 8-byte header. */
  payload: Uint8Array;
}

/**
 * The INFO-ioctl capability rule: with caps, set the CAPS flag; when argsz
 * is too small report the size needed in argsz (no error, cap_offset 0),
 * else write the chain right after the fixed struct and point cap_offset
 * at it. Records are padded to 8 bytes (current kernels align each cap to
 * u64). Returns the new argsz and cap_offset.
 */
export function writeCaps(
  task: Task,
  arg: bigint,
  argsz: number,
  fixedSize: number,
  caps: readonly InfoCap[],
): { argsz: number; capOffset: number } {
  if (caps.length === 0) return { argsz, capOffset: 0 };
  const sizes = caps.map((c) => Math.ceil((8 + c.payload.length) / 8) * 8);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (argsz < fixedSize + total) return { argsz: fixedSize + total, capOffset: 0 };
  const bytes = new Uint8Array(total);
  const dv = new DataView(bytes.buffer);
  let at = 0;
  caps.forEach((c, i) => {
    dv.setUint16(at, c.id, true);
    dv.setUint16(at + 2, c.version, true);
    dv.setUint32(at + 4, i + 1 < caps.length ? fixedSize + at + sizes[i] : 0, true);
    bytes.set(c.payload, at + 8);
    at += sizes[i];
  });
  task.copyToUser(arg + BigInt(fixedSize), bytes);
  return { argsz, capOffset: fixedSize };
}
