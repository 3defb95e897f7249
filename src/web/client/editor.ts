import { h } from "./dom.js";
import type { AppState } from "./state.js";

/**
 * The scenario editor: a textarea with a line-number gutter; the scenario
 * parser's errors are marked on their line and listed under it. Ctrl+Enter
 * (or the button) parses and reruns the scenario in this page.
 */
export function renderEditor(state: AppState, run: (text: string) => void): HTMLElement {
  const problems = state.run.problems;
  const bad = new Set(problems.map((p) => p.line).filter((l): l is number => l !== undefined));
  const ta = h("textarea", {
    id: "editor",
    spellcheck: "false",
    "aria-label": "Scenario YAML",
    "aria-invalid": problems.length ? "true" : "false",
    "aria-describedby": "problems",
    "data-testid": "editor",
  });
  ta.value = state.text;
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const fillGutter = () => {
    const n = ta.value.split("\n").length;
    gutter.replaceChildren(
      ...Array.from({ length: n }, (_, i) =>
        h("div", { class: bad.has(i + 1) ? "errline" : "" }, bad.has(i + 1) ? `✖${i + 1}` : String(i + 1)),
      ),
    );
  };
  fillGutter();
  ta.addEventListener("input", () => {
    state.text = ta.value;
    fillGutter();
  });
  ta.addEventListener("scroll", () => {
    gutter.scrollTop = ta.scrollTop;
  });
  ta.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      run(ta.value);
    } else if (ev.key === "Tab" && !ev.shiftKey && !ev.ctrlKey) {
      // two spaces, as YAML wants; Escape then Tab leaves the editor
      if (ta.dataset.escaped === "1") return;
      ev.preventDefault();
      ta.setRangeText("  ", ta.selectionStart, ta.selectionEnd, "end");
      state.text = ta.value;
    } else if (ev.key === "Escape") {
      ta.dataset.escaped = "1";
    } else {
      delete ta.dataset.escaped;
    }
  });
  const list = h(
    "div",
    {
      id: "problems",
      class: "problems",
      role: problems.length ? "alert" : "status",
      "data-testid": "problems",
    },
    problems.length
      ? problems.map((p) =>
          h(
            "button",
            {
              type: "button",
              class: "problem",
              onclick: () => {
                if (p.line === undefined) return;
                const lines = ta.value.split("\n");
                const start = lines.slice(0, p.line - 1).join("\n").length + (p.line > 1 ? 1 : 0);
                ta.focus();
                ta.setSelectionRange(start, start + (lines[p.line - 1]?.length ?? 0));
              },
            },
            `✖ ${p.line !== undefined ? `line ${p.line}: ` : ""}${p.message}`,
          ),
        )
      : h(
          "span",
          { class: "dim" },
          "Ctrl+Enter runs the scenario in this page. Escape, then Tab, leaves the editor.",
        ),
  );
  // bring the first error into view once the editor is on the page
  const first = problems.find((p) => p.line !== undefined)?.line;
  if (first !== undefined)
    requestAnimationFrame(() => {
      ta.scrollTop = Math.max(0, (first - 4) * 18.125);
      gutter.scrollTop = ta.scrollTop;
    });
  return h(
    "div",
    { class: "editorbox" },
    h("div", { class: "editwrap" }, gutter, ta),
    h(
      "div",
      { class: "editbar" },
      h(
        "button",
        { type: "button", class: "primary", "data-testid": "run", onclick: () => run(ta.value) },
        "Run ▶",
      ),
      h("span", { class: "dim" }, state.file),
    ),
    list,
  );
}
