import { hex } from "./addr.js";
import type { PteView, StepView } from "./types.js";

/** Everything in a step that has an identity and a value, as "sig" strings with a description. */
export function signatures(s: StepView): Map<string, string> {
  const out = new Map<string, string>();
  for (const io of s.ioas) {
    const what = io.kind === "ioas" ? "area" : "mapping";
    for (const a of io.areas) out.set(a.sig, `${io.key}: ${what} [${hex(a.iova)}, ${hex(a.last)}]`);
    for (const r of io.prereg ?? [])
      out.set(r.sig, `${io.key}: pre-registered memory at user VA ${hex(r.ua)}`);
  }
  for (const h of s.hwpts) {
    const walk = (l: PteView[]) => {
      for (const e of l) {
        out.set(e.sig, `${h.key}: L${e.level}[${e.index}] ${e.text}`);
        walk(e.children);
      }
    };
    walk(h.roots);
  }
  for (const p of s.pins) out.set(p.sig, `${p.count} pinned frame(s) at pfn ${hex(p.pfn)} (x${p.pins})`);
  for (const pr of s.procs) {
    for (const v of pr.vmas) out.set(v.sig, `${pr.name} VMA ${hex(v.start)}-${hex(v.end)} ${v.perms}`);
  }
  for (const [k, v] of Object.entries(s.counters)) out.set(`counter ${k}=${v}`, `counter ${k}`);
  for (const d of s.dma) out.set(`dma ${d.n}`, `DMA ${d.n}`);
  return out;
}

/**
 * Mark what is new or different in `cur` since `prev` (cur.changed holds
 * the sigs), and list in words what `prev` had that `cur` lost. Step 1 is
 * compared with the machine as booted (step 0).
 */
export function diffSteps(prev: StepView | undefined, cur: StepView): void {
  const a = prev ? signatures(prev) : new Map<string, string>();
  const b = signatures(cur);
  cur.changed = new Set([...b.keys()].filter((k) => !a.has(k)));
  const counterNames = new Set(
    [...b.keys()].filter((k) => k.startsWith("counter ")).map((k) => k.split("=")[0]),
  );
  cur.removed = [...a]
    .filter(([k]) => !b.has(k) && !(k.startsWith("counter ") && counterNames.has(k.split("=")[0])))
    .map(([, d]) => d);
}
