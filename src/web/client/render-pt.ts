import { bytesLabel, hex } from "../model/addr.js";
import { windowName } from "../model/containers.js";
import { countEntries, leafPa, ptePath, translate, walkMiss } from "../model/pte.js";
import type { HwptView, PteView, StepView, WindowView } from "../model/types.js";
import { changedMark, h } from "./dom.js";
import type { AppState } from "./state.js";

const FORMAT_NAMES: Record<string, string> = {
  amdv1: "AMD IOMMU v1",
  amdv1_mock: "AMDv1 (iommufd selftest mock, 2 KiB granule)",
  vtdss: "Intel VT-d second stage",
  x86_64: "x86-64 (VT-d first stage)",
  riscv: "RISC-V IOMMU (Sv39/48/57)",
  spapr_tce: "sPAPR TCE (PowerNV)",
};

/** Rows shown under one table before "show more": 512 leaves each in the DOM would bury the path. */
const PAGE = 64;

export function renderPageTables(state: AppState, s: StepView): HTMLElement {
  const box = h("div", { class: "ptlist" });
  if (s.hwpts.length === 0)
    box.appendChild(h("p", { class: "empty" }, "No HWPT (IOMMU page table) at this step."));
  for (const hw of s.hwpts) box.appendChild(hwptView(state, s, hw));
  return box;
}

/** The IOVA a walk starts from by default: the newest DMA so far, else the first mapped byte. */
function defaultWalk(s: StepView, hw: HwptView): string {
  // only a device behind the IOMMU puts IOVAs on the bus; a noiommu device's addresses are physical
  const translated = new Set(s.devices.filter((d) => d.behindIommu).map((d) => d.bdf));
  const last = [...s.dma].reverse().find((d) => d.step <= s.n && translated.has(d.device));
  if (last) return hex(last.addr);
  const first = hw.roots.length ? firstLeaf(hw.roots) : undefined;
  return first ? hex(first.iovaStart) : "0x0";
}

function firstLeaf(l: PteView[]): PteView | undefined {
  for (const e of l) {
    if (e.kind === "leaf") return e;
    const c = firstLeaf(e.children);
    if (c) return c;
  }
  return undefined;
}

function parseIova(t: string): bigint | undefined {
  try {
    const v = BigInt(t.trim());
    return v >= 0n && v < 1n << 64n ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The entry's 8 bytes in memory order (TCEs are big-endian, the other formats little-endian). */
function memBytes(raw: bigint, bigEndian: boolean): string {
  const b = Array.from({ length: 8 }, (_, i) =>
    Number((raw >> BigInt(8 * i)) & 0xffn)
      .toString(16)
      .padStart(2, "0"),
  );
  return (bigEndian ? b.reverse() : b).join(" ");
}

/** TCE_RPN_SHIFT: a TCE's real page number counts 4 KiB pages whatever the TCE size. */
const TCE_RPN_SHIFT = 12n;

function decodedLines(e: PteView, hw: HwptView): string[] {
  const tce = hw.format === "spapr_tce";
  const out = [
    `L${e.level}[${e.index}] in the table at PA ${hex(e.tablePhys)} (entry at ${hex(e.tablePhys + BigInt(e.index) * 8n)})`,
    `raw ${e.raw.toString(16).padStart(16, "0")}  bytes (${hw.bigEndian ? "big-endian" : "LE"}) ${memBytes(e.raw, hw.bigEndian)}`,
    `covers ${tce ? "bus address" : "IOVA"} [${hex(e.iovaStart)}, ${hex(e.iovaLast)}] (${bytesLabel(e.iovaLast - e.iovaStart + 1n)})`,
  ];
  if (e.kind === "table") out.push(`next-level table at PA ${e.pa !== undefined ? hex(e.pa) : "?"}`);
  if (e.kind === "leaf") {
    out.push(`maps PA ${e.pa !== undefined ? hex(e.pa) : "?"}, page size ${e.size ?? "?"}`);
    if (tce && e.pa !== undefined)
      out.push(`RPN ${hex(e.pa >> TCE_RPN_SHIFT)} (bits 12-63: the host address >> 12)`);
    const pa = leafPa(e, e.iovaStart);
    if (pa !== e.pa && pa !== undefined) out.push(`this slot (IOVA ${hex(e.iovaStart)}) is PA ${hex(pa)}`);
    out.push(
      `permissions: ${e.perms}${tce ? " (TCE_PCI_READ 0x1, TCE_PCI_WRITE 0x2: what the device may do)" : ""}`,
    );
  }
  if (e.flags.length) out.push(`flags: ${e.flags.map((f) => flagText(hw.format, f)).join(" · ")}`);
  return out;
}

/** What each bit a format's dump names means, for a learner (the raw bits are on the line above). */
const FLAGS: Record<string, Record<string, string>> = {
  amdv1: { IR: "DMA read allowed", IW: "DMA write allowed", FC: "force coherent", A: "accessed", D: "dirty" },
  vtdss: {
    R: "DMA read allowed",
    W: "DMA write allowed",
    PS: "large page",
    SNP: "snoop",
    A: "accessed",
    D: "dirty",
  },
  x86_64: {
    P: "present",
    RW: "writable",
    US: "user",
    PS: "large page",
    A: "accessed",
    D: "dirty",
    G: "global",
    XD: "execute disable",
  },
  riscv: {
    V: "valid",
    R: "read",
    W: "write",
    X: "execute",
    U: "user",
    G: "global",
    A: "accessed",
    D: "dirty",
    N: "NAPOT (Svnapot) range",
  },
};
FLAGS.amdv1_mock = FLAGS.amdv1;

function flagText(format: string | undefined, f: string): string {
  const nl = /^NL=(\d)$/.exec(f);
  if (nl)
    return `${f} (next level ${nl[1]}${nl[1] === "0" ? ": maps a page" : nl[1] === "7" ? ": page size in the address bits" : ""})`;
  if (f.endsWith("(RW)")) return `${f} (TCE_PCI_READ | TCE_PCI_WRITE)`;
  if (f.endsWith("(R)")) return `${f} (TCE_PCI_READ: the device may read memory)`;
  if (f.endsWith("(W)")) return `${f} (TCE_PCI_WRITE: the device may write memory)`;
  const m = FLAGS[format ?? ""]?.[f];
  return m ? `${f} (${m})` : f;
}

/** "0x205000 → 0x10e771000 4K slot of an 8K page read write". */
function leafText(e: PteView): string {
  const pa = leafPa(e, e.iovaStart);
  const slot = bytesLabel(e.iovaLast - e.iovaStart + 1n);
  const size =
    e.size === undefined || e.size === slot
      ? (e.size ?? "")
      : `(${slot} slot of a ${e.size} page at ${e.pa !== undefined ? hex(e.pa) : "?"})`;
  return `${hex(e.iovaStart)} → ${pa !== undefined ? hex(pa) : "?"} ${size} ${e.perms}`;
}

function hwptView(state: AppState, s: StepView, hw: HwptView): HTMLElement {
  const sec = h("section", {
    class: "hwpt",
    "aria-label": hw.key,
    "data-testid": "hwpt",
    "data-kind": hw.kind,
  });
  sec.appendChild(h("h3", {}, hw.key));
  sec.appendChild(h("p", { class: "about" }, hw.about));
  if (hw.error) {
    sec.appendChild(h("p", { class: "dim" }, hw.error));
    return sec;
  }
  sec.appendChild(
    h(
      "p",
      { class: "ptinfo" },
      hw.windows
        ? `Format ${FORMAT_NAMES.spapr_tce} · ${hw.windows.length} DMA window(s), one TCE table each · ${hw.entryCount} non-empty entries`
        : `Format ${FORMAT_NAMES[hw.format ?? ""] ?? hw.format} · root table at ${hex(hw.rootPhys ?? 0n)} · top level ${hw.topLevel} · ${hw.entryCount} non-empty entries`,
    ),
  );
  if (hw.entryCount === 0) {
    for (const w of hw.windows ?? []) sec.appendChild(windowHead(w, 0));
    sec.appendChild(h("p", { class: "dim" }, "No entry to show: nothing is mapped in this table yet."));
    return sec;
  }
  const walkText = state.walk.get(hw.key) ?? defaultWalk(s, hw);
  const iova = parseIova(walkText);
  const path = iova === undefined ? [] : ptePath(hw.roots, iova);
  const onPath = new Set(path);
  const pa = iova === undefined ? undefined : translate(hw.roots, iova);
  const inspector = h(
    "div",
    { class: "inspector", "aria-live": "polite", "data-testid": "pte-inspector" },
    h("p", { class: "dim" }, "Hover or focus an entry to decode it."),
  );
  const show = (e: PteView) =>
    inspector.replaceChildren(
      h(
        "h4",
        {},
        `L${e.level}[${e.index}] ${e.kind === "leaf" ? (hw.windows ? "TCE" : "leaf") : e.kind === "table" ? "table pointer" : "entry"}`,
      ),
      ...decodedLines(e, hw).map((l) => h("div", { class: "mono" }, l)),
    );
  const input = h("input", {
    type: "text",
    id: `walk-${hw.anchor}`,
    value: walkText,
    spellcheck: "false",
    "aria-label": hw.windows ? "Bus address (IOVA) to walk" : "IOVA to walk",
    "data-testid": "walk-iova",
    onchange: (ev: Event) => {
      state.walk.set(hw.key, (ev.target as HTMLInputElement).value);
      state.rerender();
    },
  });
  sec.appendChild(
    h(
      "div",
      { class: "walk" },
      h("label", { for: input.id }, hw.windows ? "Walk bus address " : "Walk IOVA "),
      input,
      h(
        "span",
        { "data-testid": "walk-result", class: pa === undefined ? "bad" : "" },
        iova === undefined
          ? " not an address"
          : pa === undefined
            ? ` → no ${hw.windows ? "TCE" : "leaf"} maps ${hex(iova)} (the IOMMU faults: ${missText(hw, path, iova)})`
            : ` → PA ${hex(pa)} via ${path.map((e) => `L${e.level}[${e.index}]`).join(" → ")}`,
      ),
    ),
  );
  const entryRow = (e: PteView): HTMLElement => {
    const chg = s.changed.has(e.sig);
    const key = `${e.tablePhys}:${e.index}`;
    const on = onPath.has(e);
    const row = h(
      "span",
      {
        class: `pte ${e.kind}${on ? " onpath" : ""}${chg ? " changed" : ""}`,
        tabindex: 0,
        role: "treeitem",
        "aria-level": (hw.topLevel ?? e.level) - e.level + 1,
        title: decodedLines(e, hw).join("\n"),
        "data-testid": "pte",
        "data-level": e.level,
        "data-index": e.index,
        "data-pa": e.pa !== undefined ? hex(e.pa) : "",
        "data-rpn":
          hw.windows && e.kind === "leaf" && e.pa !== undefined ? hex(e.pa >> TCE_RPN_SHIFT) : undefined,
        "data-iova": hex(e.iovaStart),
        onmouseenter: () => show(e),
        onfocus: () => show(e),
      },
      on ? h("span", { class: "pathmark", title: "on the walk's path" }, "◆ path ") : null,
      h("span", { class: "idx" }, `L${e.level}[${String(e.index).padStart(3, "0")}]`),
      " ",
      h("span", { class: "raw" }, e.raw.toString(16).padStart(16, "0")),
      " ",
      h("span", { class: "txt" }, e.kind === "leaf" ? leafText(e) : e.text),
      changedMark(chg),
    );
    if (e.kind !== "table") return h("li", { role: "none" }, row);
    const details = h("details", { open: on || state.open.has(key) });
    row.setAttribute("aria-expanded", details.open ? "true" : "false");
    details.addEventListener("toggle", () => {
      row.setAttribute("aria-expanded", details.open ? "true" : "false");
      if (details.open) state.open.add(key);
      else state.open.delete(key);
      if (details.open && details.querySelector("ul")?.childElementCount === 0) fill();
    });
    const kids = h("ul", { role: "group" });
    const fill = () => pagedList(kids, e.children, onPath, entryRow);
    details.appendChild(
      h(
        "summary",
        // the entry inside is the one keyboard stop; arrows and Enter open and close it
        { tabindex: -1 },
        row,
        h("span", { class: "dim" }, ` ${e.children.length} entr${e.children.length === 1 ? "y" : "ies"}`),
      ),
    );
    details.appendChild(kids);
    if (details.open) fill();
    return h("li", { role: "none" }, details);
  };
  const trees = h("div", { class: "trees" });
  const windows = hw.windows ?? [{ roots: hw.roots } as WindowView];
  for (const w of windows) {
    if (hw.windows) trees.appendChild(windowHead(w, countEntries(w.roots)));
    const tree = h("ul", {
      class: "pt",
      role: "tree",
      "aria-label": hw.windows ? `${windowName(w.slot)} TCE table` : `${hw.key} page table`,
    });
    pagedList(tree, w.roots, onPath, entryRow);
    tree.addEventListener("keydown", treeKeys);
    trees.appendChild(tree);
  }
  sec.appendChild(h("div", { class: "ptwrap" }, trees, inspector));
  return sec;
}

/**
 * The tree's keys (WAI-ARIA tree pattern): Up/Down move between the visible
 * entries, Right opens a table entry (or moves into it), Left closes it (or
 * moves to its parent), Enter/Space toggle, Home/End go to the ends. They do
 * not also step the run.
 */
function treeKeys(ev: Event): void {
  const e = ev as KeyboardEvent;
  const tree = e.currentTarget as HTMLElement;
  const row = (e.target as HTMLElement).closest<HTMLElement>(".pte");
  if (row === null || e.ctrlKey || e.metaKey || e.altKey) return;
  const rows = [...tree.querySelectorAll<HTMLElement>(".pte")].filter((r) => r.getClientRects().length > 0);
  const i = rows.indexOf(row);
  const own =
    row.parentElement?.tagName === "SUMMARY" ? (row.parentElement.parentElement as HTMLDetailsElement) : null;
  const parent = row.closest("ul")?.closest("details")?.querySelector<HTMLElement>(":scope > summary > .pte");
  switch (e.key) {
    case "ArrowDown":
      rows[i + 1]?.focus();
      break;
    case "ArrowUp":
      rows[i - 1]?.focus();
      break;
    case "Home":
      rows[0]?.focus();
      break;
    case "End":
      rows.at(-1)?.focus();
      break;
    case "ArrowRight":
      if (own && !own.open) own.open = true;
      else if (own) rows[i + 1]?.focus();
      break;
    case "ArrowLeft":
      if (own?.open) own.open = false;
      else parent?.focus();
      break;
    case "Enter":
    case " ":
      if (own) own.open = !own.open;
      break;
    default:
      return;
  }
  // the toggle event that also says so comes later; say it now
  if (own) row.setAttribute("aria-expanded", own.open ? "true" : "false");
  e.preventDefault();
  e.stopPropagation();
}

/** "L2[0] → L1[32] is empty", or "outside every DMA window". */
function missText(hw: HwptView, path: PteView[], iova: bigint): string {
  const w = hw.windows?.find((x) => x.start <= iova && iova <= x.last);
  if (hw.windows && w === undefined) return "outside every DMA window";
  const miss = walkMiss(w ? w.roots : hw.roots, iova);
  const read = path.map((e) => `L${e.level}[${e.index}]`);
  if (miss) read.push(`L${miss.level}[${miss.index}] is empty`);
  else read.push(path.length ? "no entry below" : "nothing at the root");
  return read.join(" → ");
}

/** A window's heading: where it sits on the bus and the shape of its TCE table. */
function windowHead(w: WindowView, n: number): HTMLElement {
  return h(
    "h4",
    { class: "window", "data-testid": "window", "data-start": hex(w.start) },
    `${windowName(w.slot)}: bus [${hex(w.start)}, ${hex(w.last)}] (${bytesLabel(w.last - w.start + 1n)})`,
    h(
      "span",
      { class: "dim" },
      ` · ${bytesLabel(1n << BigInt(w.pageShift))} TCEs (page shift ${w.pageShift}) · ${w.levels} level(s) of ${w.levelSize} entries · it_offset ${hex(w.itOffset)}, it_size ${w.itSize} · table at PA ${hex(w.rootPhys)} · ${n} TCE(s) set`,
    ),
  );
}

/**
 * Entries into a list PAGE at a time with a "show more" button (512 rows
 * would bury the path); the entry on the walk's path always shows.
 */
function pagedList(
  ul: HTMLElement,
  entries: PteView[],
  onPath: Set<PteView>,
  row: (e: PteView) => HTMLElement,
): void {
  let shown = 0;
  const pathKid = entries.find((c) => onPath.has(c));
  const more = () => {
    const batch = entries.slice(shown, shown + PAGE);
    if (shown === 0 && pathKid && !batch.includes(pathKid)) batch.unshift(pathKid);
    else if (shown > 0 && pathKid) {
      const i = batch.indexOf(pathKid);
      if (i >= 0 && entries.indexOf(pathKid) >= PAGE) batch.splice(i, 1);
    }
    for (const c of batch) ul.appendChild(row(c));
    shown += PAGE;
    ul.querySelector(":scope > .more")?.remove();
    if (shown < entries.length)
      ul.appendChild(
        h(
          "li",
          { class: "more" },
          h(
            "button",
            { type: "button", onclick: more },
            `show ${Math.min(PAGE, entries.length - shown)} more of ${entries.length}`,
          ),
        ),
      );
  };
  more();
}
