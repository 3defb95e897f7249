import type { Viewport } from "../model/addr.js";
import type { RunView } from "../model/types.js";

export type TabId = "ioas" | "pt" | "mem" | "proc" | "dma" | "counters";

export const TABS: { id: TabId; label: string }[] = [
  { id: "ioas", label: "IOVA spaces" },
  { id: "pt", label: "Page tables" },
  { id: "mem", label: "Physical memory" },
  { id: "proc", label: "Processes" },
  { id: "dma", label: "Devices & DMA" },
  { id: "counters", label: "Counters" },
];

/** The page's state: the run and where the user is looking. */
export interface AppState {
  file: string;
  text: string;
  run: RunView;
  step: number;
  tab: TabId;
  left: "steps" | "edit";
  /** Address-line viewport per IOAS key. */
  viewports: Map<string, Viewport>;
  /** The IOVA to walk per HWPT key (text as typed). */
  walk: Map<string, string>;
  /** Page-table entries the user opened (by table PA and index). */
  open: Set<string>;
  rerender: () => void;
  goto: (n: number) => void;
}
