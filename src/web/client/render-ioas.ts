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
        "No IOVA space at this step: no iommufd IOAS and no VFIO container is open.",
      ),
    );
  }
  for (const io of s.ioas) box.appendChild(ioasView(state, s, io));
  return box;
}

/** Mappings further apart than this are not fitted together: each would be a sliver (the PPC64 windows, 2^59 apart). */
const FIT_LIMIT = 1n << 48n;

/**
 * Fit the mappings (or the first one, when they are too far apart to see
 * together: the table's rows zoom to the others); with none, the first
 * window or allowed range (an sPAPR window before MAP_DMA); else all 2^64.
 */
function defaultViewport(io: IoasView): Viewport {
  if (io.areas.length > 0) {
    const all = fitRange(io.areas[0].iova, io.areas[io.areas.length - 1].last);
    return all.span <= FIT_LIMIT ? all : fitRange(io.areas[0].iova, io.areas[0].last);
  }
  if (io.kind === "spapr" && io.allowed.length > 0) return fitRange(io.allowed[0].start, io.allowed[0].last);
  return FULL;
}

function ioasView(state: AppState, s: StepView, io: IoasView): HTMLElement {
  const v = state.viewports.get(io.key) ?? defaultViewport(io);
  const set = (nv: Viewport) => {
    state.viewports.set(io.key, nv);
    state.rerender();
    document.getElementById(`track-${io.anchor}`)?.focus();
  };
  const track = h("div", {
    class: "track",
    id: `track-${io.anchor}`,
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
  const what = io.kind === "ioas" ? "area" : "mapping";
  const visible = (a: bigint, b: bigint) => b >= v.start && a < v.start + v.span;
  for (const al of io.allowed) {
    if (visible(al.start, al.last))
      track.appendChild(
        h(
          io.kind === "spapr" ? "button" : "div",
          {
            type: io.kind === "spapr" ? "button" : undefined,
            class: `seg allowed${io.kind === "spapr" ? " window" : ""}`,
            style: pos(al.start, al.last),
            title: `${io.kind === "spapr" ? al.label : io.allowedName} [${hex(al.start)}, ${hex(al.last)}]`,
            "aria-label":
              io.kind === "spapr"
                ? `${al.label}, bus ${hex(al.start)} to ${hex(al.last)}; zoom to it`
                : undefined,
            "data-start": hex(al.start),
            onclick: io.kind === "spapr" ? () => set(fitRange(al.start, al.last)) : undefined,
          },
          io.kind === "spapr" && fraction(v, al.last + 1n) - fraction(v, al.start) > 0.12
            ? h("span", { class: "wlabel" }, al.label.split(":")[0])
            : null,
        ),
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
          title: `${what} [${hex(a.iova)}, ${hex(a.last)}] ${a.perms} ← ${a.source}${chg ? " (changed)" : ""}`,
          "aria-label": `${what} ${hex(a.iova)} to ${hex(a.last)}, ${a.perms}; zoom to it`,
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
    btn(
      io.kind === "ioas" ? "Fit the areas" : "Fit the mappings",
      io.kind === "ioas" ? "Fit areas" : "Fit mappings",
      () => defaultViewport(io),
    ),
    btn("Whole 64-bit space", "All 2^64", () => FULL),
    h("span", { class: "dim" }, `Showing [${hex(v.start)}, ${hex(end)}]`),
  );
  // one table, by address: a window or allowed range, then what is mapped in it, reserved ranges
  // between; each row says what it is in words and zooms the line to itself
  type Row = { start: bigint; last: bigint; rank: number; el: HTMLElement };
  const zoomBtn = (text: string, label: string, a: bigint, b: bigint) =>
    h(
      "button",
      { type: "button", class: "link", "aria-label": label, onclick: () => set(fitRange(a, b)) },
      text,
    );
  const rows: Row[] = [];
  for (const a of io.areas) {
    const chg = s.changed.has(a.sig);
    rows.push({
      start: a.iova,
      last: a.last,
      rank: 1,
      el: h(
        "tr",
        { class: chg ? "changed" : "", "data-kind": what },
        h("td", {}, zoomBtn(what, `zoom to the ${what} at ${hex(a.iova)}`, a.iova, a.last)),
        h("td", { class: "mono" }, hex(a.iova)),
        h("td", { class: "mono" }, hex(a.last)),
        h("td", {}, bytesLabel(a.last - a.iova + 1n)),
        h("td", { class: "mono" }, a.perms),
        h("td", { class: "mono" }, a.source),
        h("td", {}, a.pinnedPages === undefined ? "— (pre-registered)" : String(a.pinnedPages)),
        h("td", {}, changedMark(chg)),
      ),
    });
  }
  for (const r of io.reserved) {
    rows.push({
      start: r.start,
      last: r.last,
      rank: 2,
      el: h(
        "tr",
        { class: "res", "data-kind": "reserved" },
        h("td", {}, zoomBtn("reserved", `zoom to the reserved range at ${hex(r.start)}`, r.start, r.last)),
        h("td", { class: "mono" }, hex(r.start)),
        h("td", { class: "mono" }, hex(r.last)),
        h("td", {}, bytesLabel(r.last - r.start + 1n)),
        h("td", {}, "—"),
        h("td", {}, r.label),
        h("td", {}, ""),
        h("td", {}, ""),
      ),
    });
  }
  for (const r of io.allowed) {
    const word = io.kind === "spapr" ? r.label.split(":")[0] : io.kind === "type1" ? "usable" : "allowed";
    rows.push({
      start: r.start,
      last: r.last,
      rank: 0,
      el: h(
        "tr",
        { class: "res", "data-kind": io.kind === "spapr" ? "window" : "allowed" },
        h("td", {}, zoomBtn(word, `zoom to the ${word} at ${hex(r.start)}`, r.start, r.last)),
        h("td", { class: "mono" }, hex(r.start)),
        h("td", { class: "mono" }, hex(r.last)),
        h("td", {}, bytesLabel(r.last - r.start + 1n)),
        h("td", {}, "—"),
        h("td", {}, io.kind === "spapr" ? r.label.slice(r.label.indexOf(":") + 2) : io.allowedName),
        h("td", {}, ""),
        h("td", {}, ""),
      ),
    });
  }
  rows.sort((x, y) => (x.start !== y.start ? (x.start < y.start ? -1 : 1) : x.rank - y.rank));
  const head = (...cols: string[]) =>
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        cols.map((c) => h("th", {}, c)),
      ),
    );
  const table = h(
    "table",
    { class: "grid", "data-testid": "areas" },
    head("what", "IOVA start", "last", "size", "perm", "backed by / what it is", "pinned pages", ""),
    h(
      "tbody",
      {},
      rows.map((r) => r.el),
    ),
  );
  const prereg = io.prereg?.length
    ? h(
        "table",
        { class: "grid", "data-testid": "prereg" },
        h(
          "caption",
          {},
          "Pre-registered memory (VFIO_IOMMU_SPAPR_REGISTER_MEMORY): pinned once, TCEs point into it",
        ),
        head("user VA", "size", "TCEs pointing into it", "pinned pages", ""),
        h(
          "tbody",
          {},
          io.prereg.map((r) =>
            h(
              "tr",
              { class: s.changed.has(r.sig) ? "changed" : "" },
              h("td", { class: "mono" }, hex(r.ua)),
              h("td", {}, bytesLabel(r.size)),
              h("td", {}, String(r.tces)),
              h("td", {}, String(r.runs.reduce((n, x) => n + x.n, 0))),
              h("td", {}, changedMark(s.changed.has(r.sig))),
            ),
          ),
        ),
      )
    : null;
  return h(
    "section",
    { class: "ioas", "aria-label": io.key, "data-testid": "ioas", "data-kind": io.kind },
    h("h3", {}, io.key),
    h("p", { class: "about" }, io.about),
    controls,
    track,
    axis,
    h(
      "p",
      { class: "legend dim" },
      h("span", { class: "key area" }, io.kind === "ioas" ? "area" : "mapping"),
      io.kind === "ioas"
        ? " mapped (IOMMU_IOAS_MAP)  "
        : io.kind === "type1"
          ? " VFIO_IOMMU_MAP_DMA  "
          : " TCEs set  ",
      io.reserved.length ? h("span", { class: "key reserved" }, "reserved") : null,
      io.reserved.length
        ? io.kind === "spapr"
          ? " no window: nothing translates (hatched)  "
          : " reserved (hatched)  "
        : null,
      io.allowed.length
        ? h("span", { class: "key allowed" }, io.kind === "spapr" ? "window" : "allowed")
        : null,
      io.allowed.length ? ` ${io.allowedName} (outlined)` : null,
    ),
    table,
    prereg,
  );
}
