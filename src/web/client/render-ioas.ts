import { bytesLabel, FULL, fitRange, fraction, hex, pan, type Viewport, zoom } from "../model/addr.js";
import type { IoasView, StepView } from "../model/types.js";
import { changedMark, h } from "./dom.js";
import type { AppState } from "./state.js";

export function renderIoas(state: AppState, s: StepView): HTMLElement {
  const box = h("div", { class: "ioaslist" });
  if (s.ioas.length === 0) {
    box.appendChild(
      h(
        "p",
        { class: "empty" },
        "No iommufd IOAS at this step. (A VFIO type1 or sPAPR container keeps its mappings in its own backend, not an IOAS: see its calls and Physical memory.)",
      ),
    );
  }
  for (const io of s.ioas) box.appendChild(ioasView(state, s, io));
  return box;
}

function defaultViewport(io: IoasView): Viewport {
  if (io.areas.length === 0) return FULL;
  return fitRange(io.areas[0].iova, io.areas[io.areas.length - 1].last);
}

function ioasView(state: AppState, s: StepView, io: IoasView): HTMLElement {
  const v = state.viewports.get(io.key) ?? defaultViewport(io);
  const set = (nv: Viewport) => {
    state.viewports.set(io.key, nv);
    state.rerender();
    document.getElementById(`track-${io.id}-${io.fd}`)?.focus();
  };
  const track = h("div", {
    class: "track",
    id: `track-${io.id}-${io.fd}`,
    tabindex: 0,
    role: "group",
    "aria-label": `Address line of ${io.key}: ${hex(v.start)} to ${hex(v.start + v.span - 1n)}. Plus and minus zoom, arrow keys pan.`,
    "data-testid": "track",
    onkeydown: (ev: Event) => {
      const e = ev as KeyboardEvent;
      const act: Record<string, () => Viewport> = {
        "+": () => zoom(v, 1),
        "=": () => zoom(v, 1),
        "-": () => zoom(v, -1),
        ArrowLeft: () => pan(v, -0.25),
        ArrowRight: () => pan(v, 0.25),
        "0": () => FULL,
      };
      const f = act[e.key];
      if (!f) return;
      e.preventDefault();
      e.stopPropagation();
      set(f());
    },
    onwheel: (ev: Event) => {
      const e = ev as WheelEvent;
      e.preventDefault();
      const r = (e.currentTarget as HTMLElement).getBoundingClientRect();
      set(zoom(v, e.deltaY < 0 ? 1 : -1, (e.clientX - r.left) / r.width));
    },
  });
  const pos = (a: bigint, b: bigint) => {
    const l = fraction(v, a);
    const r = fraction(v, b + 1n);
    return `left:${(l * 100).toFixed(4)}%;width:max(2px, ${((r - l) * 100).toFixed(4)}%)`;
  };
  const visible = (a: bigint, b: bigint) => b >= v.start && a < v.start + v.span;
  for (const al of io.allowed) {
    if (visible(al.start, al.last))
      track.appendChild(
        h("div", {
          class: "seg allowed",
          style: pos(al.start, al.last),
          title: `allowed [${hex(al.start)}, ${hex(al.last)}]`,
        }),
      );
  }
  for (const r of io.reserved) {
    if (!visible(r.start, r.last)) continue;
    track.appendChild(
      h(
        "div",
        {
          class: "seg reserved",
          style: pos(r.start, r.last),
          title: `reserved [${hex(r.start)}, ${hex(r.last)}]: ${r.label}`,
          "aria-label": `reserved ${hex(r.start)} to ${hex(r.last)}, ${r.label}`,
        },
        fraction(v, r.last + 1n) - fraction(v, r.start) > 0.06 ? h("span", {}, "reserved") : null,
      ),
    );
  }
  for (const a of io.areas) {
    if (!visible(a.iova, a.last)) continue;
    const chg = s.changed.has(a.sig);
    track.appendChild(
      h(
        "button",
        {
          type: "button",
          class: `seg area${chg ? " changed" : ""}`,
          style: pos(a.iova, a.last),
          title: `area [${hex(a.iova)}, ${hex(a.last)}] ${a.perms} ← ${a.source}${chg ? " (changed)" : ""}`,
          "aria-label": `area ${hex(a.iova)} to ${hex(a.last)}, ${a.perms}; zoom to it`,
          "data-iova": hex(a.iova),
          onclick: () => set(fitRange(a.iova, a.last)),
        },
        // a label only where there is room for one (the full text is in the title)
        fraction(v, a.last + 1n) - fraction(v, a.iova) > 0.08
          ? h("span", {}, `${hex(a.iova)} ${bytesLabel(a.last - a.iova + 1n)} ${a.perms}`)
          : null,
      ),
    );
  }
  const end = v.start + v.span - 1n;
  const axis = h(
    "div",
    { class: "axis", "aria-hidden": "true" },
    h("span", {}, hex(v.start)),
    h("span", {}, `${hex(v.start + v.span / 2n)} · window ${bytesLabel(v.span)}`),
    h("span", {}, hex(end)),
  );
  const btn = (label: string, text: string, f: () => Viewport) =>
    h("button", { type: "button", title: label, "aria-label": label, onclick: () => set(f()) }, text);
  const controls = h(
    "div",
    { class: "zoombar" },
    btn("Pan towards 0", "◀", () => pan(v, -0.5)),
    btn("Zoom out (×2)", "−", () => zoom(v, -1)),
    btn("Zoom in (×2)", "+", () => zoom(v, 1)),
    btn("Pan towards 2^64", "▶", () => pan(v, 0.5)),
    btn("Fit the areas", "Fit areas", () => defaultViewport(io)),
    btn("Whole 64-bit space", "All 2^64", () => FULL),
    h("span", { class: "dim" }, `Showing [${hex(v.start)}, ${hex(end)}]`),
  );
  const table = h(
    "table",
    { class: "grid", "data-testid": "areas" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "IOVA start"),
        h("th", {}, "last"),
        h("th", {}, "size"),
        h("th", {}, "perm"),
        h("th", {}, "backed by"),
        h("th", {}, "pinned pages"),
        h("th", {}, ""),
      ),
    ),
    h(
      "tbody",
      {},
      io.areas.map((a) =>
        h(
          "tr",
          { class: s.changed.has(a.sig) ? "changed" : "" },
          h("td", { class: "mono" }, hex(a.iova)),
          h("td", { class: "mono" }, hex(a.last)),
          h("td", {}, bytesLabel(a.last - a.iova + 1n)),
          h("td", { class: "mono" }, a.perms),
          h("td", { class: "mono" }, a.source),
          h("td", {}, String(a.pinnedPages)),
          h("td", {}, changedMark(s.changed.has(a.sig))),
        ),
      ),
      io.reserved.map((r) =>
        h(
          "tr",
          { class: "res" },
          h("td", { class: "mono" }, hex(r.start)),
          h("td", { class: "mono" }, hex(r.last)),
          h("td", {}, bytesLabel(r.last - r.start + 1n)),
          h("td", {}, "—"),
          h("td", {}, `reserved: ${r.label}`),
          h("td", {}, ""),
          h("td", {}, ""),
        ),
      ),
      io.allowed.map((r) =>
        h(
          "tr",
          { class: "res" },
          h("td", { class: "mono" }, hex(r.start)),
          h("td", { class: "mono" }, hex(r.last)),
          h("td", {}, bytesLabel(r.last - r.start + 1n)),
          h("td", {}, "—"),
          h("td", {}, "allowed range (IOAS_ALLOW_IOVAS)"),
          h("td", {}, ""),
          h("td", {}, ""),
        ),
      ),
    ),
  );
  return h(
    "section",
    { class: "ioas", "aria-label": io.key, "data-testid": "ioas" },
    h(
      "h3",
      {},
      io.key,
      h(
        "span",
        { class: "dim" },
        ` — ${io.areas.length} area(s), ${io.reserved.length} reserved range(s)${io.allowed.length ? `, ${io.allowed.length} allowed range(s)` : ""}`,
      ),
    ),
    controls,
    track,
    axis,
    h(
      "p",
      { class: "legend dim" },
      h("span", { class: "key area" }, "area"),
      " mapped  ",
      h("span", { class: "key reserved" }, "reserved"),
      " reserved (hatched)  ",
      h("span", { class: "key allowed" }, "allowed"),
      " allowed (outlined)",
    ),
    table,
  );
}
