// Declarative struct layouts and their codecs.
//
// One StructDef per C struct of the uapi headers: byte offsets and sizes for
// the 64-bit little-endian ABI (x86-64/arm64). Decoding and encoding go
// through DataView; every value crosses the API as a bigint so 64-bit fields
// are exact. The same table drives the size rules (copy_struct_from_user for
// iommufd, argsz/minsz for VFIO) and the strace-like printer of the trace.

import { E2BIG, EINVAL } from "./errno.js";

export type FieldDir = "in" | "out" | "inout";

/**
 * How a field is read and printed.
 * - u: plain number (decimal unless `fmt: "hex"`)
 * - flags: bit set, printed by name through `flags`
 * - reserved: must be zero; printed only when non-zero
 * - ptr: user pointer (hex)
 * - fd: file descriptor (signed 32-bit)
 * - id: iommufd object ID (decimal)
 * - enum: one of `enumNames`
 */
export type FieldKind = "u" | "flags" | "reserved" | "ptr" | "fd" | "id" | "enum";

export interface FieldDef {
  name: string;
  offset: number;
  /** Size of one element in bytes. */
  size: 1 | 2 | 4 | 8;
  dir: FieldDir;
  kind?: FieldKind;
  /** Short flag names (as printed, e.g. FIXED_IOVA) to bit values. */
  flags?: Record<string, bigint>;
  /** Short enum names to values. */
  enumNames?: Record<string, bigint>;
  /** Two's-complement signed (fd fields are signed even without this). */
  signed?: boolean;
  /** Number format when printing; defaults depend on `kind`. */
  fmt?: "hex" | "dec";
  /** An array of `count` elements (`__u32 idr[6]`); keys are `name[i]`. */
  count?: number;
  /** Shares storage with the field before it (a C union member); not printed by default. */
  alias?: boolean;
}

export interface StructDef {
  name: string;
  /** sizeof(struct) in the kernel. */
  size: number;
  fields: FieldDef[];
}

export type StructValues = Record<string, bigint>;
export type StructInput = Partial<Record<string, bigint | number>>;

/** One scalar slot of a struct: a field, or one element of an array field. */
export interface FieldSlot {
  key: string;
  offset: number;
  size: 1 | 2 | 4 | 8;
  signed: boolean;
  field: FieldDef;
}

const slotCache = new WeakMap<StructDef, { list: FieldSlot[]; byKey: Map<string, FieldSlot> }>();

function slotsOf(def: StructDef): { list: FieldSlot[]; byKey: Map<string, FieldSlot> } {
  let s = slotCache.get(def);
  if (s) return s;
  const list: FieldSlot[] = [];
  const byKey = new Map<string, FieldSlot>();
  for (const field of def.fields) {
    const signed = field.signed === true || field.kind === "fd";
    const n = field.count ?? 1;
    for (let i = 0; i < n; i++) {
      const key = field.count === undefined ? field.name : `${field.name}[${i}]`;
      const slot: FieldSlot = { key, offset: field.offset + i * field.size, size: field.size, signed, field };
      list.push(slot);
      byKey.set(key, slot);
    }
  }
  s = { list, byKey };
  slotCache.set(def, s);
  return s;
}

/** Every scalar slot in declaration order (arrays expanded to `name[i]`). */
export function fieldSlots(def: StructDef): readonly FieldSlot[] {
  return slotsOf(def).list;
}

export function fieldDef(def: StructDef, name: string): FieldDef {
  const f = def.fields.find((x) => x.name === name);
  if (!f) throw new TypeError(`${def.name} has no field ${name}`);
  return f;
}

/** offsetof(struct, field). */
export function offsetOf(def: StructDef, name: string): number {
  return fieldDef(def, name).offset;
}

/** offsetofend(struct, field): the byte just past the field (all of it, for arrays). */
export function offsetOfEnd(def: StructDef, name: string): number {
  const f = fieldDef(def, name);
  return f.offset + f.size * (f.count ?? 1);
}

/**
 * Check a table against C layout rules: fields inside the struct, naturally
 * aligned, in increasing offset order, no overlaps except declared aliases.
 * Returns the problems found (empty when the table is sound).
 */
export function checkStructDef(def: StructDef): string[] {
  const problems: string[] = [];
  let end = 0;
  let prev: FieldDef | undefined;
  const names = new Set<string>();
  for (const f of def.fields) {
    if (names.has(f.name)) problems.push(`${def.name}.${f.name}: duplicate name`);
    names.add(f.name);
    const span = f.size * (f.count ?? 1);
    if (f.offset % f.size !== 0)
      problems.push(`${def.name}.${f.name}: offset ${f.offset} not ${f.size}-aligned`);
    if (f.offset + span > def.size) problems.push(`${def.name}.${f.name}: ends past sizeof ${def.size}`);
    if (f.alias) {
      if (!prev || prev.offset !== f.offset || prev.size * (prev.count ?? 1) !== span) {
        problems.push(`${def.name}.${f.name}: alias does not match the field before it`);
      }
    } else if (f.offset < end) {
      problems.push(`${def.name}.${f.name}: overlaps the field before it`);
    }
    if (f.kind === "flags" && !f.flags)
      problems.push(`${def.name}.${f.name}: flags kind without a flag table`);
    end = Math.max(end, f.offset + span);
    prev = f;
  }
  if (def.size % 1 !== 0 || def.size < end)
    problems.push(`${def.name}: size ${def.size} < end of fields ${end}`);
  return problems;
}

// ---------------------------------------------------------------------------
// Reading and writing

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readSlot(bytes: Uint8Array, dv: DataView, slot: FieldSlot): bigint {
  const { offset, size, signed } = slot;
  if (offset + size <= bytes.length) {
    switch (size) {
      case 1:
        return BigInt(signed ? dv.getInt8(offset) : dv.getUint8(offset));
      case 2:
        return BigInt(signed ? dv.getInt16(offset, true) : dv.getUint16(offset, true));
      case 4:
        return BigInt(signed ? dv.getInt32(offset, true) : dv.getUint32(offset, true));
      default:
        return signed ? dv.getBigInt64(offset, true) : dv.getBigUint64(offset, true);
    }
  }
  // Partly or wholly past the buffer: the missing bytes read as zero.
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) {
    const p = offset + i;
    v = (v << 8n) | BigInt(p < bytes.length ? bytes[p] : 0);
  }
  return signed ? BigInt.asIntN(size * 8, v) : v;
}

function toBits(slot: FieldSlot, structName: string, value: bigint | number): bigint {
  let v: bigint;
  if (typeof value === "number") {
    if (!Number.isInteger(value))
      throw new RangeError(`${structName}.${slot.key}: ${value} is not an integer`);
    v = BigInt(value);
  } else {
    v = value;
  }
  const bits = BigInt(slot.size * 8);
  // Accept anything representable as either the signed or the unsigned type.
  if (v < -(1n << (bits - 1n)) || v >= 1n << bits) {
    throw new RangeError(`${structName}.${slot.key}: ${v} does not fit in ${slot.size} bytes`);
  }
  return BigInt.asUintN(slot.size * 8, v);
}

function writeSlot(bytes: Uint8Array, dv: DataView, slot: FieldSlot, bits: bigint): void {
  const { offset, size } = slot;
  if (offset + size <= bytes.length) {
    switch (size) {
      case 1:
        dv.setUint8(offset, Number(bits));
        return;
      case 2:
        dv.setUint16(offset, Number(bits), true);
        return;
      case 4:
        dv.setUint32(offset, Number(bits), true);
        return;
      default:
        dv.setBigUint64(offset, bits, true);
        return;
    }
  }
  // Truncated at the end of the buffer: write the bytes that fit.
  for (let i = 0; i < size; i++) {
    const p = offset + i;
    if (p < bytes.length) bytes[p] = Number((bits >> BigInt(8 * i)) & 0xffn);
  }
}

function slot(def: StructDef, key: string): FieldSlot {
  const s = slotsOf(def).byKey.get(key);
  if (!s) throw new TypeError(`${def.name} has no field ${key}`);
  return s;
}

/** Every slot of the struct read from `bytes` (little-endian). Slots past the end read as 0. */
export function decode(def: StructDef, bytes: Uint8Array): StructValues {
  const dv = view(bytes);
  const out: StructValues = {};
  for (const s of slotsOf(def).list) out[s.key] = readSlot(bytes, dv, s);
  return out;
}

/**
 * A zeroed buffer of `size` bytes (default sizeof) with the given fields set.
 * Unknown keys throw TypeError; values that fit neither the signed nor the
 * unsigned type throw RangeError. Fields cut off by a short `size` are truncated.
 */
export function encode(def: StructDef, values: StructInput, size = def.size): Uint8Array {
  const bytes = new Uint8Array(size);
  const dv = view(bytes);
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const s = slot(def, key);
    writeSlot(bytes, dv, s, toBits(s, def.name, value));
  }
  return bytes;
}

export function readField(def: StructDef, bytes: Uint8Array, key: string): bigint {
  return readSlot(bytes, view(bytes), slot(def, key));
}

/** Write one field in place (the buffer keeps its length). */
export function writeField(def: StructDef, bytes: Uint8Array, key: string, value: bigint | number): void {
  const s = slot(def, key);
  writeSlot(bytes, view(bytes), s, toBits(s, def.name, value));
}

/** Bits of `value` that the field's flag table does not name (all bits when it has none). */
export function unknownFlags(def: StructDef, field: string, value: bigint | number): bigint {
  const f = fieldDef(def, field);
  let known = 0n;
  for (const bit of Object.values(f.flags ?? {})) known |= bit;
  const v = BigInt.asUintN(f.size * 8, BigInt(value));
  return v & ~known;
}

/** Every bit the field's flag table names, OR-ed together. */
export function knownFlagMask(def: StructDef, field: string): bigint {
  let known = 0n;
  for (const bit of Object.values(fieldDef(def, field).flags ?? {})) known |= bit;
  return known;
}

// ---------------------------------------------------------------------------
// Printing

function hex(v: bigint): string {
  return v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

/** "FIXED_IOVA|WRITEABLE|0x100": names in ascending bit order, leftover bits in hex; "0" when empty. */
export function formatFlags(flags: Record<string, bigint> | undefined, value: bigint): string {
  if (value === 0n) return "0";
  const entries = Object.entries(flags ?? {})
    .filter(([, bit]) => bit !== 0n)
    .sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const parts: string[] = [];
  let rest = value;
  for (const [name, bit] of entries) {
    if ((rest & bit) === bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0n) parts.push(hex(rest));
  return parts.join("|");
}

function formatEnum(names: Record<string, bigint> | undefined, v: bigint): string {
  for (const [name, val] of Object.entries(names ?? {})) if (val === v) return name;
  return v.toString();
}

/** One field value as the trace prints it. */
export function formatValue(f: FieldDef, v: bigint): string {
  switch (f.kind) {
    case "flags":
      return formatFlags(f.flags, v);
    case "enum":
      return formatEnum(f.enumNames, v);
    case "ptr":
      return f.fmt === "dec" ? v.toString() : hex(v);
    case "reserved":
      return f.fmt === "dec" ? v.toString() : hex(v);
    default:
      return f.fmt === "hex" ? hex(v) : v.toString();
  }
}

export interface FormatOptions {
  /** Only fields the kernel reads ("in": in + inout) or writes ("out": out + inout). */
  only?: "in" | "out";
  /** Print reserved fields even when zero. */
  showReserved?: boolean;
  /** Print union aliases too. */
  showAliases?: boolean;
  /** Leave out fields that end past this many bytes (the caller's struct size). */
  userSize?: number;
}

/**
 * strace-like text: `{size=40, flags=FIXED_IOVA|WRITEABLE|READABLE, ioas_id=2, user_va=0x7f0000200000, ...}`.
 * Missing values print as 0. Arrays print as `idr=[1, 2, 3]`.
 */
export function formatStruct(
  def: StructDef,
  values: Partial<StructValues>,
  opts: FormatOptions = {},
): string {
  const parts: string[] = [];
  const dirOk = (f: FieldDef) =>
    !(opts.only === "in" && f.dir === "out") && !(opts.only === "out" && f.dir === "in");
  let primaryShown = false;
  for (const f of def.fields) {
    if (!dirOk(f)) {
      if (!f.alias) primaryShown = false;
      continue;
    }
    // A union member is printed once: by its first member the direction filter keeps.
    if (f.alias && primaryShown && !opts.showAliases) continue;
    primaryShown = true;
    if (opts.userSize !== undefined && f.offset + f.size * (f.count ?? 1) > opts.userSize) continue;
    if (f.count === undefined) {
      const v = values[f.name] ?? 0n;
      if (f.kind === "reserved" && v === 0n && !opts.showReserved) continue;
      parts.push(`${f.name}=${formatValue(f, v)}`);
    } else {
      const vs: bigint[] = [];
      for (let i = 0; i < f.count; i++) vs.push(values[`${f.name}[${i}]`] ?? 0n);
      if (f.kind === "reserved" && vs.every((v) => v === 0n) && !opts.showReserved) continue;
      parts.push(`${f.name}=[${vs.map((v) => formatValue(f, v)).join(", ")}]`);
    }
  }
  return `{${parts.join(", ")}}`;
}

// ---------------------------------------------------------------------------
// Size rules

export type CopyInResult = { ok: true; kbuf: Uint8Array } | { ok: false; errno: number; reason: string };

/**
 * copy_struct_from_user(kbuf, ksize, ubuf, usize) where usize = userBytes.length:
 * a shorter user struct is zero-extended; a longer one is accepted only when
 * every byte past ksize is zero, else E2BIG. Returns a fresh ksize buffer.
 */
export function copyStructFromUser(ksize: number, userBytes: Uint8Array, what = "struct"): CopyInResult {
  const usize = userBytes.length;
  if (usize > ksize) {
    for (let i = ksize; i < usize; i++) {
      if (userBytes[i] !== 0) {
        return {
          ok: false,
          errno: E2BIG,
          reason: `${what}: byte ${i} past the kernel's ${ksize}-byte struct is non-zero (user size ${usize})`,
        };
      }
    }
  }
  const kbuf = new Uint8Array(ksize);
  kbuf.set(usize > ksize ? userBytes.subarray(0, ksize) : userBytes);
  return { ok: true, kbuf };
}

/**
 * The iommufd ioctl entry rules (drivers/iommu/iommufd/main.c): the user's
 * size (here userBytes.length, i.e. the leading u32 the caller already read)
 * below the command's min_size is EINVAL; then copy_struct_from_user into a
 * sizeof(def) buffer (E2BIG for a non-zero tail, zero fill when short).
 */
export function iommufdCopyIn(def: StructDef, minSize: number, userBytes: Uint8Array): CopyInResult {
  if (userBytes.length < minSize) {
    return {
      ok: false,
      errno: EINVAL,
      reason: `${def.name}: size ${userBytes.length} is below the minimum ${minSize}`,
    };
  }
  return copyStructFromUser(def.size, userBytes, def.name);
}

/** Bytes a responding iommufd handler copies back: min(user size, sizeof kernel struct). */
export function copyBackSize(userSize: number, kernelSize: number): number {
  return Math.max(0, Math.min(userSize, kernelSize));
}

// --- VFIO argsz convention (uapi.md §4.1) ----------------------------------

export type ArgszCheck = { ok: true } | { ok: false; errno: number; reason: string };

/** VFIO handlers reject `argsz < minsz` with EINVAL; nothing past minsz is checked. */
export function vfioArgszCheck(argsz: number | bigint, minsz: number, what = "argsz"): ArgszCheck {
  const a = BigInt(argsz);
  if (a < BigInt(minsz)) {
    return { ok: false, errno: EINVAL, reason: `${what} ${a} is below minsz ${minsz}` };
  }
  return { ok: true };
}

export type VfioCopyInResult =
  | { ok: true; kbuf: Uint8Array; argsz: number }
  | { ok: false; errno: number; reason: string };

/**
 * The usual VFIO handler prologue: copy `minsz` bytes from the user (the
 * caller passes at least those bytes; more are ignored), then check the
 * leading u32 argsz against minsz. Returns a sizeof(def) buffer with the
 * first minsz bytes filled and the rest zero, as the handler's local struct.
 */
export function vfioCopyIn(def: StructDef, minsz: number, userBytes: Uint8Array): VfioCopyInResult {
  // Bytes the caller did not supply read as zero (so a missing argsz is 0 < minsz).
  const head = new Uint8Array(4);
  head.set(userBytes.subarray(0, 4));
  const argsz = new DataView(head.buffer).getUint32(0, true);
  const chk = vfioArgszCheck(argsz, minsz, `${def.name}.argsz`);
  if (!chk.ok) return chk;
  const kbuf = new Uint8Array(Math.max(def.size, minsz));
  kbuf.set(userBytes.subarray(0, Math.min(minsz, userBytes.length)));
  return { ok: true, kbuf, argsz };
}

/** VFIO INFO ioctls copy back min(argsz, sizeof fixed struct) bytes. */
export function vfioCopyBackSize(argsz: number, structSize: number): number {
  return Math.max(0, Math.min(argsz, structSize));
}

/** Shorthand for a FieldDef row in the struct tables. */
export function fld(
  name: string,
  offset: number,
  size: 1 | 2 | 4 | 8,
  dir: FieldDir,
  extra: Omit<Partial<FieldDef>, "name" | "offset" | "size" | "dir"> = {},
): FieldDef {
  return { name, offset, size, dir, ...extra };
}

/** A copy of `def` whose named flag field keeps only the flags `keep` accepts. */
export function restrictFlags(
  def: StructDef,
  field: string,
  keep: (flag: string) => boolean,
  name = def.name,
): StructDef {
  return {
    name,
    size: def.size,
    fields: def.fields.map((f) =>
      f.name === field && f.flags
        ? { ...f, flags: Object.fromEntries(Object.entries(f.flags).filter(([k]) => keep(k))) }
        : f,
    ),
  };
}
