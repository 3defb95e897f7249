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

export type FieldSize = 1 | 2 | 4 | 8;

/** Everything of a field but its name, offset, size and direction. */
export interface FieldExtra {
  kind?: FieldKind;
  /** Short flag names (as printed, e.g. FIXED_IOVA) to bit values. */
  flags?: Readonly<Record<string, bigint>>;
  /** Short enum names to values. */
  enumNames?: Readonly<Record<string, bigint>>;
  /** Two's-complement signed (fd fields are signed even without this). */
  signed?: boolean;
  /** Number format when printing; defaults depend on `kind`. */
  fmt?: "hex" | "dec";
  /** An array of `count` elements (`__u32 idr[6]`); keys are `name[i]`. */
  count?: number;
  /** Shares storage with the field before it (a C union member); not printed by default. */
  alias?: boolean;
}

/**
 * One field of a struct table. The name and size are type parameters so a
 * table declared through `defineStruct` keeps them as literal types: field
 * names become types (a misspelt name does not compile) and a field's
 * size decides whether a typed view reads it as a number or a bigint.
 */
export interface FieldDef<N extends string = string, S extends FieldSize = FieldSize> extends FieldExtra {
  readonly name: N;
  offset: number;
  /** Size of one element in bytes. */
  size: S;
  dir: FieldDir;
}

/** A C struct: its name, sizeof, and its fields in declaration order. */
export interface StructDef<F extends readonly FieldDef[] = readonly FieldDef[]> {
  name: string;
  /** sizeof(struct) in the kernel. */
  size: number;
  fields: F;
}

/** The fields of a struct table, as a union of their types. */
export type FieldOf<D extends StructDef> = D["fields"][number];
/** The names of a struct's fields (arrays by their bare name). */
export type FieldName<D extends StructDef> = FieldOf<D>["name"];
type SlotKeyOf<F> = F extends { name: infer N extends string; count: number }
  ? `${N}[${number}]`
  : F extends { name: infer N extends string }
    ? N
    : never;
/** The keys of a decoded struct: field names, and `name[i]` for array elements. */
export type FieldKey<D extends StructDef> = SlotKeyOf<FieldOf<D>>;

/** A decoded struct: every slot as a bigint (exact for 64-bit fields). */
export type StructValues<D extends StructDef = StructDef> = { [K in FieldKey<D>]: bigint };
/** What `encode` accepts: any subset of the struct's slots; unknown names do not compile. */
export type StructInput<D extends StructDef = StructDef> = { [K in FieldKey<D>]?: bigint | number };

/**
 * A struct table whose field names and sizes are kept as types. Write the
 * fields inline (`defineStruct({ name, size, fields: [fld(...), ...] })`).
 */
export function defineStruct<const F extends readonly FieldDef[]>(def: {
  name: string;
  size: number;
  fields: F;
}): StructDef<F> {
  return def;
}

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

export function fieldDef<D extends StructDef>(def: D, name: FieldName<D>): FieldDef {
  const f = def.fields.find((x) => x.name === name);
  if (!f) throw new TypeError(`${def.name} has no field ${name}`);
  return f;
}

/** offsetof(struct, field). */
export function offsetOf<D extends StructDef>(def: D, name: FieldName<D>): number {
  return fieldDef(def, name).offset;
}

/** offsetofend(struct, field): the byte just past the field (all of it, for arrays). */
export function offsetOfEnd<D extends StructDef>(def: D, name: FieldName<D>): number {
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
export function decode<D extends StructDef>(def: D, bytes: Uint8Array): StructValues<D> {
  const dv = view(bytes);
  const out: Record<string, bigint> = {};
  for (const s of slotsOf(def).list) out[s.key] = readSlot(bytes, dv, s);
  return out as StructValues<D>;
}

/**
 * A zeroed buffer of `size` bytes (default sizeof) with the given fields set.
 * Unknown keys throw TypeError; values that fit neither the signed nor the
 * unsigned type throw RangeError. Fields cut off by a short `size` are truncated.
 */
export function encode<D extends StructDef>(def: D, values: StructInput<D>, size = def.size): Uint8Array {
  const bytes = new Uint8Array(size);
  const dv = view(bytes);
  for (const [key, value] of Object.entries(values as Record<string, bigint | number | undefined>)) {
    if (value === undefined) continue;
    const s = slot(def, key);
    writeSlot(bytes, dv, s, toBits(s, def.name, value));
  }
  return bytes;
}

export function readField<D extends StructDef>(def: D, bytes: Uint8Array, key: FieldKey<D>): bigint {
  return readSlot(bytes, view(bytes), slot(def, key));
}

/** Write one field in place (the buffer keeps its length). */
export function writeField<D extends StructDef>(
  def: D,
  bytes: Uint8Array,
  key: FieldKey<D>,
  value: bigint | number,
): void {
  const s = slot(def, key);
  writeSlot(bytes, view(bytes), s, toBits(s, def.name, value));
}

// ---------------------------------------------------------------------------
// Typed views: a handler's struct, field by field

type ViewScalar<F> = F extends { size: 8 } ? bigint : number;
type ViewValue<F> = F extends { count: number } ? ViewScalar<F>[] : ViewScalar<F>;

/**
 * A struct in a buffer as an object with one property per field (C union
 * members included): fields of 8 bytes read and write as bigint, smaller
 * ones as number (signed where the field is). Array fields read as a fresh
 * array and are written whole. Writes go straight to the buffer, with the
 * same range checks as `encode`.
 */
export type StructView<D extends StructDef> =
  string extends FieldName<D>
    ? // A table not declared through defineStruct: names unknown to the compiler.
      Record<string, number | bigint | (number | bigint)[]>
    : { [F in FieldOf<D> as F["name"]]: ViewValue<F> };

const VIEW_BYTES = Symbol("bytes");
const VIEW_DV = Symbol("dv");

interface ViewBase {
  [VIEW_BYTES]: Uint8Array;
  [VIEW_DV]: DataView;
}

function readNum(dv: DataView, offset: number, size: FieldSize, signed: boolean): number | bigint {
  switch (size) {
    case 1:
      return signed ? dv.getInt8(offset) : dv.getUint8(offset);
    case 2:
      return signed ? dv.getInt16(offset, true) : dv.getUint16(offset, true);
    case 4:
      return signed ? dv.getInt32(offset, true) : dv.getUint32(offset, true);
    default:
      return signed ? dv.getBigInt64(offset, true) : dv.getBigUint64(offset, true);
  }
}

function writeNum(structName: string, s: FieldSlot, dv: DataView, value: number | bigint): void {
  if (s.size === 8 || typeof value === "bigint") {
    const bits = toBits(s, structName, value);
    if (s.size === 8) dv.setBigUint64(s.offset, bits, true);
    else writeNum(structName, s, dv, Number(bits));
    return;
  }
  const range = 2 ** (s.size * 8);
  if (!Number.isInteger(value) || value < -range / 2 || value >= range) {
    throw new RangeError(`${structName}.${s.key}: ${value} does not fit in ${s.size} bytes`);
  }
  const u = value < 0 ? value + range : value;
  if (s.size === 1) dv.setUint8(s.offset, u);
  else if (s.size === 2) dv.setUint16(s.offset, u, true);
  else dv.setUint32(s.offset, u, true);
}

const viewProtos = new WeakMap<StructDef, object>();

function viewProto(def: StructDef): object {
  let proto = viewProtos.get(def);
  if (proto) return proto;
  proto = Object.create(null) as object;
  const byKey = slotsOf(def).byKey;
  for (const f of def.fields) {
    if (f.count === undefined) {
      const s = byKey.get(f.name)!;
      Object.defineProperty(proto, f.name, {
        enumerable: true,
        get(this: ViewBase) {
          return readNum(this[VIEW_DV], s.offset, s.size, s.signed);
        },
        set(this: ViewBase, v: number | bigint) {
          writeNum(def.name, s, this[VIEW_DV], v);
        },
      });
    } else {
      const slots = Array.from({ length: f.count }, (_, i) => byKey.get(`${f.name}[${i}]`)!);
      Object.defineProperty(proto, f.name, {
        enumerable: true,
        get(this: ViewBase) {
          return slots.map((s) => readNum(this[VIEW_DV], s.offset, s.size, s.signed));
        },
        set(this: ViewBase, vs: readonly (number | bigint)[]) {
          if (vs.length !== slots.length) {
            throw new RangeError(`${def.name}.${f.name}: ${vs.length} values for ${slots.length} elements`);
          }
          for (let i = 0; i < slots.length; i++) writeNum(def.name, slots[i], this[VIEW_DV], vs[i]);
        },
      });
    }
  }
  viewProtos.set(def, proto);
  return proto;
}

/**
 * A typed view of `def` over `bytes` (at least sizeof the struct): reads and
 * writes go to the buffer. A misspelt field name does not compile.
 */
export function structView<D extends StructDef>(def: D, bytes: Uint8Array): StructView<D> {
  if (bytes.length < def.size) {
    throw new RangeError(`${def.name}: a view needs ${def.size} bytes, the buffer has ${bytes.length}`);
  }
  // Object.create is untyped: the prototype's accessors are what StructView<D> describes.
  const v = Object.create(viewProto(def));
  v[VIEW_BYTES] = bytes;
  v[VIEW_DV] = view(bytes);
  return v;
}

/** Bits of `value` that the field's flag table does not name (all bits when it has none). */
export function unknownFlags<D extends StructDef>(
  def: D,
  field: FieldName<D>,
  value: bigint | number,
): bigint {
  const f = fieldDef(def, field);
  let known = 0n;
  for (const bit of Object.values(f.flags ?? {})) known |= bit;
  const v = BigInt.asUintN(f.size * 8, BigInt(value));
  return v & ~known;
}

/** Every bit the field's flag table names, OR-ed together. */
export function knownFlagMask<D extends StructDef>(def: D, field: FieldName<D>): bigint {
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
export function formatFlags(flags: Readonly<Record<string, bigint>> | undefined, value: bigint): string {
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

function formatEnum(names: Readonly<Record<string, bigint>> | undefined, v: bigint): string {
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
  values: Partial<Record<string, bigint>>,
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

/** Shorthand for a FieldDef row in the struct tables (name, size and extras kept as literal types). */
export function fld<
  const N extends string,
  const S extends FieldSize,
  const E extends FieldExtra = Record<never, never>,
>(name: N, offset: number, size: S, dir: FieldDir, extra?: E): FieldDef<N, S> & E {
  return { name, offset, size, dir, ...(extra as E) };
}

/** A copy of `def` whose named flag field keeps only the flags `keep` accepts. */
export function restrictFlags<D extends StructDef>(
  def: D,
  field: FieldName<D>,
  keep: (flag: string) => boolean,
  name = def.name,
): D {
  return {
    ...def,
    name,
    fields: def.fields.map((f) =>
      f.name === field && f.flags
        ? { ...f, flags: Object.fromEntries(Object.entries(f.flags).filter(([k]) => keep(k))) }
        : f,
    ),
  };
}
