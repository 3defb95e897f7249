import type { Machine, Process } from "../index.js";
import { EINVAL, errnoName, KernelError } from "../uapi/errno.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from "../uapi/iommufd.js";
import * as L from "../uapi/linux.js";
import type { KernelProfile } from "../uapi/profiles.js";
import type { StructDef, StructValues } from "../uapi/struct.js";
import { ScenarioError } from "./error.js";
import { decodeStruct, encodeStructArg, type IoctlTarget, ioctlTarget, otherArg } from "./ioctl-arg.js";
import type { Step } from "./types.js";
import { checkKeys, toBig, toBytes, toFlags, toNum, toStr, type Vars } from "./values.js";

/** What one step did: the return value or errno, and whatever it produced. */
export interface Outcome {
  /** A short label: "ioctl IOMMU_IOAS_MAP", "mmap", "list_dir /dev/vfio". */
  label: string;
  /** The syscall's return value (steps that are no syscall leave it unset). */
  ret?: number | bigint;
  errno?: number;
  reason?: string;
  /** The ioctl struct as the kernel left it (or a helper's named results). */
  out?: StructValues;
  outStruct?: string;
  outDef?: StructDef;
  data?: Uint8Array;
  text?: string;
  entries?: string[];
  /** The value `as:` captures. */
  main?: bigint | string;
  /** A check step's own verdict (check_dma, check_counters, ...). */
  checkFailure?: string;
  /** Narration (say). */
  said?: string;
}

export interface StepEnv {
  m: Machine;
  procs: Map<string, Process>;
  defaultProc: string;
  vars: Vars;
  profile: KernelProfile;
}

// The flag names a scenario may use, by their uapi constants (src/uapi/linux.ts: one fact, one place).
const big = (o: Record<string, number>): Record<string, bigint> =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, BigInt(v)]));
export const PROT: Record<string, bigint> = big({
  NONE: L.PROT_NONE,
  READ: L.PROT_READ,
  WRITE: L.PROT_WRITE,
  EXEC: L.PROT_EXEC,
});
export const MAP: Record<string, bigint> = big({
  SHARED: L.MAP_SHARED,
  PRIVATE: L.MAP_PRIVATE,
  SHARED_VALIDATE: L.MAP_SHARED_VALIDATE,
  FIXED: L.MAP_FIXED,
  ANONYMOUS: L.MAP_ANONYMOUS,
  LOCKED: L.MAP_LOCKED,
  NORESERVE: L.MAP_NORESERVE,
  POPULATE: L.MAP_POPULATE,
  HUGETLB: L.MAP_HUGETLB,
  FIXED_NOREPLACE: L.MAP_FIXED_NOREPLACE,
  HUGE_2MB: L.MAP_HUGE_2MB,
  HUGE_1GB: L.MAP_HUGE_1GB,
});
export const O_FLAGS: Record<string, bigint> = big({
  O_RDONLY: L.O_RDONLY,
  O_WRONLY: L.O_WRONLY,
  O_RDWR: L.O_RDWR,
  O_CREAT: L.O_CREAT,
  O_EXCL: L.O_EXCL,
  O_NONBLOCK: L.O_NONBLOCK,
  O_CLOEXEC: L.O_CLOEXEC,
});
export const MFD: Record<string, bigint> = big({
  CLOEXEC: L.MFD_CLOEXEC,
  ALLOW_SEALING: L.MFD_ALLOW_SEALING,
  HUGETLB: L.MFD_HUGETLB,
  NOEXEC_SEAL: L.MFD_NOEXEC_SEAL,
  EXEC: L.MFD_EXEC,
  HUGE_2MB: L.MFD_HUGE_2MB,
  HUGE_1GB: L.MFD_HUGE_1GB,
});
export const EFD: Record<string, bigint> = big({
  SEMAPHORE: L.EFD_SEMAPHORE,
  NONBLOCK: L.EFD_NONBLOCK,
  CLOEXEC: L.EFD_CLOEXEC,
});

/** Execute one step (not `repeat`, which the runner unrolls). */
export function execStep(step: Step, env: StepEnv, where: string): Outcome {
  const a = step.args;
  const v = env.vars;
  const num = (x: unknown, what: string) => toNum(x, v, `${where}: ${what}`);
  const big = (x: unknown, what: string) => toBig(x, v, `${where}: ${what}`);
  const p = proc(step, env, where);
  switch (step.kind) {
    case "open": {
      const path = toStr(step.body, v, `${where}: path`);
      const flags = a.flags === undefined ? 2 : Number(toFlags(a.flags, O_FLAGS, v, `${where}: flags`));
      return sys(`open ${path}`, p, p.open(path, flags));
    }
    case "close":
      return sys("close", p, p.close(num(step.body, "fd")));
    case "dup":
      return sys("dup", p, p.dup(num(step.body, "fd")));
    case "ioctl":
      return doIoctl(step, env, p, where);
    case "mmap": {
      const body = (step.body === true || step.body === null ? {} : step.body) as Record<string, unknown>;
      const o = { ...a, ...(typeof body === "object" ? body : {}) };
      checkKeys(o, ["addr", "len", "prot", "flags", "fd", "off"], `${where}: mmap`);
      const prot = o.prot === undefined ? 3 : Number(toFlags(o.prot, PROT, v, `${where}: prot`));
      const flags = o.flags === undefined ? 0x22 : Number(toFlags(o.flags, MAP, v, `${where}: flags`));
      const r = p.mmap(
        o.addr === undefined ? 0n : big(o.addr, "addr"),
        big(o.len, "len"),
        prot,
        flags,
        o.fd === undefined ? -1 : num(o.fd, "fd"),
        o.off === undefined ? 0n : big(o.off, "off"),
      );
      return sys("mmap", p, r);
    }
    case "munmap":
      return sys("munmap", p, p.munmap(big(step.body, "va"), big(a.len, "len")));
    case "memfd_create": {
      const flags = a.flags === undefined ? 0 : Number(toFlags(a.flags, MFD, v, `${where}: flags`));
      return sys("memfd_create", p, p.memfdCreate(toStr(step.body, v, `${where}: name`), flags));
    }
    case "ftruncate":
      return sys("ftruncate", p, p.ftruncate(num(step.body, "fd"), big(a.len, "len")));
    case "eventfd": {
      const flags = a.flags === undefined ? 0 : Number(toFlags(a.flags, EFD, v, `${where}: flags`));
      return sys("eventfd", p, p.eventfd(step.body === true ? 0 : num(step.body ?? 0, "initval"), flags));
    }
    case "read":
      return bytesResult("read", p, p.read(num(step.body, "fd"), num(a.len, "len")));
    case "write":
      return sys("write", p, p.write(num(step.body, "fd"), toBytes(a.data, v, `${where}: data`)));
    case "pread":
      return bytesResult("pread", p, p.pread(num(step.body, "fd"), num(a.len, "len"), big(a.off, "off")));
    case "pwrite":
      return sys(
        "pwrite",
        p,
        p.pwrite(num(step.body, "fd"), toBytes(a.data, v, `${where}: data`), big(a.off, "off")),
      );
    case "exit":
      p.exit();
      return { label: "exit", ret: 0 };
    case "read_memory": {
      const r = p.readMemory(big(step.body, "va"), num(a.len, "len"));
      return bytesResult("read_memory", p, r, "the process has no readable mapping there");
    }
    case "write_memory": {
      const r = p.writeMemory(big(step.body, "va"), toBytes(a.data, v, `${where}: data`));
      return r < 0
        ? { label: "write_memory", ret: r, errno: -r, reason: "the process has no writable mapping there" }
        : { label: "write_memory", ret: r };
    }
    case "read_phys": {
      try {
        const data = env.m.debug.readPhys(big(step.body, "pa"), num(a.len, "len"));
        return { label: "read_phys", data, main: firstWord(data) };
      } catch (e) {
        if (e instanceof RangeError)
          return { label: "read_phys", ret: -EINVAL, errno: EINVAL, reason: e.message };
        throw e;
      }
    }
    case "bind_driver": {
      const bdf = toStr(step.body, v, `${where}: bdf`);
      const driver = a.driver === undefined ? "vfio-pci" : toStr(a.driver, v, `${where}: driver`);
      return kernelResult(`bind_driver ${bdf} ${driver}`, () => env.m.bindDriver(bdf, driver));
    }
    case "unbind_driver": {
      const bdf = toStr(step.body, v, `${where}: bdf`);
      return kernelResult(`unbind_driver ${bdf}`, () => env.m.unbindDriver(bdf));
    }
    case "set_param": {
      const name = toStr(step.body, v, `${where}: name`);
      const val = a.value;
      const r = env.m.setParam(
        name,
        typeof val === "bigint" ? Number(val) : (val as boolean | number | string),
      );
      return r < 0
        ? {
            label: `set_param ${name}`,
            ret: r,
            errno: -r,
            reason: r === -2 ? "no such module parameter" : "invalid value",
          }
        : { label: `set_param ${name}`, ret: r };
    }
    case "list_dir": {
      const path = toStr(step.body, v, `${where}: path`);
      return kernelResult(`list_dir ${path}`, () => {
        const entries = env.m.listDir(path);
        return { entries, main: entries.join(" ") };
      });
    }
    case "read_file": {
      const path = toStr(step.body, v, `${where}: path`);
      return kernelResult(`read_file ${path}`, () => {
        const text = env.m.readFile(path);
        return { text, main: text.trim() };
      });
    }
    case "fail_nth":
      env.m.debug.failNth(num(step.body, "n"));
      return { label: "fail_nth" };
    case "say":
      return { label: "say", said: String(step.body).trim() };
    case "ioas_alloc":
      return helperIoctl(env, p, where, num(step.body, "fd"), "IOMMU_IOAS_ALLOC", {}, "out_ioas_id");
    case "ioas_map": {
      const fields: Record<string, unknown> = { ioas_id: a.ioas, user_va: a.va, length: a.length };
      let flags = a.flags === undefined ? IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE : a.flags;
      if (a.iova !== undefined) {
        fields.iova = a.iova;
        if (a.flags === undefined) flags = (flags as number) | IOMMU_IOAS_MAP_FIXED_IOVA;
      }
      fields.flags = flags;
      return helperIoctl(env, p, where, num(step.body, "fd"), "IOMMU_IOAS_MAP", fields, "iova");
    }
    case "ioas_unmap":
      return helperIoctl(
        env,
        p,
        where,
        num(step.body, "fd"),
        "IOMMU_IOAS_UNMAP",
        { ioas_id: a.ioas, iova: a.iova, length: a.length },
        "length",
      );
    case "destroy":
      return helperIoctl(env, p, where, num(step.body, "fd"), "IOMMU_DESTROY", { id: a.id }, undefined);
    case "bind_iommufd":
      return helperIoctl(
        env,
        p,
        where,
        num(step.body, "fd"),
        "VFIO_DEVICE_BIND_IOMMUFD",
        { iommufd: a.iommufd },
        "out_devid",
      );
    case "attach_pt":
      return helperIoctl(
        env,
        p,
        where,
        num(step.body, "fd"),
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        { pt_id: a.pt },
        "pt_id",
      );
    case "device_dma":
      return deviceDma(env, p, where, num(step.body, "fd"), a);
    default:
      throw new ScenarioError(`${where}: ${step.kind} is handled by the runner`);
  }
}

/** A step needs a part of the model that has not landed yet. */
export class NotModelledError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotModelledError";
  }
}

function proc(step: Step, env: StepEnv, where: string): Process {
  const name = step.process ?? env.defaultProc;
  const p = env.procs.get(name);
  if (p === undefined)
    throw new ScenarioError(
      `${where}: no process named ${name} (processes: ${[...env.procs.keys()].join(", ")})`,
    );
  return p;
}

function sys(label: string, p: Process, r: number | bigint): Outcome {
  if (r < 0) {
    const e = p.lastError();
    const errno = Number(-r);
    return { label, ret: r, errno, reason: e && e.errno === errno ? e.reason : "" };
  }
  return { label, ret: r, main: BigInt(r) };
}

function bytesResult(label: string, p: Process, r: Uint8Array | number, why?: string): Outcome {
  if (typeof r === "number") {
    const e = p.lastError();
    return { label, ret: r, errno: -r, reason: why ?? (e && e.errno === -r ? e.reason : "") };
  }
  return { label, ret: r.length, data: r, main: firstWord(r) };
}

/** The first up to 8 bytes, little-endian: what `as:` keeps from a read. */
function firstWord(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = Math.min(8, b.length) - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

function kernelResult(label: string, fn: () => number | Partial<Outcome>): Outcome {
  try {
    const r = fn();
    if (typeof r === "number") {
      return r < 0 ? { label, ret: r, errno: -r, reason: "" } : { label, ret: r };
    }
    return { label, ...r };
  } catch (e) {
    if (e instanceof KernelError) return { label, ret: -e.errno, errno: e.errno, reason: e.reason };
    throw e;
  }
}

function doIoctl(step: Step, env: StepEnv, p: Process, where: string): Outcome {
  const a = step.args;
  const fd = toNum(a.fd, env.vars, `${where}: fd`);
  if (typeof step.body === "bigint" || typeof step.body === "number") {
    // A raw request number: the argument is a value or raw bytes.
    const req = Number(toBig(step.body, env.vars, where));
    const label = `ioctl 0x${req.toString(16)}`;
    if (a.raw !== undefined) {
      const buf = toBytes(a.raw, env.vars, `${where}: raw`);
      return sys(label, p, p.ioctl(fd, req, buf));
    }
    return sys(
      label,
      p,
      p.ioctl(fd, req, a.arg === undefined ? 0n : toBig(a.arg, env.vars, `${where}: arg`)),
    );
  }
  const t = ioctlTarget(toStr(step.body, env.vars, where), env.profile, where);
  return issue(env, p, where, fd, t, a.arg, a.argsz, a.raw);
}

function issue(
  env: StepEnv,
  p: Process,
  where: string,
  fd: number,
  t: IoctlTarget,
  arg: unknown,
  argsz?: unknown,
  raw?: unknown,
): Outcome {
  const label = `ioctl ${t.name}`;
  if (t.struct !== undefined) {
    const size = argsz === undefined ? t.struct.size : toNum(argsz, env.vars, `${where}: argsz`);
    const buf =
      raw !== undefined
        ? toBytes(raw, env.vars, `${where}: raw`)
        : encodeStructArg(t.struct, arg, size, env.vars, `${where}: arg`);
    const r = p.ioctl(fd, t.request, buf);
    const o = sys(label, p, r);
    o.out = decodeStruct(t.struct, buf);
    o.outStruct = t.struct.name;
    o.outDef = t.struct;
    // `as:` keeps the one out_* field when there is one (out_ioas_id, out_hwpt_id, out_devid)
    const outs = t.struct.fields.filter((f) => f.dir === "out" && f.name.startsWith("out_") && !f.alias);
    if (o.errno === undefined && outs.length === 1) o.main = o.out[outs[0].name];
    return o;
  }
  const x = otherArg(t, arg, env.vars, `${where}: arg`);
  return sys(label, p, p.ioctl(fd, t.request, x ?? 0n));
}

function helperIoctl(
  env: StepEnv,
  p: Process,
  where: string,
  fd: number,
  name: string,
  fields: Record<string, unknown>,
  mainField: string | undefined,
): Outcome {
  const t = ioctlTarget(name, env.profile, where);
  const clean = Object.fromEntries(Object.entries(fields).filter(([, x]) => x !== undefined));
  const o = issue(env, p, where, fd, t, clean);
  if (o.errno === undefined && mainField !== undefined && o.out !== undefined) o.main = o.out[mainField];
  return o;
}

// --- the memcpy device (DESIGN.md, "The memcpy device") ----------------------

const REG_SRC = 0x08n;
const REG_DST = 0x10n;
const REG_LEN = 0x18n;
const REG_DOORBELL = 0x20n;
const REG_STATUS = 0x24n;
const REG_FAULT_ADDR = 0x28n;
const REG_COUNT = 0x30n;
const PCI_COMMAND = 0x04n;
const PCI_COMMAND_MASTER = 0x4;
const CONFIG_REGION = 7;
const BAR0_REGION = 0;

/**
 * One copy by the memcpy device, as a driver does it through its VFIO
 * device fd: region offsets from GET_REGION_INFO, bus mastering on in the
 * config region, SRC/DST/LEN, the doorbell, then STATUS / FAULT_ADDR /
 * COUNT read back. Every access is a real syscall (visible in the trace).
 */
function deviceDma(env: StepEnv, p: Process, where: string, fd: number, a: Record<string, unknown>): Outcome {
  const label = "device_dma";
  const v = env.vars;
  const regionOffset = (index: number): bigint | Outcome => {
    const o = helperIoctl(env, p, where, fd, "VFIO_DEVICE_GET_REGION_INFO", { index }, undefined);
    return o.errno !== undefined ? { ...o, label } : (o.out?.offset ?? 0n);
  };
  const u64 = (x: bigint) => toBytes({ u64: x }, v, where);
  const u32 = (x: bigint) => toBytes({ u32: x }, v, where);
  const cfg = regionOffset(CONFIG_REGION);
  if (typeof cfg !== "bigint") return cfg;
  if (a.bus_master !== false) {
    const cmd = p.pread(fd, 2, cfg + PCI_COMMAND);
    if (typeof cmd === "number") return { ...bytesResult(label, p, cmd) };
    const val = (cmd[0] | (cmd[1] << 8) | PCI_COMMAND_MASTER) & 0xffff;
    const w = p.pwrite(fd, new Uint8Array([val & 0xff, val >> 8]), cfg + PCI_COMMAND);
    if (w < 0) return sys(label, p, w);
  }
  const bar = regionOffset(BAR0_REGION);
  if (typeof bar !== "bigint") return bar;
  for (const [reg, val] of [
    [REG_SRC, u64(toBig(a.src, v, `${where}: src`))],
    [REG_DST, u64(toBig(a.dst, v, `${where}: dst`))],
    [REG_LEN, u64(toBig(a.len, v, `${where}: len`))],
    [REG_DOORBELL, u32(1n)],
  ] as const) {
    const w = p.pwrite(fd, val, bar + reg);
    if (w < 0) return sys(label, p, w);
  }
  const out: StructValues = {};
  for (const [name, reg, len] of [
    ["status", REG_STATUS, 4],
    ["fault_addr", REG_FAULT_ADDR, 8],
    ["count", REG_COUNT, 4],
  ] as const) {
    const r = p.pread(fd, len, bar + reg);
    if (typeof r === "number") return bytesResult(label, p, r);
    out[name] = firstWord(r);
  }
  return { label, ret: 0, out, outStruct: "memcpy registers", main: out.status };
}

export function errnoLabel(o: Outcome): string {
  if (o.errno === undefined) return o.ret === undefined ? "done" : `= ${fmtRet(o.ret)}`;
  return `= -1 ${errnoName(o.errno)}${o.reason ? ` (${o.reason})` : ""}`;
}

export function fmtRet(r: number | bigint): string {
  return typeof r === "bigint" && r > 0xffffn ? `0x${r.toString(16)}` : String(r);
}
