import { buildRun } from "../model/build.js";
import type { RunView } from "../model/types.js";
import { h } from "./dom.js";
import { renderEditor } from "./editor.js";
import { renderIoas } from "./render-ioas.js";
import { renderCounters, renderDevices, renderMemory, renderProcesses } from "./render-mem.js";
import { renderPageTables } from "./render-pt.js";
import { renderChanges, renderStep, renderStepList } from "./render-step.js";
import { type AppState, TABS, type TabId } from "./state.js";

/** What the server (or --export) put in the page: the scenario to open and the bundled examples. */
interface Boot {
  file: string;
  text: string;
  examples: Record<string, string>;
}

function readBoot(): Boot {
  const el = document.getElementById("iommufd-sim-boot");
  if (el?.textContent) return JSON.parse(el.textContent) as Boot;
  return { file: "scenario.yaml", text: "", examples: {} };
}

const boot = readBoot();
const state: AppState = {
  file: boot.file,
  text: boot.text,
  run: undefined as unknown as RunView,
  step: 0,
  tab: "ioas",
  left: "steps",
  viewports: new Map(),
  walk: new Map(),
  open: new Set(),
  rerender: () => render(),
  goto: (n: number) => goto(n),
};

function runText(text: string, file: string): void {
  state.text = text;
  state.file = file;
  state.run = buildRun(text, file);
  state.step = Math.max(0, Math.min(state.step, state.run.steps.length - 1));
  if (state.run.problems.length > 0) state.left = "edit";
}

function goto(n: number): void {
  const max = state.run.steps.length - 1;
  state.step = Math.max(0, Math.min(max, n));
  render();
  document
    .querySelector<HTMLElement>(`#steplist [data-step="${state.step}"]`)
    ?.scrollIntoView({ block: "nearest" });
}

function header(): HTMLElement {
  const r = state.run;
  const examples = Object.keys(boot.examples);
  const select = h(
    "select",
    {
      id: "example",
      "aria-label": "Open a bundled example scenario",
      onchange: (ev: Event) => {
        const name = (ev.target as HTMLSelectElement).value;
        if (!name) return;
        state.step = 0;
        runText(boot.examples[name], `examples/${name}`);
        render();
      },
    },
    h("option", { value: "" }, "Open an example…"),
    // an example stays selected only while the page runs its text unchanged
    examples.map((n) =>
      h(
        "option",
        { value: n, selected: `examples/${n}` === state.file && boot.examples[n] === state.text },
        n,
      ),
    ),
  );
  const status = r.problems.length
    ? h("span", { class: "badge bad", "data-testid": "run-status" }, "✖ scenario has errors")
    : r.ok
      ? h("span", { class: "badge good", "data-testid": "run-status" }, "✔ run ok")
      : h("span", { class: "badge bad", "data-testid": "run-status" }, "✖ run stopped");
  return h(
    "header",
    { class: "top" },
    h("h1", {}, "iommufd-sim"),
    h("span", { class: "file", title: state.file }, r.name || state.file),
    h("span", { class: "machine" }, r.machine),
    status,
    h("span", { class: "spacer" }),
    select,
  );
}

/** "Boot (step 0 of 22)" / "Step 3 of 22": steps[0] is the machine before the scenario's first step. */
function stepName(at: number, total: number): string {
  return at === 0 ? `Boot (step 0 of ${total})` : `Step ${at} of ${total}`;
}

function stepBar(): HTMLElement {
  const n = state.run.steps.length;
  const total = n - 1;
  const at = state.step;
  const btn = (label: string, text: string, to: number, key: string, id: string) =>
    h(
      "button",
      {
        type: "button",
        "aria-label": label,
        title: `${label} (${key})`,
        disabled: n === 0 || to === at,
        "data-testid": id,
        onclick: () => goto(to),
      },
      text,
    );
  const slider = h("input", {
    type: "range",
    min: 0,
    max: Math.max(0, n - 1),
    value: at,
    "aria-label": "Step",
    "aria-valuetext": n ? stepName(at, total) : "no steps",
    "data-testid": "slider",
    oninput: (ev: Event) => goto(Number((ev.target as HTMLInputElement).value)),
  });
  return h(
    "div",
    { class: "stepbar", role: "toolbar", "aria-label": "Step through the run" },
    btn("First step", "|◀", 0, "Home", "first"),
    btn("Previous step", "◀ Prev", at - 1, "←", "prev"),
    slider,
    btn("Next step", "Next ▶", at + 1, "→", "next"),
    btn("Last step", "▶|", n - 1, "End", "last"),
    h(
      "span",
      { class: "stepno", "aria-live": "polite", "data-testid": "stepno" },
      n ? stepName(at, total) : "No steps ran",
    ),
  );
}

function tabs(): HTMLElement {
  const cur = state.run.steps[state.step];
  const count = (id: TabId): number => {
    if (!cur) return 0;
    const c = cur.changed;
    const has = (p: string) => [...c].filter((x) => x.startsWith(p)).length;
    switch (id) {
      case "ioas":
        return has("area ") + has("prereg ");
      case "pt":
        return [...c].filter((x) => /(^| )pte /.test(x)).length;
      case "mem":
        return has("pin ");
      case "proc":
        return has("vma ");
      case "dma":
        return has("dma ");
      case "counters":
        return has("counter ");
    }
  };
  const list = h("div", { class: "tabs", role: "tablist", "aria-label": "Machine state" });
  for (const t of TABS) {
    const k = count(t.id);
    list.appendChild(
      h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${t.id}`,
          "aria-selected": state.tab === t.id ? "true" : "false",
          "aria-controls": "panel",
          tabindex: state.tab === t.id ? 0 : -1,
          "data-testid": `tab-${t.id}`,
          onclick: () => {
            state.tab = t.id;
            render();
            document.getElementById(`tab-${t.id}`)?.focus();
          },
          onkeydown: (ev: Event) => {
            const e = ev as KeyboardEvent;
            const i = TABS.findIndex((x) => x.id === t.id);
            const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
            if (!d) return;
            e.preventDefault();
            e.stopPropagation();
            state.tab = TABS[(i + d + TABS.length) % TABS.length].id;
            render();
            document.getElementById(`tab-${state.tab}`)?.focus();
          },
        },
        t.label,
        k ? h("span", { class: "tabchg", title: `${k} changed at this step` }, ` Δ${k}`) : null,
      ),
    );
  }
  return list;
}

function panel(): HTMLElement {
  const cur = state.run.steps[state.step];
  const p = h("div", {
    id: "panel",
    class: "panel",
    role: "tabpanel",
    "aria-labelledby": `tab-${state.tab}`,
  });
  if (!cur) {
    p.appendChild(
      h("p", { class: "empty" }, "Nothing ran: fix the scenario in the editor and run it again."),
    );
    return p;
  }
  switch (state.tab) {
    case "ioas":
      p.appendChild(renderIoas(state, cur));
      break;
    case "pt":
      p.appendChild(renderPageTables(state, cur));
      break;
    case "mem":
      p.appendChild(renderMemory(cur));
      break;
    case "proc":
      p.appendChild(renderProcesses(cur));
      break;
    case "dma":
      p.appendChild(renderDevices(state, cur));
      break;
    case "counters":
      p.appendChild(renderCounters(cur));
      break;
  }
  return p;
}

function leftPane(): HTMLElement {
  const tabBtn = (id: "steps" | "edit", label: string) =>
    h(
      "button",
      {
        type: "button",
        class: state.left === id ? "on" : "",
        "aria-pressed": state.left === id ? "true" : "false",
        "data-testid": `left-${id}`,
        onclick: () => {
          state.left = id;
          render();
        },
      },
      label,
    );
  return h(
    "aside",
    { class: state.left === "edit" ? "left editing" : "left", "aria-label": "Steps and scenario" },
    h("div", { class: "lefttabs" }, tabBtn("steps", "Steps"), tabBtn("edit", "Edit scenario")),
    state.left === "steps"
      ? renderStepList(state)
      : renderEditor(state, (text) => {
          runText(text, state.file);
          if (state.run.problems.length === 0) state.left = "steps";
          render();
        }),
  );
}

function render(): void {
  const app = document.getElementById("app");
  if (!app) return;
  // keep the editor's text and caret across renders
  const active = document.activeElement?.id;
  const cur = state.run.steps[state.step];
  app.replaceChildren(
    header(),
    h(
      "div",
      { class: "body" },
      leftPane(),
      h(
        "main",
        { class: "center" },
        stepBar(),
        h("div", { class: "detail" }, renderStep(state, cur), renderChanges(cur)),
        tabs(),
        panel(),
      ),
    ),
  );
  app.setAttribute("aria-busy", "false");
  if (active) document.getElementById(active)?.focus();
}

document.addEventListener("keydown", (ev) => {
  const t = ev.target as HTMLElement;
  if (t.closest("textarea, input[type=text], select")) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const n = state.step;
  if (ev.key === "ArrowRight" || ev.key === "j") goto(n + 1);
  else if (ev.key === "ArrowLeft" || ev.key === "k") goto(n - 1);
  else if (ev.key === "Home") goto(0);
  else if (ev.key === "End") goto(state.run.steps.length - 1);
  else return;
  ev.preventDefault();
});

runText(boot.text, boot.file);
render();
