import * as uapi from "../uapi/index.js";
import { ScenarioError } from "./error.js";

/** Values a scenario may hold in a variable: numbers (bigint) and strings. */
export type Vars = Map<string, bigint | string>;

const UNITS: Record<string, bigint> = {
  K: 1n << 10n,
  M: 1n << 20n,
  G: 1n << 30n,
  T: 1n << 40n,
};

/** Named numbers a scenario may write, beyond the uapi's own constants. */
const NAMED: Record<string, bigint> = {
  U64_MAX: (1n << 64n) - 1n,
  U32_MAX: 0xffffffffn,
  ULONG_MAX: (1n << 64n) - 1n,
  PAGE_SIZE: 4096n,
};

/** One term: 12, 0x1000, 2M, 4KiB, $var, a uapi constant name. */
function term(t: string, vars: Vars, where: string): bigint {
  const s = t.trim();
  if (s === "") throw new ScenarioError(`${where}: empty number`);
  if (s.startsWith("$")) {
    const name = s.slice(1).replace(/^\{(.*)\}$/, "$1");
    const v = vars.get(name);
    if (v === undefined)
      throw new ScenarioError(`${where}: variable $${name} is not set (captured by no earlier step)`);
    if (typeof v === "string") throw new ScenarioError(`${where}: $${name} holds a string, not a number`);
    return v;
  }
  const m = /^(0x[0-9a-f_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)\s*([KMGT])?(?:i?B)?$/i.exec(s);
  if (m) {
    const n = BigInt(m[1].replace(/_/g, ""));
    return m[2] ? n * UNITS[m[2].toUpperCase()] : n;
  }
  if (Object.hasOwn(NAMED, s)) return NAMED[s];
  const c = (uapi as Record<string, unknown>)[s];
  if (typeof c === "number" && Number.isInteger(c)) return BigInt(c);
  if (typeof c === "bigint") return c;
  throw new ScenarioError(
    `${where}: cannot read "${s}" as a number (use 12, 0x1000, 2M, $var or a uapi constant)`,
  );
}

/**
 * A number from a scenario value: a YAML number, or a string holding terms
 * joined by + and - ("$buf + 2M", "0x1000", "U64_MAX").
 */
export function toBig(v: unknown, vars: Vars, where: string): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v))
      throw new ScenarioError(`${where}: ${v} is not an exact integer (quote big values: "0x...")`);
    return BigInt(v);
  }
  if (typeof v === "boolean") return v ? 1n : 0n;
  if (typeof v !== "string") throw new ScenarioError(`${where}: expected a number, got ${describe(v)}`);
  const parts = v.split(/([+-])/);
  let sum = 0n;
  let sign = 1n;
  let sawTerm = false;
  for (const p of parts) {
    if (p === "+") continue;
    if (p === "-") {
      sign = -sign;
      continue;
    }
    if (p.trim() === "") {
      if (sawTerm) throw new ScenarioError(`${where}: bad expression "${v}"`);
      continue;
    }
    sum += sign * term(p, vars, where);
    sign = 1n;
    sawTerm = true;
  }
  if (!sawTerm) throw new ScenarioError(`${where}: bad expression "${v}"`);
  return sum;
}

export function toNum(v: unknown, vars: Vars, where: string): number {
  const b = toBig(v, vars, where);
  if (b > BigInt(Number.MAX_SAFE_INTEGER) || b < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ScenarioError(`${where}: ${b} is too large here`);
  }
  return Number(b);
}

export function toStr(v: unknown, vars: Vars, where: string): string {
  if (typeof v === "string" && v.startsWith("$") && /^\$\{?\w+\}?$/.test(v)) {
    const name = v.slice(1).replace(/^\{(.*)\}$/, "$1");
    const got = vars.get(name);
    if (got === undefined) throw new ScenarioError(`${where}: variable $${name} is not set`);
    return String(got);
  }
  if (typeof v === "string" || typeof v === "number") return String(v);
  throw new ScenarioError(`${where}: expected a string, got ${describe(v)}`);
}

/**
 * Flags by name: a list ([FIXED_IOVA, WRITEABLE]), "A|B", a number, or an
 * expression. Names are looked up in `table` (short names), also accepting
 * any prefixed spelling that ends with _NAME (IOMMU_IOAS_MAP_FIXED_IOVA).
 */
export function toFlags(v: unknown, table: Record<string, bigint>, vars: Vars, where: string): bigint {
  if (typeof v === "number" || typeof v === "bigint") return BigInt(v);
  const names: unknown[] = Array.isArray(v) ? v : typeof v === "string" ? v.split("|") : [v];
  let out = 0n;
  for (const n of names) {
    if (typeof n === "number" || typeof n === "bigint") {
      out |= BigInt(n);
      continue;
    }
    if (typeof n !== "string") throw new ScenarioError(`${where}: flag ${describe(n)} is not a name`);
    const s = n.trim();
    const bit = lookupName(table, s);
    if (bit !== undefined) out |= bit;
    else if (/^[0-9$]/.test(s)) out |= toBig(s, vars, where);
    else
      throw new ScenarioError(
        `${where}: unknown flag ${s} (known: ${Object.keys(table).join(", ") || "none: this field takes no flags"})`,
      );
  }
  return out;
}

/** An enum value by name or number. */
export function toEnum(v: unknown, table: Record<string, bigint>, vars: Vars, where: string): bigint {
  if (typeof v === "string") {
    const hit = lookupName(table, v.trim());
    if (hit !== undefined) return hit;
    if (!/^[0-9$-]/.test(v.trim()) && !Object.hasOwn(uapi, v.trim())) {
      throw new ScenarioError(`${where}: unknown value ${v} (known: ${Object.keys(table).join(", ")})`);
    }
  }
  return toBig(v, vars, where);
}

function lookupName(table: Record<string, bigint>, s: string): bigint | undefined {
  if (Object.hasOwn(table, s)) return table[s];
  for (const [k, bit] of Object.entries(table)) if (s.endsWith(`_${k}`)) return bit;
  return undefined;
}

/**
 * Bytes from a scenario value: "de ad be ef" (hex), { text }, { fill, len },
 * { u8 | u16 | u32 | u64: value } (little-endian), or a list of such parts.
 */
export function toBytes(v: unknown, vars: Vars, where: string): Uint8Array {
  if (Array.isArray(v)) {
    const parts = v.map((x, i) => toBytes(x, vars, `${where}[${i}]`));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
  if (typeof v === "string") {
    const hex = v.replace(/\s+/g, "").replace(/^0x/i, "");
    if (!/^([0-9a-f]{2})*$/i.test(hex))
      throw new ScenarioError(`${where}: "${v}" is not hex bytes ("de ad be ef")`);
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return out;
  }
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && typeof o.text === "string") return new TextEncoder().encode(o.text);
    if (keys.includes("fill")) {
      checkKeys(o, ["fill", "len"], where);
      const len = toNum(o.len, vars, `${where}.len`);
      return new Uint8Array(len).fill(toNum(o.fill, vars, `${where}.fill`) & 0xff);
    }
    for (const [k, size] of [
      ["u8", 1],
      ["u16", 2],
      ["u32", 4],
      ["u64", 8],
    ] as const) {
      if (keys.length === 1 && keys[0] === k) {
        const n = BigInt.asUintN(size * 8, toBig(o[k], vars, `${where}.${k}`));
        const out = new Uint8Array(size);
        for (let i = 0; i < size; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
        return out;
      }
    }
  }
  throw new ScenarioError(
    `${where}: expected bytes ("de ad", {text}, {fill, len}, {u32: n}), got ${describe(v)}`,
  );
}

export function checkKeys(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k))
      throw new ScenarioError(`${where}: unknown key "${k}" (allowed: ${allowed.join(", ")})`);
  }
}

export function describe(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${typeof v === "bigint" ? v : JSON.stringify(v)}`;
}

export function hex(v: bigint | number): string {
  const b = BigInt(v);
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}

/** "2M", "4K", or hex: sizes as people write them. */
export function sizeStr(v: bigint): string {
  for (const [u, n] of [
    ["G", 1n << 30n],
    ["M", 1n << 20n],
    ["K", 1n << 10n],
  ] as const) {
    if (v >= n && v % n === 0n) return `${v / n}${u}`;
  }
  return v.toString();
}
