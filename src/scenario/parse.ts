import { isMap, isSeq, LineCounter, parseDocument, type YAMLSeq } from "yaml";
import { PCI_DEVICE_KINDS } from "../hw/pci-bus.js";
import { MACHINE_SCENARIO_KEYS } from "../kernel/machine-options.js";
import { ScenarioError } from "./error.js";
import {
  COMMON_KEYS,
  EXPECT_KEYS,
  type MachineSpec,
  type PciSpec,
  type ProcessSpec,
  type Scenario,
  STEP_ARGS,
  STEP_KINDS,
  type Step,
  type StepKind,
} from "./types.js";
import { checkKeys, describe } from "./values.js";

const TOP_KEYS = ["name", "description", "machine", "processes", "steps"];
const MACHINE_KEYS = MACHINE_SCENARIO_KEYS;
const PCI_FLAGS = ["noEnforceCoherency", "noDirty", "pasid", "hugeIova"];
const PROCESS_KEYS = ["name", "uid", "caps", "rlimitMemlock"];

/**
 * Read a scenario file. Integers come back as bigint so 64-bit values stay
 * exact; every key is checked so a typo is an error naming its line, not a
 * silently ignored setting.
 */
export function parseScenario(text: string, file?: string): Scenario {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, intAsBigInt: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new ScenarioError(`YAML: ${e.message.split("\n")[0]}`, e.linePos?.[0].line);
  }
  const js = doc.toJS() as unknown;
  if (js === null || typeof js !== "object" || Array.isArray(js)) {
    throw new ScenarioError("a scenario is a mapping with machine, processes and steps");
  }
  const top = js as Record<string, unknown>;
  checkKeys(top, TOP_KEYS, "scenario");
  const stepsNode = doc.get("steps", true);
  const lines = isSeq(stepsNode) ? nodeLines(stepsNode as YAMLSeq, lc) : [];
  if (!Array.isArray(top.steps)) throw new ScenarioError("scenario: `steps` must be a list");
  const name = typeof top.name === "string" ? top.name : (file ?? "scenario");
  const sc: Scenario = {
    name,
    machine: parseMachine(top.machine),
    processes: parseProcesses(top.processes),
    steps: parseSteps(top.steps, lines, "steps"),
  };
  if (typeof top.description === "string") sc.description = top.description.trim();
  if (file !== undefined) sc.file = file;
  return sc;
}

interface LineNode {
  line: number;
  children: LineNode[];
}
type LineTree = LineNode[];

/** Start line of each list item, and of the items of a nested `steps:` list (repeat). */
function nodeLines(seq: YAMLSeq, lc: LineCounter): LineTree {
  return seq.items.map((item) => {
    const node = item as { range?: [number, number, number] };
    const line = node.range ? lc.linePos(node.range[0]).line : 0;
    let children: LineTree = [];
    if (isMap(item)) {
      const inner = item.get("steps", true);
      if (isSeq(inner)) children = nodeLines(inner as YAMLSeq, lc);
    }
    return { line, children };
  });
}

function parseMachine(v: unknown): MachineSpec {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v))
    throw new ScenarioError(`machine: expected a mapping, got ${describe(v)}`);
  const m = v as Record<string, unknown>;
  checkKeys(m, MACHINE_KEYS, "machine");
  const out: MachineSpec = {};
  if (m.iommu !== undefined) out.iommu = String(m.iommu);
  if (m.memory !== undefined) out.memory = m.memory;
  if (m.kernel !== undefined) out.kernel = String(m.kernel);
  if (m.noiommuRevision !== undefined) out.noiommuRevision = String(m.noiommuRevision);
  if (m.seed !== undefined) out.seed = Number(m.seed);
  if (m.kconfig !== undefined) {
    if (typeof m.kconfig !== "object" || m.kconfig === null)
      throw new ScenarioError("machine.kconfig: expected a mapping");
    out.kconfig = {};
    for (const [k, val] of Object.entries(m.kconfig)) {
      if (typeof val !== "boolean") throw new ScenarioError(`machine.kconfig.${k}: expected true or false`);
      out.kconfig[k] = val;
    }
  }
  if (m.params !== undefined) {
    if (typeof m.params !== "object" || m.params === null)
      throw new ScenarioError("machine.params: expected a mapping");
    out.params = {};
    for (const [k, val] of Object.entries(m.params)) {
      out.params[k] = typeof val === "bigint" ? Number(val) : (val as boolean | number | string);
    }
  }
  if (m.pci !== undefined) {
    if (!Array.isArray(m.pci)) throw new ScenarioError("machine.pci: expected a list of devices");
    out.pci = m.pci.map((d, i) => {
      const where = `machine.pci[${i}]`;
      if (typeof d !== "object" || d === null) throw new ScenarioError(`${where}: expected a mapping`);
      const o = d as Record<string, unknown>;
      checkKeys(o, ["bdf", "kind", "group", "noIommu", "flags"], where);
      if (typeof o.bdf !== "string") throw new ScenarioError(`${where}.bdf: expected "0000:00:04.0"`);
      const kind = String(o.kind ?? "memcpy");
      if (!(PCI_DEVICE_KINDS as readonly string[]).includes(kind))
        throw new ScenarioError(
          `${where}.kind: "${kind}" is not a device kind (${PCI_DEVICE_KINDS.join(", ")})`,
        );
      const dev: PciSpec = { bdf: o.bdf, kind };
      if (o.group !== undefined) dev.group = Number(o.group);
      if (o.noIommu !== undefined) dev.noIommu = Boolean(o.noIommu);
      if (o.flags !== undefined) dev.flags = boolMap(o.flags, PCI_FLAGS, `${where}.flags`);
      return dev;
    });
  }
  if (m.hugepages !== undefined) {
    if (typeof m.hugepages !== "object" || m.hugepages === null || Array.isArray(m.hugepages))
      throw new ScenarioError('machine.hugepages: expected { "2M": n, "1G": n }');
    checkKeys(m.hugepages as Record<string, unknown>, ["2M", "1G"], "machine.hugepages");
    out.hugepages = {};
    for (const [k, n] of Object.entries(m.hugepages)) out.hugepages[k] = Number(n);
  }
  if (m.spapr !== undefined) {
    if (typeof m.spapr !== "object" || m.spapr === null || Array.isArray(m.spapr))
      throw new ScenarioError("machine.spapr: expected { platform?, pgsizes? }");
    const sp = m.spapr as Record<string, unknown>;
    checkKeys(sp, ["platform", "pgsizes"], "machine.spapr");
    out.spapr = {};
    if (sp.platform !== undefined) out.spapr.platform = String(sp.platform);
    if (sp.pgsizes !== undefined) {
      if (!Array.isArray(sp.pgsizes))
        throw new ScenarioError("machine.spapr.pgsizes: expected a list of log2 page sizes ([12, 16, 24])");
      out.spapr.pgsizes = sp.pgsizes.map(Number);
    }
  }
  return out;
}

function boolMap(v: unknown, keys: readonly string[], where: string): Record<string, boolean> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new ScenarioError(`${where}: expected a mapping of ${keys.join(", ")} to true/false`);
  const o = v as Record<string, unknown>;
  checkKeys(o, keys, where);
  const out: Record<string, boolean> = {};
  for (const [k, x] of Object.entries(o)) {
    if (typeof x !== "boolean") throw new ScenarioError(`${where}.${k}: expected true or false`);
    out[k] = x;
  }
  return out;
}

function parseProcesses(v: unknown): ProcessSpec[] {
  if (v === undefined || v === null) return [{ name: "p" }];
  if (!Array.isArray(v) || v.length === 0) throw new ScenarioError("processes: expected a non-empty list");
  const seen = new Set<string>();
  return v.map((p, i) => {
    const where = `processes[${i}]`;
    if (typeof p !== "object" || p === null) throw new ScenarioError(`${where}: expected a mapping`);
    const o = p as Record<string, unknown>;
    checkKeys(o, PROCESS_KEYS, where);
    const name = o.name === undefined ? (i === 0 ? "p" : `p${i}`) : String(o.name);
    if (seen.has(name)) throw new ScenarioError(`${where}: duplicate process name ${name}`);
    seen.add(name);
    const out: ProcessSpec = { name };
    if (o.uid !== undefined) out.uid = Number(o.uid);
    if (o.caps !== undefined) {
      if (!Array.isArray(o.caps))
        throw new ScenarioError(`${where}.caps: expected a list like [CAP_SYS_RAWIO]`);
      out.caps = o.caps.map(String);
    }
    if (o.rlimitMemlock !== undefined) out.rlimitMemlock = o.rlimitMemlock;
    return out;
  });
}

function parseSteps(list: unknown[], lines: LineTree, where: string): Step[] {
  return list.map((raw, i) => parseStep(raw, i + 1, lines[i], `${where}[${i + 1}]`));
}

function parseStep(raw: unknown, index: number, lt: LineNode | undefined, where: string): Step {
  const line = lt?.line;
  const err = (msg: string) =>
    new ScenarioError(`step ${index}${line ? ` (line ${line})` : ""}: ${msg}`, line);
  if (typeof raw === "string" && (STEP_KINDS as readonly string[]).includes(raw)) raw = { [raw]: true };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw err(`expected a mapping, got ${describe(raw)}`);
  const o = raw as Record<string, unknown>;
  const kinds = Object.keys(o).filter((k) => (STEP_KINDS as readonly string[]).includes(k));
  if (kinds.length !== 1) {
    throw err(
      kinds.length === 0
        ? `no step kind among its keys (${Object.keys(o).join(", ")}); kinds are ${STEP_KINDS.join(", ")}`
        : `more than one step kind (${kinds.join(", ")})`,
    );
  }
  const kind = kinds[0] as StepKind;
  const args: Record<string, unknown> = {};
  const allowed = STEP_ARGS[kind];
  for (const [k, v] of Object.entries(o)) {
    if (k === kind || (COMMON_KEYS as readonly string[]).includes(k)) continue;
    if (!allowed.includes(k)) {
      throw err(
        `${kind} takes no "${k}" (it takes: ${[...allowed, ...COMMON_KEYS].join(", ") || "nothing"})`,
      );
    }
    args[k] = v;
  }
  const step: Step = { index, kind, body: o[kind], args };
  if (line) step.line = line;
  if (o.process !== undefined) step.process = String(o.process);
  if (o.as !== undefined) {
    if (typeof o.as !== "string" || !/^\w+$/.test(o.as)) throw err("`as` must be a variable name");
    step.as = o.as;
  }
  if (o.capture !== undefined) {
    if (typeof o.capture !== "object" || o.capture === null || Array.isArray(o.capture)) {
      throw err("`capture` must map variable names to output fields: { iova: iova }");
    }
    step.capture = Object.fromEntries(Object.entries(o.capture).map(([k, v]) => [k, String(v)]));
  }
  if (o.expect !== undefined) {
    if (o.expect === "any") step.expect = { any: true };
    else if (typeof o.expect === "object" && o.expect !== null && !Array.isArray(o.expect)) {
      const e = o.expect as Record<string, unknown>;
      for (const k of Object.keys(e)) {
        if (!(EXPECT_KEYS as readonly string[]).includes(k)) {
          throw err(`unknown expectation "${k}" (expectations: ${EXPECT_KEYS.join(", ")})`);
        }
      }
      step.expect = e;
    } else throw err("`expect` must be a mapping (rc, errno, out, data, ...) or `any`");
  }
  if (o.note !== undefined) step.note = String(o.note).trim();
  if (kind === "repeat") {
    if (!Array.isArray(args.steps)) throw err("repeat needs `steps:` (a list) and a count: `repeat: 8`");
    step.steps = parseSteps(args.steps, lt?.children ?? [], `${where}.steps`);
  }
  return step;
}
