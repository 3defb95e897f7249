import type { StepView } from "../model/types.js";
import { h } from "./dom.js";
import type { AppState } from "./state.js";

/** The status word of a step: "ok", the errno of a failed call, or "FAILS" for an expectation that did not hold. */
function stepStatus(s: StepView): { text: string; cls: string } {
  if (s.failure) return { text: "✖ fails", cls: "bad" };
  const failed = s.calls.filter((c) => !c.ok);
  if (failed.length) {
    const unexpected = failed.some((c) => !c.expected);
    return {
      text: `${unexpected ? "⚠" : "✓"} ${failed[failed.length - 1].errno}`,
      cls: unexpected ? "warn" : "errno",
    };
  }
  if (s.dma.some((d) => d.step === s.n && d.result === "fault")) return { text: "⚠ DMA fault", cls: "warn" };
  return { text: "", cls: "" };
}

export function renderStepList(state: AppState): HTMLElement {
  const ol = h("ol", { id: "steplist", class: "steplist", "aria-label": "Steps of the run" });
  for (const s of state.run.steps) {
    const st = stepStatus(s);
    ol.appendChild(
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            "data-step": s.n,
            "aria-current": s.n === state.step ? "step" : undefined,
            title: `${s.where}: ${s.detail ? `${s.label} ${s.detail}` : s.label}${st.text ? ` — ${st.text}` : ""}`,
            class: s.n === state.step ? "cur" : "",
            onclick: () => state.goto(s.n),
          },
          h("span", { class: "num" }, String(s.n)),
          h("span", { class: "lbl" }, s.detail ? `${s.label} ${s.detail}` : s.label),
          st.text ? h("span", { class: `st ${st.cls}` }, st.text) : null,
        ),
      ),
    );
  }
  if (state.run.failure) ol.appendChild(h("li", { class: "runfail" }, `Run stopped: ${state.run.failure}`));
  return ol;
}

export function renderStep(state: AppState, s: StepView | undefined): HTMLElement {
  const box = h("section", { class: "step", "aria-label": "Current step", "data-testid": "step" });
  if (!s) {
    const p = state.run.problems;
    box.appendChild(h("h2", {}, p.length ? "The scenario does not parse" : "No steps"));
    for (const x of p)
      box.appendChild(h("p", { class: "problem" }, `${x.line ? `line ${x.line}: ` : ""}${x.message}`));
    return box;
  }
  box.appendChild(
    h(
      "h2",
      {},
      h("span", { class: "where" }, s.where),
      " ",
      h("span", { class: "label" }, s.label),
      s.detail ? h("span", { class: "where" }, ` ${s.detail}`) : null,
    ),
  );
  if (s.note) box.appendChild(h("p", { class: "note" }, s.note));
  const calls = h("ol", {
    class: "calls",
    "aria-label": "System calls of this step",
    "data-testid": "calls",
  });
  for (const c of s.calls) {
    const li = h("li", { class: c.ok ? "call ok" : c.expected ? "call err expected" : "call err" });
    li.appendChild(h("code", {}, c.text));
    if (c.note) li.appendChild(h("div", { class: "callnote", "data-testid": "callnote" }, c.note));
    if (!c.ok) {
      li.appendChild(
        h(
          "div",
          { class: "explain", "data-testid": "explain" },
          h(
            "div",
            {},
            h("strong", {}, `${c.errno}`),
            c.expected ? " — expected by the scenario" : " — not expected",
          ),
          h("div", {}, h("span", { class: "k" }, "Kernel rule: "), c.reason ?? "(no reason recorded)"),
          c.meaning
            ? h("div", { class: "dim" }, h("span", { class: "k" }, `${c.errno} generally means: `), c.meaning)
            : null,
        ),
      );
    }
    calls.appendChild(li);
  }
  if (s.calls.length === 0)
    calls.appendChild(
      h(
        "li",
        { class: "dim" },
        s.kind === "boot"
          ? "(none yet: the scenario's steps start at step 1)"
          : "(no system call: a machine operation or a check)",
      ),
    );
  if (s.result.length) {
    box.appendChild(
      h(
        "div",
        { class: "result", "data-testid": "result" },
        h("span", { class: "k" }, "Result: "),
        ...s.result.map((r) => h("code", {}, r)),
      ),
    );
  }
  const dmaNow = s.dma.filter((d) => d.step === s.n);
  for (const d of dmaNow) {
    box.appendChild(
      h(
        "div",
        { class: d.result === "fault" || d.finding ? "dmaline bad" : "dmaline" },
        `DMA ${d.op} by ${d.device} at 0x${d.addr.toString(16)} (${d.len} bytes): `,
        d.result === "fault"
          ? h("strong", {}, `FAULT (${d.fault ?? "fault"}), FAULT_ADDR 0x${d.addr.toString(16)}`)
          : "ok",
        d.finding ? h("div", {}, h("strong", {}, "DMA sanitizer: "), d.finding) : null,
      ),
    );
  }
  if (s.failure)
    box.appendChild(h("p", { class: "problem", role: "alert" }, `Expectation failed: ${s.failure}`));
  box.appendChild(h("h3", { class: "callshead" }, `System calls (${s.calls.length})`));
  box.appendChild(calls);
  return box;
}

export function renderChanges(s: StepView | undefined): HTMLElement {
  const box = h("section", {
    class: "changes",
    "aria-label": "What changed at this step",
    "data-testid": "changes",
  });
  if (!s) return box;
  const kinds = new Map<string, number>();
  for (const c of s.changed) {
    const k = c.startsWith("area c")
      ? "container mapping"
      : c.startsWith("area ")
        ? "IOAS area"
        : c.startsWith("prereg ")
          ? "pre-registered region"
          : c.startsWith("pin ")
            ? "pinned-frame run"
            : c.startsWith("vma ")
              ? "VMA"
              : c.startsWith("counter ")
                ? "counter"
                : c.startsWith("dma ")
                  ? "DMA event"
                  : "page-table entry";
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  box.appendChild(h("span", { class: "k" }, s.n === 1 ? "Changed since boot: " : "Changed: "));
  if (s.n === 0) {
    box.classList.add("none");
    box.appendChild(h("span", { class: "dim" }, "nothing: this is the starting point"));
    return box;
  }
  if (kinds.size === 0 && s.removed.length === 0) {
    box.classList.add("none");
    box.appendChild(h("span", { class: "dim" }, "nothing in the machine's state"));
  }
  box.appendChild(h("span", {}, [...kinds].map(([k, n]) => `${n} ${k}${n === 1 ? "" : "s"}`).join(", ")));
  if (s.removed.length) {
    box.appendChild(
      h(
        "details",
        { class: "removed" },
        h("summary", {}, `${s.removed.length} gone`),
        h(
          "ul",
          {},
          s.removed.slice(0, 50).map((r) => h("li", {}, r)),
        ),
      ),
    );
  }
  return box;
}
