import type { HwptDebugInfo, Machine, Process } from "../index.js";
import type { RunResult, Scenario } from "../scenario/index.js";
import { formatFlags } from "../uapi/struct.js";
import { execute, exitCode, failureLines, profileOf, toJson } from "./common.js";
import { iommufdViews } from "./inspect-state.js";
import type { CliContext } from "./main.js";

const MAP_FLAGS = { FIXED_IOVA: 1n, WRITEABLE: 2n, READABLE: 4n };
const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/** `iommufd-sim inspect <scenario>`: the state a run leaves behind. */
export function cmdInspect(ctx: CliContext, sc: Scenario): number {
  const { out, opts } = ctx;
  const r = execute(ctx, sc, true);
  if (r.machine === undefined) {
    for (const l of failureLines(ctx, r)) out.error(l);
    return exitCode(r);
  }
  const report = buildReport(r, r.machine);
  if (opts.json) out.always(toJson(report));
  else printReport(ctx, report);
  if (!r.ok) for (const l of failureLines(ctx, r)) out.error(l);
  return exitCode(r);
}

interface HwptReport {
  id: number;
  auto: boolean;
  ptId: number;
  format?: string;
  rootPhys?: bigint;
  topLevel?: number;
  entries?: { level: number; index: number; tablePhys: bigint; raw: bigint; text: string }[];
  /** When the decoded dump is not available: the root table's non-zero entries, raw. */
  rootEntries?: { index: number; raw: bigint }[];
  error?: string;
}

interface Report {
  scenario: string;
  ok: boolean;
  iommufds: {
    pid: number;
    fd: number;
    open: boolean;
    ioas: { id: number; areas: { iova: bigint; length: bigint; flags: string; source: string }[] }[];
    hwpts: HwptReport[];
    devices: { devId: number; deviceFd: number; attachedTo: number | null }[];
  }[];
  counters: Record<string, number>;
  dma: ReturnType<Machine["debug"]["dmaLog"]>;
  taint: string[];
  dmesg: string[];
  invariants: string[];
}

function buildReport(r: RunResult, m: Machine): Report {
  const byPid = new Map<number, Process>();
  for (const p of r.processes.values()) byPid.set(p.pid, p);
  const views = iommufdViews(m.debug.trace(), profileOf(r.scenario));
  return {
    scenario: r.scenario.name,
    ok: r.ok,
    iommufds: views.map((v) => ({
      pid: v.pid,
      fd: v.fd,
      open: v.open,
      ioas: [...v.ioas].map(([id, areas]) => ({
        id,
        areas: areas
          .slice()
          .sort((a, b) => (a.iova < b.iova ? -1 : 1))
          .map((a) => ({
            iova: a.iova,
            length: a.length,
            flags: formatFlags(MAP_FLAGS, a.flags),
            source: a.source,
          })),
      })),
      hwpts: [...v.hwpts].map(([id, h]) => hwptReport(m, v.open ? byPid.get(v.pid) : undefined, v.fd, id, h)),
      devices: [...v.devices].map(([devId, d]) => ({
        devId,
        deviceFd: d.deviceFd,
        attachedTo: d.attachedTo ?? null,
      })),
    })),
    counters: m.debug.counters(),
    dma: m.debug.dmaLog(),
    taint: m.debug.taint(),
    dmesg: m.debug.dmesg(),
    invariants: m.debug.checkInvariants(),
  };
}

function hwptReport(
  m: Machine,
  p: Process | undefined,
  fd: number,
  id: number,
  h: { ptId: number; auto: boolean },
): HwptReport {
  const rep: HwptReport = { id, auto: h.auto, ptId: h.ptId };
  if (p === undefined || p.task.exited) {
    rep.error = "the iommufd is closed: the HWPT is gone";
    return rep;
  }
  let info: HwptDebugInfo;
  try {
    info = m.debug.hwpt(p, fd, id);
  } catch (e) {
    rep.error = (e as Error).message;
    return rep;
  }
  rep.format = info.format;
  rep.rootPhys = info.rootPhys;
  rep.topLevel = info.topLevel;
  if (info.dump) rep.entries = info.dump();
  else {
    // No decoded dump wired in: show the root table's raw entries, read from memory.
    const bytes = m.debug.readPhys(info.rootPhys, 4096);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const le = info.format !== "spapr_tce";
    rep.rootEntries = [];
    for (let i = 0; i < 512; i++) {
      const raw = dv.getBigUint64(i * 8, le);
      if (raw !== 0n) rep.rootEntries.push({ index: i, raw });
    }
  }
  return rep;
}

function printReport(ctx: CliContext, rep: Report): void {
  const { out } = ctx;
  const h = (s: string) => out.line(out.paint("bold", s));
  if (rep.iommufds.length === 0) out.line("No iommufd was used in this run.");
  for (const f of rep.iommufds) {
    h(`iommufd (pid ${f.pid}, fd ${f.fd})${f.open ? "" : " -- closed"}`);
    for (const io of f.ioas) {
      out.line(`  IOAS ${io.id}: ${io.areas.length} area(s)`);
      for (const a of io.areas) {
        out.line(
          `    [${hex(a.iova)}, ${hex(a.iova + a.length - 1n)}] ${hex(a.length)} ${a.flags} <- ${a.source}`,
        );
      }
    }
    for (const d of f.devices) {
      out.line(
        `  device ${d.devId} (device fd ${d.deviceFd}): ${d.attachedTo === null ? "not attached" : `attached to HWPT ${d.attachedTo}`}`,
      );
    }
    for (const hw of f.hwpts) {
      out.line(`  HWPT ${hw.id}${hw.auto ? " (automatic domain)" : ""} on ${hw.ptId}`);
      if (hw.error) {
        out.line(`    ${hw.error}`);
        continue;
      }
      out.line(`    format ${hw.format}, root table at ${hex(hw.rootPhys ?? 0n)}, top level ${hw.topLevel}`);
      if (hw.entries) {
        for (const e of hw.entries) {
          const indent = "  ".repeat((hw.topLevel ?? 0) - e.level + 2);
          out.line(
            `${indent}L${e.level}[${String(e.index).padStart(3, "0")}] ${e.raw.toString(16).padStart(16, "0")}  ${e.text}`,
          );
        }
      } else {
        out.line(
          out.paint(
            "dim",
            "    (decoded levels need src/pt's dump in m.debug.hwpt(); the root table's raw entries:)",
          ),
        );
        for (const e of hw.rootEntries ?? [])
          out.line(
            `    L${hw.topLevel}[${String(e.index).padStart(3, "0")}] ${e.raw.toString(16).padStart(16, "0")}`,
          );
      }
    }
  }
  h("counters (m.debug.counters())");
  for (const [k, v] of Object.entries(rep.counters)) out.line(`  ${k.padEnd(18)} ${v}`);
  h(`DMA log: ${rep.dma.length} event(s)`);
  for (const e of rep.dma.slice(-10)) {
    out.line(
      `  ${e.device} ${e.op} ${hex(e.addr)} +${e.len} ${e.result === "ok" ? "ok" : out.paint("red", "fault")}${e.fault ? ` (${e.fault})` : ""}${e.finding ? ` finding: ${e.finding}` : ""}`,
    );
  }
  if (rep.taint.length) out.line(`taint: ${rep.taint.join(", ")}`);
  if (rep.dmesg.length) {
    h("dmesg");
    for (const l of rep.dmesg.slice(-10)) out.line(`  ${l}`);
  }
  out.line(
    rep.invariants.length === 0
      ? "invariants: hold"
      : out.paint("red", `invariants broken: ${rep.invariants.join("; ")}`),
  );
}
