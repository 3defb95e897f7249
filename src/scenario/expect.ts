import type { DmaEvent, Machine } from "../index.js";
import { errnoName, errnoValue } from "../uapi/errno.js";
import { formatValue } from "../uapi/struct.js";
import { ScenarioError } from "./error.js";
import { fieldValue } from "./ioctl-arg.js";
import type { Outcome } from "./steps.js";
import { HELPER_KINDS, MACHINE_KINDS, type Step, SYSCALL_KINDS } from "./types.js";
import { checkKeys, describe, hex, toBig, toBytes, toStr, type Vars } from "./values.js";

/**
 * Kinds whose outcome is a system call (or a helper made of them): they must
 * succeed unless told otherwise (exit and fail_nth cannot fail). Derived from
 * the kind lists so a new kind is not forgotten here.
 */
const MUST_SUCCEED_BY_DEFAULT = new Set<string>(
  [...SYSCALL_KINDS, ...HELPER_KINDS, ...MACHINE_KINDS].filter((k) => k !== "exit" && k !== "fail_nth"),
);

/**
 * Check a step's outcome against its `expect:`. Returns what went wrong (the
 * first mismatch), or undefined when the step behaved as expected. Without
 * `expect`, a system call must succeed.
 */
export function checkExpect(step: Step, o: Outcome, vars: Vars, where: string): string | undefined {
  if (o.checkFailure !== undefined) return o.checkFailure;
  const e = step.expect;
  if (e?.any === true) return undefined;
  const got = gotText(o);
  if (e === undefined || (e.errno === undefined && e.rc === undefined)) {
    if (o.errno !== undefined && MUST_SUCCEED_BY_DEFAULT.has(step.kind)) {
      return `expected success, got ${got}`;
    }
  }
  if (e === undefined) return undefined;
  if (e.errno !== undefined) {
    const name = String(e.errno);
    if (errnoValue(name) === undefined) throw new ScenarioError(`${where}: unknown errno name ${name}`);
    if (o.errno === undefined) return `expected ${name}, got ${got}`;
    if (errnoName(o.errno) !== name) return `expected ${name}, got ${got}`;
  }
  if (e.rc !== undefined) {
    if (e.rc === "ok") {
      if (o.errno !== undefined) return `expected success, got ${got}`;
    } else {
      const want = toBig(e.rc, vars, `${where}: expect.rc`);
      if (o.ret === undefined || BigInt(o.ret) !== want) return `expected rc ${want}, got ${got}`;
    }
  }
  if (e.reason !== undefined) {
    const s = String(e.reason);
    if (!(o.reason ?? "").includes(s)) return `expected a reason containing "${s}", got "${o.reason ?? ""}"`;
  }
  if (e.out !== undefined) {
    const r = checkOut(step, o, e.out, vars, where);
    if (r) return r;
  }
  if (e.data !== undefined) {
    const want = toBytes(e.data, vars, `${where}: expect.data`);
    if (o.data === undefined) return `expected data, but the step produced none (${got})`;
    if (!sameBytes(o.data, want)) return `expected data ${hexBytes(want)}, got ${hexBytes(o.data)}`;
  }
  for (const k of ["entries", "contains", "absent"] as const) {
    if (e[k] === undefined) continue;
    const r = checkList(k, e[k], o, vars, where);
    if (r) return r;
  }
  if (e.text !== undefined) {
    const s = toStr(e.text, vars, `${where}: expect.text`);
    if (o.text === undefined || !o.text.includes(s))
      return `expected text containing "${s}", got ${JSON.stringify(o.text ?? "")}`;
  }
  return undefined;
}

function gotText(o: Outcome): string {
  if (o.errno !== undefined) return `${errnoName(o.errno)}${o.reason ? ` (${o.reason})` : ""}`;
  return o.ret === undefined ? "success" : `rc ${o.ret}`;
}

function checkOut(step: Step, o: Outcome, want: unknown, vars: Vars, where: string): string | undefined {
  if (typeof want !== "object" || want === null || Array.isArray(want)) {
    throw new ScenarioError(`${where}: expect.out maps output fields to values`);
  }
  if (o.out === undefined) return `expected output fields, but ${step.kind} produced none`;
  const def = o.outDef;
  for (const [k, w] of Object.entries(want)) {
    if (!Object.hasOwn(o.out, k)) {
      throw new ScenarioError(
        `${where}: expect.out.${k}: ${o.outStruct ?? step.kind} has no field ${k} (fields: ${Object.keys(o.out).join(", ")})`,
      );
    }
    const f = def?.fields.find((x) => x.name === k);
    const wv = f
      ? fieldValue(f, w, vars, `${where}: expect.out.${k}`)
      : toBig(w, vars, `${where}: expect.out.${k}`);
    const gv = o.out[k];
    if (gv !== wv) {
      const show = (x: bigint) => (f ? formatValue(f, x) : hex(x));
      return `expected ${k}=${show(wv)}, got ${k}=${show(gv)}${o.errno !== undefined ? ` (the call failed: ${gotText(o)})` : ""}`;
    }
  }
  return undefined;
}

function checkList(
  k: "entries" | "contains" | "absent",
  w: unknown,
  o: Outcome,
  vars: Vars,
  where: string,
): string | undefined {
  if (k === "contains" && typeof w === "string") {
    const s = toStr(w, vars, `${where}: expect.contains`);
    const hay = o.text ?? o.entries?.join("\n") ?? "";
    return hay.includes(s) ? undefined : `expected "${s}" in ${JSON.stringify(hay)}`;
  }
  if (!Array.isArray(w))
    throw new ScenarioError(`${where}: expect.${k}: expected a list, got ${describe(w)}`);
  const want = w.map((x) => toStr(x, vars, `${where}: expect.${k}`));
  const got = o.entries ?? (o.text !== undefined ? o.text.split(/\s+/).filter(Boolean) : undefined);
  if (got === undefined) return `expected a listing, but ${o.label} produced none (${gotText(o)})`;
  if (k === "entries") {
    const a = [...got].sort();
    const b = [...want].sort();
    if (a.length !== b.length || a.some((x, i) => x !== b[i]))
      return `expected entries [${b.join(", ")}], got [${a.join(", ")}]`;
  } else if (k === "contains") {
    const miss = want.filter((x) => !got.includes(x));
    if (miss.length) return `expected ${miss.join(", ")} among [${got.join(", ")}]`;
  } else {
    const there = want.filter((x) => got.includes(x));
    if (there.length) return `expected no ${there.join(", ")}, got [${got.join(", ")}]`;
  }
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function hexBytes(b: Uint8Array, max = 32): string {
  const parts: string[] = [];
  for (let i = 0; i < Math.min(b.length, max); i++) parts.push(b[i].toString(16).padStart(2, "0"));
  return `"${parts.join(" ")}${b.length > max ? ` ...(${b.length} bytes)` : ""}"`;
}

// --- check steps -------------------------------------------------------------

/** check_dma: the DMA log (count, faults, and the fields of the last event). */
export function checkDma(m: Machine, body: unknown, vars: Vars, where: string): string | undefined {
  const log = m.debug.dmaLog();
  const b = (body ?? {}) as Record<string, unknown>;
  checkKeys(b, ["count", "faults", "findings", "last", "none"], `${where}: check_dma`);
  if (b.none === true && log.length > 0) return `expected no DMA, the log has ${log.length} event(s)`;
  if (b.count !== undefined) {
    const n = Number(toBig(b.count, vars, where));
    if (log.length !== n) return `expected ${n} DMA event(s), the log has ${log.length}`;
  }
  if (b.faults !== undefined) {
    const n = Number(toBig(b.faults, vars, where));
    const f = log.filter((e) => e.result === "fault").length;
    if (f !== n) return `expected ${n} faulted DMA(s), the log has ${f}`;
  }
  if (b.findings !== undefined) {
    const n = Number(toBig(b.findings, vars, where));
    const f = log.filter((e) => e.finding !== undefined).length;
    if (f !== n) return `expected ${n} DMA(s) flagged by the sanitizer, the log has ${f}`;
  }
  if (b.last !== undefined) {
    const last = log.at(-1);
    if (last === undefined) return "expected a DMA event, the log is empty";
    const w = b.last as Record<string, unknown>;
    checkKeys(w, ["device", "op", "addr", "len", "result", "finding", "fault"], `${where}: check_dma.last`);
    for (const [k, x] of Object.entries(w)) {
      const g = last[k as keyof DmaEvent];
      if (k === "addr" || k === "len") {
        const wv = toBig(x, vars, `${where}: last.${k}`);
        if (g === undefined || BigInt(g) !== wv)
          return `expected the last DMA's ${k} ${hex(wv)}, got ${g === undefined ? "none" : hex(BigInt(g))}`;
      } else if (k === "finding" || k === "fault") {
        if (typeof g !== "string" || !g.includes(String(x)))
          return `expected the last DMA's ${k} to mention "${x}", got ${JSON.stringify(g ?? null)}`;
      } else if (String(g) !== String(x)) return `expected the last DMA's ${k} ${x}, got ${g}`;
    }
  }
  return undefined;
}

/** check_counters: exact values of m.debug.counters(). */
export function checkCounters(m: Machine, body: unknown, vars: Vars, where: string): string | undefined {
  if (typeof body !== "object" || body === null)
    throw new ScenarioError(`${where}: check_counters maps counter names to values`);
  const c = m.debug.counters();
  for (const [k, w] of Object.entries(body)) {
    if (!Object.hasOwn(c, k))
      throw new ScenarioError(`${where}: no counter ${k} (counters: ${Object.keys(c).join(", ")})`);
    const want = Number(toBig(w, vars, `${where}: ${k}`));
    if (c[k] !== want) return `expected counter ${k} = ${want}, got ${c[k]}`;
  }
  return undefined;
}

export function checkInvariants(m: Machine): string | undefined {
  const v = m.debug.checkInvariants();
  return v.length === 0 ? undefined : `invariants broken: ${v.join("; ")}`;
}

export function checkTaint(m: Machine, body: unknown, where: string): string | undefined {
  if (!Array.isArray(body))
    throw new ScenarioError(`${where}: check_taint takes the list of expected flags ([] for none)`);
  const got = [...m.debug.taint()].sort();
  const want = body.map(String).sort();
  if (got.length !== want.length || got.some((x, i) => x !== want[i]))
    return `expected taint [${want.join(", ")}], got [${got.join(", ")}]`;
  return undefined;
}
