import { bytesLabel, hex } from "../model/addr.js";
import type { StepView } from "../model/types.js";
import { changedMark, h } from "./dom.js";
import type { AppState } from "./state.js";

const ORDER_SIZE: Record<number, string> = { 0: "4K", 9: "2M (hugetlb folio)", 18: "1G (hugetlb folio)" };
const MAX_ROWS = 300;

/** What each PCI device kind is, in a few words. */
const DEVICE_KINDS: Record<string, string> = {
  memcpy: "(memcpy: the model's copy engine, SRC/DST/LEN and a doorbell in BAR0)",
  ioat: "(ioat: Intel I/OAT CBDMA channel 8086:2021, descriptors fetched by DMA, MSI-X)",
};

function table(head: string[], rows: HTMLElement[], testid: string): HTMLElement {
  return h(
    "table",
    { class: "grid", "data-testid": testid },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        head.map((x) => h("th", {}, x)),
      ),
    ),
    h("tbody", {}, rows),
  );
}

export function renderMemory(s: StepView): HTMLElement {
  const total = s.counters.pinnedPages ?? 0;
  const rows = s.pins.slice(0, MAX_ROWS).map((p) => {
    const pages = p.order === 0 ? 1 : 2 ** p.order;
    const chg = s.changed.has(p.sig);
    return h(
      "tr",
      { class: chg ? "changed" : "" },
      h("td", { class: "mono" }, hex(p.pfn)),
      h(
        "td",
        { class: "mono" },
        `${hex(BigInt(p.pfn) * 4096n)} – ${hex(BigInt(p.pfn + p.count * pages) * 4096n - 1n)}`,
      ),
      h("td", {}, `${p.count} × ${ORDER_SIZE[p.order] ?? `order ${p.order}`}`),
      h("td", {}, String(p.pins)),
      h("td", {}, p.owners.join("; ")),
      h("td", {}, changedMark(chg)),
    );
  });
  return h(
    "div",
    {},
    h(
      "p",
      {},
      `${total} page pin(s) machine-wide (counters().pinnedPages), ${s.pins.length} run(s) of pinned frames. "pins" counts pin_user_pages references on each frame (on a hugetlb folio, over all its pages).`,
    ),
    table(["pfn", "physical range", "frames", "pins", "pinned by", ""], rows, "pins"),
    s.pins.length > MAX_ROWS ? h("p", { class: "dim" }, `… ${s.pins.length - MAX_ROWS} more runs`) : null,
  );
}

export function renderProcesses(s: StepView): HTMLElement {
  const box = h("div", {});
  if (s.procs.length === 0) box.appendChild(h("p", { class: "empty" }, "No live process."));
  for (const p of s.procs) {
    box.appendChild(
      h(
        "h3",
        {},
        `${p.name} (pid ${p.pid})`,
        h("span", { class: "dim" }, ` — ${p.vmas.length} VMA(s), like /proc/${p.pid}/maps`),
      ),
    );
    box.appendChild(
      table(
        ["start", "end", "size", "perms", "page", "backing", ""],
        p.vmas.map((v) => {
          const chg = s.changed.has(v.sig);
          return h(
            "tr",
            { class: chg ? "changed" : "" },
            h("td", { class: "mono" }, hex(v.start)),
            h("td", { class: "mono" }, hex(v.end)),
            h("td", {}, bytesLabel(v.end - v.start)),
            h("td", { class: "mono" }, v.perms),
            h("td", {}, bytesLabel(BigInt(v.pageSize))),
            h("td", {}, `${v.file ?? "anonymous"}${v.locked ? " (mlocked)" : ""}`),
            h("td", {}, changedMark(chg)),
          );
        }),
        "vmas",
      ),
    );
  }
  return box;
}

export function renderDevices(state: AppState, s: StepView): HTMLElement {
  const box = h("div", {});
  box.appendChild(h("h3", {}, "PCI devices"));
  box.appendChild(
    h(
      "ul",
      { class: "devices" },
      s.devices.map((d) =>
        h(
          "li",
          {},
          h("strong", { class: "mono" }, d.bdf),
          ` ${DEVICE_KINDS[d.kind] ?? d.kind}`,
          ` — ${d.behindIommu ? "behind the IOMMU" : "no IOMMU: its DMA addresses are physical"}`,
          d.bindings.length
            ? h(
                "ul",
                {},
                d.bindings.map((b) => h("li", {}, b)),
              )
            : null,
        ),
      ),
    ),
  );
  const all = state.run.steps.at(-1)?.dma ?? [];
  const n = state.run.steps.length;
  box.appendChild(
    h(
      "h3",
      {},
      "DMA timeline",
      h(
        "span",
        { class: "dim" },
        ` — ${all.length} DMA(s) in the whole run; each mark opens the step that caused it`,
      ),
    ),
  );
  const line = h("div", { class: "timeline", role: "list", "aria-label": "DMA timeline by step" });
  // several DMAs of one step (a copy reads, then writes) sit side by side, not on top of each other
  const perStep = new Map<number, number>();
  for (const d of all) {
    const k = perStep.get(d.step) ?? 0;
    perStep.set(d.step, k + 1);
    const x = n > 1 ? (d.step / (n - 1)) * 100 : 50;
    const kind = d.finding ? "finding" : d.result === "fault" ? "fault" : "ok";
    const sym = kind === "finding" ? "⚠" : kind === "fault" ? "✖" : "■";
    line.appendChild(
      h(
        "button",
        {
          type: "button",
          role: "listitem",
          class: `tmark ${kind}${d.step === s.n ? " now" : ""}${d.step > s.n ? " future" : ""}`,
          style: `left:calc(${x.toFixed(3)}% - 7px + ${k * 9}px)`,
          title: `step ${d.step}: ${d.device} ${d.op} ${hex(d.addr)} +${d.len} ${d.result}${d.fault ? ` (${d.fault})` : ""}${d.finding ? ` — ${d.finding}` : ""}`,
          "aria-label": `step ${d.step}: DMA ${d.op} ${kind}`,
          onclick: () => state.goto(d.step),
        },
        sym,
      ),
    );
  }
  line.appendChild(
    h("div", { class: "tnow", style: `left:${n > 1 ? (s.n / (n - 1)) * 100 : 50}%`, "aria-hidden": "true" }),
  );
  box.appendChild(line);
  box.appendChild(
    h(
      "div",
      { class: "axis", "aria-hidden": "true" },
      h("span", {}, "boot (step 0)"),
      h("span", {}, `step ${n - 1}`),
    ),
  );
  box.appendChild(
    h("p", { class: "legend dim" }, "■ copy ok   ✖ IOMMU fault   ⚠ DMA-sanitizer finding   | this step"),
  );
  const sofar = s.dma;
  box.appendChild(
    table(
      ["#", "step", "device", "op", "address", "bytes", "result", "sanitizer", ""],
      sofar.map((d) => {
        const chg = s.changed.has(`dma ${d.n}`);
        return h(
          "tr",
          { class: `${chg ? "changed" : ""}${d.result === "fault" ? " faultrow" : ""}` },
          h("td", {}, String(d.n)),
          h(
            "td",
            {},
            h(
              "button",
              { type: "button", class: "link", onclick: () => state.goto(d.step) },
              `step ${d.step}`,
            ),
          ),
          h("td", { class: "mono" }, d.device),
          h("td", {}, d.op),
          h("td", { class: "mono" }, hex(d.addr)),
          h("td", {}, String(d.len)),
          h(
            "td",
            { "data-testid": "dma-result" },
            d.result === "fault" ? `FAULT (${d.fault ?? "?"}), FAULT_ADDR ${hex(d.addr)}` : "ok",
          ),
          h("td", {}, d.finding ?? ""),
          h("td", {}, changedMark(chg)),
        );
      }),
      "dma",
    ),
  );
  if (sofar.length === 0) box.appendChild(h("p", { class: "empty" }, "No DMA yet."));
  return box;
}

export function renderCounters(s: StepView): HTMLElement {
  return h(
    "div",
    {},
    h(
      "p",
      {},
      "m.debug.counters(): everything a process can hold, machine-wide (the leak checks compare these).",
    ),
    table(
      ["counter", "value", ""],
      Object.entries(s.counters).map(([k, v]) => {
        const chg = s.changed.has(`counter ${k}=${v}`);
        return h(
          "tr",
          { class: chg ? "changed" : "" },
          h("td", { class: "mono" }, k),
          h("td", {}, String(v)),
          h("td", {}, changedMark(chg)),
        );
      }),
      "counters",
    ),
  );
}
