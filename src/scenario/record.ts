import type { Machine, TraceEvent } from "../index.js";
import { MACHINE_OPTIONS, type MachineOptionDecl } from "../kernel/machine-options.js";
import { errnoName } from "../uapi/errno.js";
import type { KernelProfile } from "../uapi/profiles.js";
import { decode, encode, type FieldDef, type StructDef } from "../uapi/struct.js";
import { describeIoctl } from "./ioctl-arg.js";
import { EFD, MAP, MFD, O_FLAGS, PROT } from "./steps.js";
import { sizeStr } from "./values.js";

/** A run that cannot be written as a scenario (a call the format has no step for). */
export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

export interface RecordOptions {
  name?: string;
  description?: string;
  /** Process names by pid (default: `p` for the first process, `p<pid>` for the others). */
  processNames?: ReadonlyMap<number, string>;
}

/** Text written into the YAML as it stands (numbers, `$buf + 0x1000`). */
class Lit {
  constructor(readonly text: string) {}
}
type Val = Lit | string | boolean | Val[] | { [k: string]: Val };

const RLIMIT_DEFAULT = 8n << 20n;
const RLIM_INFINITY = (1n << 64n) - 1n;
/** ioctls whose return value is a new fd. */
const FD_RETURNING = new Set(["VFIO_GROUP_GET_DEVICE_FD"]);

interface Region {
  start: bigint;
  len: bigint;
  name: string;
}

/**
 * The YAML text of a scenario that replays the run of `m` (built with
 * `trace: true`): the machine's options, its processes, then every system
 * call and machine operation in order, arguments decoded by field name from
 * the uapi tables, user pointers through the `as:` variables of the mmaps
 * that produced them, results as expectations. Replaying it gives the same
 * trace (same seed, same calls: same addresses and results).
 */
export function recordScenario(m: Machine, opts: RecordOptions = {}): string {
  if (!m.tracer.enabled) throw new RecordError("recordScenario needs a machine built with trace: true");
  return new Recorder(m, opts).run();
}

class Recorder {
  private readonly profile: KernelProfile;
  private readonly used = new Set<string>();
  private readonly fdVars = new Map<string, string>();
  private readonly regions = new Map<number, Region[]>();
  private readonly idVars = new Map<bigint, string>();
  private readonly names = new Map<number, string>();
  private firstPid = -1;
  private readonly steps: [string, Val][][] = [];
  private readonly skipped: string[] = [];

  constructor(
    private readonly m: Machine,
    private readonly opts: RecordOptions,
  ) {
    this.profile = (m.options.kernel ?? "latest") as KernelProfile;
  }

  run(): string {
    const all = [...this.m.tracer.events, ...this.m.tracer.ops].sort((a, b) => a.seq - b.seq);
    const procs: Val[] = [];
    for (const ev of all) if (ev.call === "spawn") procs.push(this.spawn(ev));
    for (const ev of all) if (ev.call !== "spawn") this.event(ev);
    const lines: string[] = [
      "# Recorded by iommufd-sim (recordScenario): replays the same calls on the same machine.",
    ];
    for (const s of this.skipped) lines.push(`# not recorded: ${s}`);
    lines.push(`name: ${scalar(this.opts.name ?? "recorded")}`);
    if (this.opts.description) {
      lines.push("description: |");
      for (const l of this.opts.description.trim().split("\n")) lines.push(`  ${l}`.trimEnd());
    }
    lines.push(`machine: ${flow(this.machine())}`);
    lines.push("processes:");
    for (const p of procs) lines.push(`  - ${flow(p)}`);
    lines.push("steps:");
    if (this.steps.length === 0) lines.push("  []");
    for (const s of this.steps) {
      s.forEach(([k, v], i) => {
        lines.push(`${i === 0 ? "  - " : "    "}${key(k)}: ${flow(v)}`);
      });
    }
    return `${lines.join("\n")}\n`;
  }

  // --- machine and processes ------------------------------------------------

  private machine(): Record<string, Val> {
    const o = this.m.options;
    const out: Record<string, Val> = {
      iommu: o.iommu ?? "amd",
      memory: new Lit(sizeStr(o.memoryBytes ?? 4n << 30n)),
      seed: new Lit(String(o.seed ?? 1)),
    };
    if (o.kernel !== undefined) out.kernel = o.kernel;
    if (o.noiommuRevision !== undefined) out.noiommuRevision = o.noiommuRevision;
    if (o.kconfig !== undefined) out.kconfig = mapOf(o.kconfig);
    if (o.params !== undefined) out.params = mapOf(o.params as Record<string, boolean | number>);
    if (o.pci !== undefined) {
      out.pci = o.pci.map((d) => {
        const dev: Record<string, Val> = { bdf: d.bdf, kind: d.kind };
        if (d.group !== undefined) dev.group = new Lit(String(d.group));
        if (d.noIommu !== undefined) dev.noIommu = d.noIommu;
        if (d.flags !== undefined) dev.flags = mapOf(d.flags as Record<string, boolean>);
        return dev;
      });
    }
    if (o.hugepages !== undefined) out.hugepages = mapOf(o.hugepages as Record<string, number>);
    if (o.spapr !== undefined) {
      const s: Record<string, Val> = {};
      if (o.spapr.platform !== undefined) s.platform = o.spapr.platform;
      if (o.spapr.pgsizes !== undefined) s.pgsizes = o.spapr.pgsizes.map((n) => new Lit(String(n)));
      out.spapr = s;
    }
    // every option with a scenario key is written above (test/architecture/one-fact.test.ts round-trips them)
    for (const k of Object.keys(o)) {
      const d = (MACHINE_OPTIONS as Record<string, MachineOptionDecl>)[k];
      if (
        (d === undefined || d.scenario === null) &&
        k !== "trace" &&
        (o as Record<string, unknown>)[k] !== undefined
      )
        this.skipped.push(`machine option ${k} (the scenario format has no key for it)`);
    }
    return out;
  }

  private spawn(ev: TraceEvent): Val {
    const pid = ev.pid;
    if (this.firstPid < 0) this.firstPid = pid;
    const name = this.opts.processNames?.get(pid) ?? (pid === this.firstPid ? "p" : `p${pid}`);
    this.names.set(pid, name);
    const p: Record<string, Val> = { name };
    const [uid, rlimit] = ev.args as [number, bigint];
    if (uid !== 1000) p.uid = new Lit(String(uid));
    if (ev.caps !== undefined && ev.caps.length > 0) p.caps = [...ev.caps].sort();
    if (rlimit !== RLIMIT_DEFAULT)
      p.rlimitMemlock = rlimit === RLIM_INFINITY ? "unlimited" : new Lit(sizeStr(rlimit));
    return p;
  }

  // --- steps -----------------------------------------------------------------

  private event(ev: TraceEvent): void {
    const pid = ev.pid;
    if (pid !== 0 && !this.names.has(pid)) {
      throw new RecordError(
        `pid ${pid} made ${ev.call}() but was not spawned by m.spawn() (a forked child): fork is not recordable yet`,
      );
    }
    const a = ev.args;
    const step: [string, Val][] = [];
    const tail: [string, Val][] = [];
    // machine operations and the process's loads/stores give -errno without an errno field
    const ok = ev.errno === undefined && BigInt(ev.ret) >= 0n;
    let as: string | undefined;
    switch (ev.call) {
      case "open": {
        step.push(["open", String(a[0])]);
        const flags = BigInt(a[1] as number);
        if (flags !== 2n) step.push(["flags", openFlags(flags)]);
        if (ok) as = this.newFd(pid, Number(ev.ret), fdBase(String(a[0])));
        break;
      }
      case "close":
        step.push(["close", this.fd(pid, a[0])]);
        if (ok) this.fdVars.delete(`${pid}:${a[0]}`);
        break;
      case "dup":
        step.push(["dup", this.fd(pid, a[0])]);
        if (ok) as = this.newFd(pid, Number(ev.ret), `${this.fdVars.get(`${pid}:${a[0]}`) ?? "fd"}_dup`);
        break;
      case "ioctl":
        as = this.ioctl(ev, step);
        break;
      case "mmap": {
        const [addr, len, prot, flags, fd, off] = a as [bigint, bigint, number, number, number, bigint];
        const o: Record<string, Val> = {};
        if (addr !== 0n) o.addr = this.addr(pid, addr);
        o.len = size(len);
        if (prot !== 3) o.prot = names(BigInt(prot), PROT, 0n);
        if (flags !== 0x22) o.flags = mapFlags(BigInt(flags));
        if (fd !== -1) o.fd = this.fd(pid, fd);
        if (off !== 0n) o.off = size(off);
        step.push(["mmap", o]);
        if (ok) {
          as = this.newVar("buf");
          const list = this.regions.get(pid) ?? [];
          list.push({ start: BigInt(ev.ret), len, name: as });
          this.regions.set(pid, list);
        }
        break;
      }
      case "munmap":
        step.push(["munmap", this.addr(pid, a[0] as bigint)], ["len", size(a[1] as bigint)]);
        break;
      case "memfd_create": {
        step.push(["memfd_create", String(a[0])]);
        const flags = BigInt(a[1] as number);
        if (flags !== 0n) step.push(["flags", hugeFlags(flags, MFD)]);
        if (ok) as = this.newFd(pid, Number(ev.ret), "memfd");
        break;
      }
      case "ftruncate":
        step.push(["ftruncate", this.fd(pid, a[0])], ["len", size(a[1] as bigint)]);
        break;
      case "eventfd": {
        step.push(["eventfd", new Lit(String(a[0]))]);
        const flags = BigInt(a[1] as number);
        if (flags !== 0n) step.push(["flags", names(flags, EFD, 0n)]);
        if (ok) as = this.newFd(pid, Number(ev.ret), "eventfd");
        break;
      }
      case "read":
      case "pread64":
        step.push([ev.call === "read" ? "read" : "pread", this.fd(pid, a[0])], ["len", num(a[1])]);
        if (ev.call === "pread64") step.push(["off", num(a[2])]);
        if (ok && ev.data !== undefined) tail.push(["data", bytes(ev.data)]);
        break;
      case "write":
      case "pwrite64":
        step.push([ev.call === "write" ? "write" : "pwrite", this.fd(pid, a[0])]);
        if (ev.call === "pwrite64") step.push(["off", num(a[2])]);
        step.push(["data", bytes(ev.data ?? new Uint8Array(Number(a[1])))]);
        break;
      case "exit":
        step.push(["exit", true]);
        break;
      case "bind_driver":
        step.push(["bind_driver", String(a[0])], ["driver", String(a[1])]);
        break;
      case "unbind_driver":
        step.push(["unbind_driver", String(a[0])]);
        break;
      case "set_param": {
        const v = ev.value;
        step.push(["set_param", String(a[0])]);
        step.push(["value", typeof v === "number" ? new Lit(String(v)) : (v ?? "")]);
        break;
      }
      case "fail_nth":
        step.push(["fail_nth", num(a[0])]);
        break;
      case "read_memory":
        step.push(["read_memory", this.addr(pid, a[0] as bigint)], ["len", num(a[1])]);
        if (ok && ev.data !== undefined) tail.push(["data", bytes(ev.data)]);
        break;
      case "write_memory":
        step.push(["write_memory", this.addr(pid, a[0] as bigint)]);
        step.push(["data", bytes(ev.data ?? new Uint8Array(Number(a[1])))]);
        break;
      default:
        throw new RecordError(`${ev.call}() (pid ${pid}) has no scenario step: it is not recordable yet`);
    }
    if (pid !== 0 && pid !== this.firstPid) step.push(["process", this.names.get(pid) ?? `p${pid}`]);
    if (as !== undefined) step.push(["as", as]);
    const expect: Record<string, Val> = {};
    const ret = BigInt(ev.ret);
    if (!ok) {
      expect.errno = errnoName(ev.errno ?? Number(-ret));
    } else if (ret !== 0n && as === undefined && ev.call !== "exit") {
      expect.rc = num(ret);
    }
    for (const [k, v] of tail) expect[k] = v;
    const capture = step.find(([k]) => k === "capture");
    if (capture) {
      // after `as:`, as people write it
      step.splice(step.indexOf(capture), 1);
      step.push(capture);
    }
    const out = step.find(([k]) => k === "out");
    if (out) {
      step.splice(step.indexOf(out), 1);
      expect.out = out[1];
    }
    if (Object.keys(expect).length > 0) step.push(["expect", expect]);
    this.steps.push(step);
  }

  /** One ioctl: by name with its struct decoded when the uapi tables know it. Returns the `as:` variable. */
  private ioctl(ev: TraceEvent, step: [string, Val][]): string | undefined {
    const pid = ev.pid;
    const [fd, req, ptr] = ev.args as [number, number, bigint];
    const d = describeIoctl(ev.fdKind, req, this.profile) ?? describeIoctl(ev.fdKind, req, "latest");
    const ok = ev.errno === undefined;
    const inRegion = ptr !== 0n && this.region(pid, ptr) !== undefined;
    if (d === undefined || inRegion) {
      // a pointer into the program's own memory (or an ioctl the tables do not know): the
      // request by number and the pointer as a value; the bytes were written by write_memory
      step.push(["ioctl", new Lit(`0x${req.toString(16)}`)], ["fd", this.fd(pid, fd)]);
      if (ptr !== 0n) step.push(["arg", this.addr(pid, ptr)]);
      return ok && d !== undefined && FD_RETURNING.has(d.name)
        ? this.newFd(pid, Number(ev.ret), "device")
        : undefined;
    }
    step.push(["ioctl", d.name], ["fd", this.fd(pid, fd)]);
    if (d.struct !== undefined) return this.structArg(ev, d.struct, step);
    const arg = d.arg ?? "none";
    if (arg === "value") step.push(["arg", num(ptr)]);
    else if (arg === "none") {
      if (ptr !== 0n) step.push(["arg", num(ptr)]);
    } else if ((arg === "s32ptr" || arg === "u32ptr") && ev.argIn !== undefined && ev.argIn.length >= 4) {
      const v = new DataView(ev.argIn.buffer, ev.argIn.byteOffset).getInt32(0, true);
      step.push(["arg", this.fdVars.get(`${pid}:${v}`) ? this.fd(pid, v) : num(v)]);
    } else if (arg === "string" && ev.argIn !== undefined) {
      const end = ev.argIn.indexOf(0);
      step.push(["arg", new TextDecoder().decode(ev.argIn.subarray(0, end < 0 ? ev.argIn.length : end))]);
    } else if (ptr !== 0n) {
      step.splice(0, 1, ["ioctl", new Lit(`0x${req.toString(16)}`)]);
      step.push(["arg", num(ptr)]);
    }
    if (ok && FD_RETURNING.has(d.name)) return this.newFd(pid, Number(ev.ret), "device");
    return undefined;
  }

  private structArg(ev: TraceEvent, def: StructDef, step: [string, Val][]): string | undefined {
    const pid = ev.pid;
    const inb = ev.argIn;
    if (inb === undefined) return undefined; // the fd was bad: the kernel read nothing
    const vin = decode(def, inb);
    const fields = def.fields.filter((f) => !f.alias);
    const exact: Record<string, bigint> = {};
    for (const f of fields) for (const k of keysOf(f)) exact[k] = vin[k];
    let same = false;
    try {
      same = sameBytes(encode(def, exact, inb.length), inb);
    } catch {
      same = false;
    }
    if (!same) {
      if (inb.length !== def.size) step.push(["argsz", num(inb.length)]);
      step.push(["raw", hexText(inb)]);
    } else {
      const arg: Record<string, Val> = {};
      const head = def.fields[0];
      for (const f of fields) {
        const ks = keysOf(f);
        if (ks.every((k) => vin[k] === 0n)) continue;
        if (f === head && (f.name === "size" || f.name === "argsz") && vin[f.name] === BigInt(inb.length))
          continue;
        arg[f.name] =
          f.count !== undefined ? ks.map((k) => this.field(pid, f, vin[k])) : this.field(pid, f, vin[f.name]);
      }
      if (inb.length !== def.size) step.push(["argsz", num(inb.length)]);
      if (Object.keys(arg).length > 0) step.push(["arg", arg]);
    }
    const outb = ev.argOut;
    if (outb === undefined) return undefined;
    const vout = decode(def, outb);
    const ok = ev.errno === undefined;
    const out: Record<string, Val> = {};
    const newIds: [FieldDef, bigint][] = [];
    for (const f of fields) {
      for (const k of keysOf(f)) {
        const changed = vout[k] !== vin[k];
        if (!changed && !(ok && f.dir === "out")) continue;
        out[k] = this.field(pid, f, vout[k]);
        if (ok && changed && (f.kind === "id" || f.kind === "fd") && f.dir !== "in" && f.count === undefined)
          newIds.push([f, vout[k]]);
      }
    }
    // the values the kernel wrote back are checked after the call
    if (Object.keys(out).length > 0) step.push(["out", out]);
    let as: string | undefined;
    const capture: Record<string, Val> = {};
    const outs = fields.filter((f) => f.dir === "out" && f.name.startsWith("out_"));
    for (const [f, v] of newIds) {
      const name = this.newVar(idBase(f.name));
      if (f.kind === "fd") this.fdVars.set(`${pid}:${v}`, name);
      else this.idVars.set(v, name);
      if (outs.length === 1 && outs[0] === f && as === undefined) as = name;
      else capture[name] = f.name;
    }
    if (Object.keys(capture).length > 0) step.push(["capture", capture]);
    return as;
  }

  /** A struct field's value as a person writes it: flags and enums by name, ids and fds by variable. */
  private field(pid: number, f: FieldDef, v: bigint): Val {
    if (f.kind === "flags") return names(v, f.flags ?? {}, 0n);
    if (f.kind === "enum") {
      for (const [n, x] of Object.entries(f.enumNames ?? {})) if (x === v) return n;
      return num(v);
    }
    if (f.kind === "fd") return this.fdVars.has(`${pid}:${v}`) ? this.fd(pid, v) : num(v);
    if (f.kind === "id") {
      const name = this.idVars.get(v);
      return name !== undefined && v !== 0n ? `$${name}` : num(v);
    }
    if (f.kind === "ptr") return this.addr(pid, v);
    if (f.kind === "reserved") return num(v);
    if (this.region(pid, v) !== undefined && v !== 0n) return this.addr(pid, v);
    if (/len|size/.test(f.name)) return size(v);
    return num(v);
  }

  // --- variables ---------------------------------------------------------------

  private newVar(base: string): string {
    let name = base;
    for (let i = 2; this.used.has(name); i++) name = `${base}${i}`;
    this.used.add(name);
    return name;
  }

  private newFd(pid: number, fd: number, base: string): string {
    const name = this.newVar(base);
    this.fdVars.set(`${pid}:${fd}`, name);
    return name;
  }

  private fd(pid: number, fd: unknown): Val {
    const name = this.fdVars.get(`${pid}:${fd}`);
    return name !== undefined ? `$${name}` : new Lit(String(fd));
  }

  private region(pid: number, va: bigint): Region | undefined {
    const list = this.regions.get(pid) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const r = list[i];
      if (va >= r.start && va < r.start + r.len) return r;
    }
    return undefined;
  }

  /** A user address through the mmap that produced it: `$buf`, `$buf + 0x1000`. */
  private addr(pid: number, va: bigint): Val {
    const r = this.region(pid, va);
    if (r === undefined) return num(va);
    const off = va - r.start;
    return off === 0n ? `$${r.name}` : new Lit(`$${r.name} + ${hexOrSize(off)}`);
  }
}

// --- value formatting ------------------------------------------------------------

function keysOf(f: FieldDef): string[] {
  return f.count === undefined ? [f.name] : Array.from({ length: f.count }, (_, i) => `${f.name}[${i}]`);
}

function num(v: unknown): Lit {
  const b = BigInt(v as number | bigint);
  return new Lit(b < 0n ? String(b) : b <= 0xffffn ? String(b) : `0x${b.toString(16)}`);
}

function size(v: bigint): Lit {
  const s = sizeStr(v);
  return /[KMG]$/.test(s) ? new Lit(s) : num(v);
}

function hexOrSize(v: bigint): string {
  const s = sizeStr(v);
  return /[KMG]$/.test(s) ? s : `0x${v.toString(16)}`;
}

/** Flag bits by name (leftover bits as a number); 0 as `0`. */
function names(v: bigint, table: Record<string, bigint>, zero: bigint): Val {
  if (v === zero) return new Lit(String(v));
  const out: Val[] = [];
  let left = v;
  const entries = Object.entries(table).filter(([, bit]) => bit !== 0n);
  // single bits first, then multi-bit names that still match
  for (const [n, bit] of entries) {
    if ((left & bit) === bit) {
      out.push(n);
      left &= ~bit;
    }
  }
  if (left !== 0n) out.push(num(left));
  return out;
}

function openFlags(v: bigint): Val {
  const acc = v & 3n;
  const out: Val[] = [acc === 0n ? "O_RDONLY" : acc === 1n ? "O_WRONLY" : acc === 2n ? "O_RDWR" : num(acc)];
  const rest = names(v & ~3n, Object.fromEntries(Object.entries(O_FLAGS).filter(([, b]) => b > 2n)), 0n);
  if (Array.isArray(rest)) out.push(...rest);
  return out;
}

/** MAP_/MFD_ flags: the huge-page size sits in bits 26..31 as a log2, not as bits. */
function hugeFlags(v: bigint, table: Record<string, bigint>): Val {
  const shift = (v >> 26n) & 0x3fn;
  const single = Object.fromEntries(Object.entries(table).filter(([n]) => !n.startsWith("HUGE_")));
  const out = names(v & ~(0x3fn << 26n), single, -1n) as Val[];
  if (shift === 21n) out.push("HUGE_2MB");
  else if (shift === 30n) out.push("HUGE_1GB");
  else if (shift !== 0n) out.push(num(shift << 26n));
  return out.filter((x) => !(x instanceof Lit && x.text === "0"));
}

function mapFlags(v: bigint): Val {
  // SHARED_VALIDATE is SHARED|PRIVATE: name the two bits
  const t = Object.fromEntries(Object.entries(MAP).filter(([n]) => n !== "SHARED_VALIDATE"));
  return hugeFlags(v, t);
}

function fdBase(path: string): string {
  if (path === "/dev/iommu") return "iommufd";
  if (path === "/dev/vfio/vfio") return "container";
  if (/^\/dev\/vfio\/\d+$/.test(path)) return `group${path.slice(11)}`;
  if (path.startsWith("/dev/vfio/devices/")) return "dev";
  return "fd";
}

function idBase(field: string): string {
  const b = field.replace(/^out_/, "").replace(/_?id$/, "").replace(/_fd$/, "fd");
  return b === "" || b === "pt" ? "hwpt" : b === "dev" ? "devid" : b;
}

function bytes(b: Uint8Array): Val {
  if (b.length >= 8 && b.every((x) => x === b[0]))
    return { fill: num(b[0]), len: size(BigInt(b.length)) } as Record<string, Val>;
  return hexText(b);
}

function hexText(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function mapOf(o: Record<string, boolean | number | string>): Record<string, Val> {
  const out: Record<string, Val> = {};
  for (const [k, v] of Object.entries(o)) out[k] = typeof v === "number" ? new Lit(String(v)) : v;
  return out;
}

// --- YAML ---------------------------------------------------------------------------

/** A string as a YAML scalar: plain when YAML reads it back as the same string, else double-quoted. */
function scalar(s: string): string {
  const plain =
    /^[A-Za-z_$/][\w$./|+\- ]*$/.test(s) &&
    !/[\s]$/.test(s) &&
    !/^(true|false|null|yes|no|on|off|~)$/i.test(s) &&
    !/ -/.test(s.replace(/ - /g, ""));
  return plain ? s : JSON.stringify(s);
}

function key(k: string): string {
  return /^\w+$/.test(k) ? k : JSON.stringify(k);
}

/** A value in YAML flow style: `{ a: 1, b: [X, Y] }`. */
function flow(v: Val): string {
  if (v instanceof Lit) return v.text;
  if (typeof v === "string") return scalar(v);
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(flow).join(", ")}]`;
  const parts = Object.entries(v).map(([k, x]) => `${key(k)}: ${flow(x)}`);
  return parts.length === 0 ? "{}" : `{ ${parts.join(", ")} }`;
}
