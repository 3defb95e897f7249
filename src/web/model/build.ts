import { ERRNO_MEANING } from "../../cli/errno-meaning.js";
import { iommufdViews } from "../../cli/inspect-state.js";
import { formatTraceEvent } from "../../cli/trace-format.js";
import type { Machine, Process, TraceEvent } from "../../index.js";
import {
  parseScenario,
  type RunResult,
  runScenario,
  type Scenario,
  ScenarioError,
  type StepResult,
} from "../../scenario/index.js";
import { ENOENT, errnoName, KernelError } from "../../uapi/errno.js";
import type { KernelProfile } from "../../uapi/profiles.js";
import { VFIO_GROUP_GET_DEVICE_FD } from "../../uapi/vfio.js";
import { hex } from "./addr.js";
import { containerViews, tceView } from "./containers.js";
import { diffSteps } from "./diff.js";
import { mmioNote } from "./mmio.js";
import { countEntries, pteTree } from "./pte.js";
import type {
  CallView,
  DeviceView,
  DmaView,
  HwptView,
  IoasView,
  PinView,
  ProcView,
  RunView,
  StepView,
} from "./types.js";

/** Steps kept per run: a view of a million-step fuzz recording would not help anyone. */
export const MAX_STEPS = 2000;

/**
 * Parse and run a scenario in this JS engine (browser or Node), keeping a
 * view of the machine after every step. Never throws for scenario content:
 * a parse error is a problem with its line, a failed expectation ends the run.
 */
export function buildRun(text: string, file: string): RunView {
  let sc: Scenario;
  try {
    sc = parseScenario(text, file);
  } catch (e) {
    if (e instanceof ScenarioError) {
      return {
        file,
        name: file,
        machine: "",
        ok: false,
        problems: [{ line: e.line, message: e.message }],
        steps: [],
      };
    }
    return { file, name: file, machine: "", ok: false, problems: [{ message: String(e) }], steps: [] };
  }
  const profile = (sc.machine.kernel ?? "latest") as KernelProfile;
  const steps: StepView[] = [];
  let dmaSeen = 0;
  let devFds: DeviceFds | undefined;
  const r = runScenario(sc, {
    trace: true,
    onBoot: (run) => {
      if (run.machine === undefined) return;
      steps.push(bootView(run.machine, run, profile));
      dmaSeen = run.machine.debug.dmaLog().length;
    },
    onStep: (sr, _done, _total, run) => {
      if (steps.length >= MAX_STEPS || run.machine === undefined) return;
      const m = run.machine;
      const log = m.debug.dmaLog();
      const prevDma = steps.at(-1)?.dma ?? [];
      const dma: DmaView[] = prevDma.slice();
      for (let i = dmaSeen; i < log.length; i++) dma.push({ n: i, step: steps.length, ...log[i] });
      dmaSeen = log.length;
      devFds ??= new DeviceFds(m);
      const v = stepView(sr, steps.length, m, run, profile, dma, devFds);
      diffSteps(steps.at(-1), v);
      steps.push(v);
    },
  });
  const f = r.failure;
  const failure = f ? (f.message.startsWith(f.where) ? f.message : `${f.where}: ${f.message}`) : undefined;
  // a mistake the parser could not see (an unknown key of a step, a bad value) is still the file's: show it on its line
  const problems =
    f?.kind === "scenario"
      ? [{ line: Number(/\(line (\d+)\)/.exec(f.where)?.[1]) || undefined, message: failure ?? f.message }]
      : [];
  return {
    file,
    name: sc.name,
    description: sc.description,
    machine: machineLine(sc),
    ok: r.ok,
    problems,
    failure,
    steps,
  };
}

function machineLine(sc: Scenario): string {
  const mc = sc.machine;
  const pci = mc.pci?.length ?? 0;
  const parts = [
    `iommu ${mc.iommu ?? "none"}`,
    mc.memory !== undefined ? `memory ${String(mc.memory)}` : undefined,
    `${pci} PCI device${pci === 1 ? "" : "s"}`,
    mc.kernel ? `kernel ${mc.kernel}` : undefined,
    `${sc.processes.length} process${sc.processes.length === 1 ? "" : "es"}`,
  ];
  return parts.filter(Boolean).join(", ");
}

/** Step 0: the machine as the scenario builds it (memory, devices, processes), before its first step. */
function bootView(m: Machine, run: RunResult, profile: KernelProfile): StepView {
  const pci = m.pciConfig.length;
  const v = machineState(m, run, profile);
  return {
    n: 0,
    where: "boot",
    label: "the machine as booted",
    kind: "boot",
    note: `Before step 1: ${pci} PCI device${pci === 1 ? "" : "s"}, ${run.processes.size} process${run.processes.size === 1 ? "" : "es"} spawned, nothing called yet. Step 1 then shows what it changed.`,
    calls: [],
    result: [],
    ...v,
    dma: [],
    changed: new Set(),
    removed: [],
  };
}

function stepView(
  sr: StepResult,
  n: number,
  m: Machine,
  run: RunResult,
  profile: KernelProfile,
  dma: DmaView[],
  devFds: DeviceFds,
): StepView {
  devFds.update(sr.events);
  const calls = sr.events.map((ev) => callView(ev, sr, profile, devFds));
  return {
    n,
    where: sr.where,
    label: sr.outcome.label,
    kind: sr.step.kind,
    line: sr.step.line,
    note: sr.step.note ?? sr.outcome.said,
    calls,
    detail: sr.step.kind === "pread" || sr.step.kind === "pwrite" ? calls[0]?.note : undefined,
    result: resultLines(sr),
    failure: sr.failure,
    ...machineState(m, run, profile),
    dma,
    changed: new Set(),
    removed: [],
  };
}

/** What the machine holds right now: address spaces, page tables, pins, processes, devices, counters. */
function machineState(
  m: Machine,
  run: RunResult,
  profile: KernelProfile,
): Pick<StepView, "ioas" | "hwpts" | "pins" | "procs" | "devices" | "counters"> {
  const byPid = new Map<number, Process>();
  const names = new Map<number, string>();
  for (const [name, p] of run.processes) {
    byPid.set(p.pid, p);
    names.set(p.pid, name);
  }
  const views = iommufdViews(m.debug.trace(), profile);
  const ioas: IoasView[] = [];
  const hwpts: HwptView[] = [];
  const devices: DeviceView[] = m.pciConfig.map((d) => ({
    bdf: d.bdf,
    kind: d.kind,
    behindIommu: m.iommuKind !== "none" && d.noIommu !== true,
    bindings: [],
  }));
  for (const v of views) {
    const p = byPid.get(v.pid);
    if (!v.open || p === undefined || p.task.exited) continue;
    const who = `${names.get(v.pid) ?? `pid ${v.pid}`} iommufd fd ${v.fd}`;
    for (const id of v.ioas.keys()) {
      try {
        const info = m.debug.ioas(p, v.fd, id);
        const hw = [...v.hwpts]
          .filter(([hid, x]) => x.ptId === id && hwptExists(m, p, v.fd, hid))
          .map(([hid]) => hid);
        ioas.push({
          key: `${who} IOAS ${id}`,
          kind: "ioas",
          anchor: `i${v.pid}-${v.fd}-${id}`,
          pid: v.pid,
          fd: v.fd,
          id,
          about: `iommufd IOAS (IOMMU_IOAS_ALLOC)${hw.length ? `, HWPT ${hw.join(", ")} on it` : ", no HWPT on it yet"}`,
          allowedName: "allowed range (IOMMU_IOAS_ALLOW_IOVAS)",
          areas: info.areas.map((a) => ({
            sig: `area ${v.pid}:${v.fd}:${id} ${hex(a.iova)}-${hex(a.last)} ${a.prot}`,
            iova: a.iova,
            last: a.last,
            perms: `${a.prot & 1 ? "r" : "-"}${a.prot & 2 ? "w" : "-"}`,
            source: a.source === "user" ? `user VA ${hex(a.addr)}` : `${a.source} offset ${hex(a.addr)}`,
            pinnedPages: a.pinnedRuns.reduce((s, x) => s + x.n, 0),
            runs: a.pinnedRuns,
          })),
          reserved: info.reserved.map((x) => ({ start: x.start, last: x.last, label: x.owner })),
          allowed: info.allowed.map((x) => ({ start: x.start, last: x.last, label: "allowed" })),
        });
      } catch {
        // destroyed since the trace said it was allocated: nothing to show
      }
    }
    for (const [id, h] of v.hwpts) {
      const hv = hwptView(m, p, v.fd, id, h, who, v.devices);
      if (hv !== undefined) hwpts.push(hv);
    }
    for (const [devId, d] of v.devices) {
      const bdf = deviceBdf(m, d.deviceFd, p);
      const dv = devices.find((x) => x.bdf === bdf) ?? devices[0];
      dv?.bindings.push(
        `${who}: device ${devId}${d.attachedTo !== undefined ? `, attached to HWPT ${d.attachedTo}` : ", not attached"}`,
      );
    }
  }
  const procs: ProcView[] = [];
  for (const [pid, p] of byPid) {
    if (p.task.exited) continue;
    for (const c of m.debug.vfioContainers(p)) {
      const cv = containerViews(c, pid, names.get(pid) ?? `pid ${pid}`);
      if (cv.space) ioas.push(cv.space);
      hwpts.push(...cv.tables);
    }
    procs.push({
      pid,
      name: names.get(pid) ?? "",
      vmas: m.debug.vmas(p).map((x) => {
        const perms = `${x.prot & 1 ? "r" : "-"}${x.prot & 2 ? "w" : "-"}${x.prot & 4 ? "x" : "-"}${x.shared ? "s" : "p"}`;
        return {
          sig: `vma ${pid} ${hex(x.start)}-${hex(x.end)} ${perms} ${x.locked}`,
          start: x.start,
          end: x.end,
          perms,
          pageSize: x.pageSize,
          file: x.file,
          locked: x.locked,
        };
      }),
    });
  }
  return { ioas, hwpts, pins: pinViews(m, ioas), procs, devices, counters: m.debug.counters() };
}

/** Whether an HWPT id the trace allocated is still there (not destroyed, not an automatic domain replaced). */
function hwptExists(m: Machine, p: Process, fd: number, id: number): boolean {
  try {
    m.debug.hwpt(p, fd, id);
    return true;
  } catch {
    return false;
  }
}

/** The device a VFIO device fd refers to, from /proc/self/fd-like knowledge the trace has (the open path). */
function deviceBdf(m: Machine, deviceFd: number, p: Process): string | undefined {
  const opened = m.debug
    .trace()
    .filter(
      (e) => e.pid === p.pid && e.call === "open" && Number(e.ret) === deviceFd && e.errno === undefined,
    )
    .at(-1);
  const path = opened ? String(opened.args[0]) : "";
  const cdev = /\/dev\/vfio\/devices\/vfio(\d+)$/.exec(path);
  if (cdev) return m.pciConfig[Number(cdev[1])]?.bdf;
  return undefined;
}

function hwptView(
  m: Machine,
  p: Process,
  fd: number,
  id: number,
  h: { ptId: number; auto: boolean },
  who: string,
  devs: Map<number, { attachedTo?: number }>,
): HwptView | undefined {
  const devices = [...devs].filter(([, d]) => d.attachedTo === id).map(([devId]) => devId);
  const about = `${h.auto ? "automatic domain (attached to an IOAS)" : "allocated (IOMMU_HWPT_ALLOC)"} on IOAS ${h.ptId}, ${devices.length ? `device ${devices.join(", ")} attached` : "no device attached"}`;
  const key = `${who} HWPT ${id}`;
  const anchor = `h${p.pid}-${fd}-${id}`;
  const sig = `${p.pid}:${fd}:${id} `;
  const base = { key, kind: "hwpt" as const, anchor, pid: p.pid, fd, id, about, bigEndian: false };
  try {
    const info = m.debug.hwpt(p, fd, id);
    if (info.windows) return tceView(info.windows, key, anchor, p.pid, fd, id, about, sig);
    const roots = pteTree(info.format, info.dump?.() ?? [], sig);
    const { format, rootPhys, topLevel } = info;
    return { ...base, format, rootPhys, topLevel, roots, entryCount: countEntries(roots) };
  } catch (e) {
    // destroyed since (IOMMU_DESTROY, an automatic domain replaced or freed): nothing to show
    if (e instanceof KernelError && e.errno === ENOENT) return undefined;
    return { ...base, roots: [], entryCount: 0, error: (e as Error).message };
  }
}

/** VFIO device fds the trace opened (pid:fd -> the device's kind when known), to name the registers a pread/pwrite touched. */
class DeviceFds {
  private readonly fds = new Map<string, string | undefined>();
  constructor(private readonly m: Machine) {}

  update(events: readonly TraceEvent[]): void {
    // a device fd from a group (GET_DEVICE_FD names it by a string in user memory): known only on a one-device machine
    const only = this.m.pciConfig.length === 1 ? this.m.pciConfig[0].kind : undefined;
    for (const ev of events) {
      if (ev.errno !== undefined) continue;
      const k = `${ev.pid}:${Number(ev.ret)}`;
      if (ev.call === "open") {
        const cdev = /^\/dev\/vfio\/devices\/(?:noiommu-)?vfio(\d+)$/.exec(String(ev.args[0]));
        if (cdev) this.fds.set(k, this.m.pciConfig[Number(cdev[1])]?.kind ?? only);
        else this.fds.delete(k);
      } else if (ev.call === "ioctl" && Number(ev.args[1]) === VFIO_GROUP_GET_DEVICE_FD) {
        this.fds.set(k, only);
      } else if (ev.call === "close") {
        this.fds.delete(`${ev.pid}:${Number(ev.args[0])}`);
      }
    }
  }

  /** "BAR0 + 0x90 (CHAINADDR) ← 0x100000" for an access to a device fd's regions. */
  note(ev: TraceEvent): string | undefined {
    const k = `${ev.pid}:${Number(ev.args[0])}`;
    return this.fds.has(k) ? mmioNote(ev, this.fds.get(k)) : undefined;
  }
}

function callView(ev: TraceEvent, sr: StepResult, profile: KernelProfile, devFds: DeviceFds): CallView {
  const text = formatTraceEvent(ev, profile, { pid: false });
  const note = devFds.note(ev);
  if (ev.errno === undefined) return { seq: ev.seq, pid: ev.pid, text, ok: true, note };
  const name = errnoName(ev.errno);
  return {
    seq: ev.seq,
    pid: ev.pid,
    text,
    note,
    ok: false,
    errno: name,
    reason: ev.reason || undefined,
    meaning: ERRNO_MEANING[name],
    expected: sr.step.expect?.any === true || sr.step.expect?.errno === name,
  };
}

/** The step's own outputs, as `demo` prints them. */
function resultLines(sr: StepResult): string[] {
  const o = sr.outcome;
  const out: string[] = [];
  if (sr.events.length === 0 && o.errno !== undefined)
    out.push(`error ${errnoName(o.errno)}: ${o.reason ?? ""}`);
  if (o.entries) out.push(o.entries.join("  ") || "(empty)");
  if (o.text !== undefined) out.push(JSON.stringify(o.text));
  if (o.data !== undefined) out.push(hexdump(o.data));
  if (sr.step.kind === "device_dma" && o.out !== undefined) {
    out.push(
      Object.entries(o.out)
        .map(([k, v]) => `${k}=${k === "fault_addr" ? hex(v) : String(v)}`)
        .join(" "),
    );
  }
  if (sr.step.kind.startsWith("check_")) out.push(sr.failure ? `does not hold: ${sr.failure}` : "holds");
  for (const [k, v] of Object.entries(sr.captured)) {
    out.push(`$${k} = ${typeof v === "bigint" && v > 0xffffn ? hex(v) : String(v)}`);
  }
  return out;
}

function hexdump(b: Uint8Array): string {
  const bytes = b.subarray(0, 32);
  const h = Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join(" ");
  const t = Array.from(bytes, (x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".")).join("");
  return `${h}${b.length > 32 ? " ..." : ""}  |${t}|`;
}

/** Pinned frames as runs, each with who pinned it (the IOAS areas whose pages they are). */
function pinViews(m: Machine, ioas: IoasView[]): PinView[] {
  const owners = new Map<number, string[]>();
  const own = (label: string, runs: { pfn: number; n: number }[]) => {
    for (const run of runs) {
      for (let i = 0; i < run.n; i++) {
        const l = owners.get(run.pfn + i);
        if (l) l.push(label);
        else owners.set(run.pfn + i, [label]);
      }
    }
  };
  for (const io of ioas) {
    const what = io.kind === "ioas" ? "area" : "mapping";
    for (const a of io.areas) own(`${io.key} ${what} ${hex(a.iova)}`, a.runs);
    for (const r of io.prereg ?? []) own(`${io.key}: memory pre-registered at ${hex(r.ua)}`, r.runs);
  }
  const out: PinView[] = [];
  for (const f of m.debug.pinnedFrames()) {
    const who = owners.get(f.pfn) ?? [
      "no IOAS area or container mapping (an in-kernel access or the bridge)",
    ];
    const last = out.at(-1);
    const step = f.order === 0 ? 1 : 2 ** f.order;
    if (
      last !== undefined &&
      last.order === f.order &&
      last.pins === f.pins &&
      last.pfn + last.count * step === f.pfn &&
      last.owners.join("|") === who.join("|")
    ) {
      last.count++;
    } else {
      out.push({ sig: "", pfn: f.pfn, count: 1, pins: f.pins, order: f.order, owners: who });
    }
  }
  for (const p of out) p.sig = `pin ${p.pfn}+${p.count}x${p.pins} ${p.owners.join("|")}`;
  return out;
}
