/// <reference lib="dom" />
// WCAG 2.x contrast of the text the page shows, measured in the browser on
// the computed styles (what the user sees, not what style.css intends).
// Runs inside the page through page.evaluate: self-contained, no imports.

export interface LowContrast {
  text: string;
  color: string;
  background: string;
  ratio: number;
  needed: number;
}

/**
 * Every visible, enabled element with text of its own whose contrast against
 * the first opaque background behind it is below WCAG AA (4.5:1, or 3:1 for
 * large text: 24px, or 18.66px bold). Text over a gradient or image is
 * skipped (no single background to measure), as are disabled controls
 * (WCAG exempts inactive components).
 */
export function findLowContrast(): LowContrast[] {
  const parse = (c: string): [number, number, number, number] | null => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    const p = m[1]
      .split(/[,\s/]+/)
      .filter((s) => s !== "")
      .map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = (rgb: number[]) => {
    const f = (v: number) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  };
  // The colour behind el: opaque backgrounds of ancestors, translucent ones blended over them.
  const backdrop = (el: Element): number[] | null => {
    const layers: number[][] = [];
    for (let e: Element | null = el; e; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.backgroundImage !== "none") return null;
      const c = parse(cs.backgroundColor);
      if (c && c[3] > 0) {
        layers.push(c);
        if (c[3] >= 1) break;
      }
    }
    let out = [255, 255, 255];
    for (let i = layers.length - 1; i >= 0; i--) {
      const [r, g, b, a] = layers[i];
      out = [r * a + out[0] * (1 - a), g * a + out[1] * (1 - a), b * a + out[2] * (1 - a)];
    }
    return out;
  };
  const found: LowContrast[] = [];
  for (const el of Array.from(document.body.querySelectorAll("*"))) {
    const own = Array.from(el.childNodes)
      .filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent ?? "")
      .join("")
      .trim();
    if (own === "" || (el as HTMLButtonElement).disabled) continue;
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || cs.visibility === "hidden" || Number(cs.opacity) === 0) continue;
    const fg = parse(cs.color);
    const bg = backdrop(el);
    if (!fg || !bg) continue;
    const blended = [0, 1, 2].map((i) => fg[i] * fg[3] + bg[i] * (1 - fg[3]));
    const [l1, l2] = [lum(blended), lum(bg)].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const px = Number.parseFloat(cs.fontSize);
    const large = px >= 24 || (px >= 18.66 && Number(cs.fontWeight) >= 700);
    const needed = large ? 3 : 4.5;
    if (ratio < needed - 0.005) {
      found.push({
        text: own.slice(0, 40),
        color: cs.color,
        background: `rgb(${bg.map(Math.round).join(", ")})`,
        ratio,
        needed,
      });
    }
  }
  return found;
}
