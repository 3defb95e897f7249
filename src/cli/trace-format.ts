import type { TraceEvent } from "../kernel/trace.js";
import { describeIoctl } from "../scenario/ioctl-arg.js";
import { errnoName } from "../uapi/errno.js";
import type { KernelProfile } from "../uapi/profiles.js";
import { decode, formatStruct } from "../uapi/struct.js";
import { VFIO_EXTENSION_NAMES } from "../uapi/vfio.js";

export { describeIoctl };

const hex = (v: number | bigint | string) =>
  typeof v === "string"
    ? JSON.stringify(v)
    : v < 0
      ? `-0x${(-BigInt(v)).toString(16)}`
      : `0x${v.toString(16)}`;

const PROT = ["PROT_READ", "PROT_WRITE", "PROT_EXEC"];
const MAPF: [number, string][] = [
  [0x1, "MAP_SHARED"],
  [0x2, "MAP_PRIVATE"],
  [0x10, "MAP_FIXED"],
  [0x20, "MAP_ANONYMOUS"],
  [0x2000, "MAP_LOCKED"],
  [0x4000, "MAP_NORESERVE"],
  [0x8000, "MAP_POPULATE"],
  [0x40000, "MAP_HUGETLB"],
  [0x100000, "MAP_FIXED_NOREPLACE"],
];

function protStr(p: number): string {
  const s = PROT.filter((_, i) => (p & (1 << i)) !== 0);
  return s.length ? s.join("|") : "PROT_NONE";
}

function mapFlagsStr(f: number): string {
  const s: string[] = [];
  let left = f;
  for (const [bit, name] of MAPF) {
    if ((f & bit) !== 0) {
      s.push(name);
      left &= ~bit;
    }
  }
  const huge = (f >>> 26) & 0x3f;
  if (huge !== 0) {
    s.push(`${huge}<<MAP_HUGE_SHIFT`);
    left &= ~(0x3f << 26);
  }
  if (left !== 0) s.push(hex(left));
  return s.join("|") || "0";
}

const O_FLAGS: [number, string][] = [
  [0o100, "O_CREAT"],
  [0o200, "O_EXCL"],
  [0o4000, "O_NONBLOCK"],
  [0o2000000, "O_CLOEXEC"],
];
function openFlagsStr(f: number): string {
  const s = [["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"][f & 3]];
  for (const [bit, name] of O_FLAGS) if ((f & bit) !== 0) s.push(name);
  return s.join("|");
}

export interface TraceFormatOptions {
  /** Prefix "[pid N] " (default true, as strace -f). */
  pid?: boolean;
}

/** One line per syscall, strace-style, structs decoded from the uapi tables. */
export function formatTraceEvent(
  ev: TraceEvent,
  profile: KernelProfile = "latest",
  opts: TraceFormatOptions = {},
): string {
  const a = ev.args;
  let call: string;
  switch (ev.call) {
    case "open":
      call = `open(${JSON.stringify(a[0])}, ${openFlagsStr(Number(a[1]))})`;
      break;
    case "ioctl":
      call = formatIoctl(ev, profile);
      break;
    case "mmap":
      call = `mmap(${hex(a[0])}, ${hex(a[1])}, ${protStr(Number(a[2]))}, ${mapFlagsStr(Number(a[3]))}, ${a[4]}, ${hex(a[5])})`;
      break;
    case "munmap":
      call = `munmap(${hex(a[0])}, ${hex(a[1])})`;
      break;
    case "pread64":
    case "pwrite64":
      call = `${ev.call}(${a[0]}, <${a[1]} bytes>, ${hex(a[2])})`;
      break;
    case "memfd_create":
      call = `memfd_create(${JSON.stringify(a[0])}, ${hex(a[1])})`;
      break;
    case "ftruncate":
      call = `ftruncate(${a[0]}, ${hex(a[1])})`;
      break;
    case "read":
    case "write":
      call = `${ev.call}(${a[0]}, <${a[1]} bytes>)`;
      break;
    case "eventfd":
      call = `eventfd2(${a[0]}, ${efdFlagsStr(Number(a[1]))})`;
      break;
    case "exit":
      call = "exit_group(0)";
      break;
    default:
      call = `${ev.call}(${a.map((x) => (typeof x === "string" ? JSON.stringify(x) : String(x))).join(", ")})`;
  }
  const ret =
    ev.errno !== undefined
      ? `-1 ${errnoName(ev.errno)} (${ev.reason ?? ""})`
      : ev.call === "mmap"
        ? hex(ev.ret)
        : String(ev.ret);
  return `${opts.pid === false ? "" : `[pid ${ev.pid}] `}${call} = ${ret}`;
}

function efdFlagsStr(f: number): string {
  const s: string[] = [];
  if (f & 1) s.push("EFD_SEMAPHORE");
  if (f & 0o4000) s.push("EFD_NONBLOCK");
  if (f & 0o2000000) s.push("EFD_CLOEXEC");
  const left = f & ~(1 | 0o4000 | 0o2000000);
  if (left !== 0) s.push(hex(left));
  return s.join("|") || "0";
}

function formatIoctl(ev: TraceEvent, profile: KernelProfile): string {
  const [fd, req, ptr] = ev.args as [number, number, bigint];
  const d = describeIoctl(ev.fdKind, Number(req), profile);
  const name = d?.name ?? hex(req);
  if (d === undefined) return `ioctl(${fd}, ${name}, ${hex(ptr)})`;
  if (d.arg === "value") {
    // CHECK_EXTENSION / SET_IOMMU take an extension number: print its name
    const ext = VFIO_EXTENSION_NAMES[Number(ptr)];
    return `ioctl(${fd}, ${name}, ${ext ?? ptr})`;
  }
  if (d.arg === "none") return `ioctl(${fd}, ${name})`;
  if (d.arg === "s32ptr" && ev.argIn !== undefined && ev.argIn.length >= 4) {
    return `ioctl(${fd}, ${name}, [${new DataView(ev.argIn.buffer, ev.argIn.byteOffset).getInt32(0, true)}])`;
  }
  if (d.arg === "string" && ev.argIn !== undefined) {
    const end = ev.argIn.indexOf(0);
    return `ioctl(${fd}, ${name}, ${JSON.stringify(new TextDecoder().decode(ev.argIn.subarray(0, end < 0 ? undefined : end)))})`;
  }
  if (d.struct === undefined || ev.argIn === undefined) return `ioctl(${fd}, ${name}, ${hex(ptr)})`;
  // print what the kernel holds after the call: inputs plus written-back outputs
  const bytes = ev.errno === undefined && ev.argOut !== undefined ? ev.argOut : ev.argIn;
  const values = decode(d.struct, bytes);
  return `ioctl(${fd}, ${name}, ${formatStruct(d.struct, values, { userSize: bytes.length })})`;
}
