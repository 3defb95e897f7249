import { readFileSync } from "node:fs";
import type { FileOps } from "../kernel/file.js";
import type { MmStruct } from "../mm/index.js";
import { PAGE_SIZE } from "../uapi/linux.js";

/**
 * /proc/PID/status of a process behind the bridge: the real kernel's text,
 * with VmLck and VmPin counting what the model charged too (its locked_vm
 * and pinned_vm: iommufd's and VFIO's pins happen in the model, so the real
 * kernel's lines miss them). The real values (mlock, real pins) stay in
 * the sum. The text is made again at each read from offset 0, as the
 * kernel's seq_file makes it per read.
 */
export function procStatusOps(pid: number, mm: () => MmStruct | null): FileOps {
  let text: Uint8Array | null = null;
  return {
    kind: "proc-status",
    pread(_f, _t, len, off) {
      if (off === 0n || text === null) text = statusText(pid, mm());
      const o = Number(off > BigInt(text.length) ? BigInt(text.length) : off);
      return text.subarray(o, o + len);
    },
  };
}

function statusText(pid: number, mm: MmStruct | null): Uint8Array {
  let real: string;
  try {
    real = readFileSync(`/proc/${pid}/status`, "latin1");
  } catch {
    return new Uint8Array(0);
  }
  if (mm === null) return Buffer.from(real, "latin1");
  const kb = PAGE_SIZE / 1024;
  const add: Record<string, number> = { VmLck: mm.lockedVm * kb, VmPin: mm.pinnedVm * kb };
  // "VmLck:\t       0 kB": the value right-aligned in 8 columns (seq_put_decimal_ull_width)
  const out = real.replace(/^(VmLck|VmPin):\t\s*(\d+) kB$/gm, (_l, name: string, v: string) => {
    const n = Number(v) + add[name];
    return `${name}:\t${String(n).padStart(8)} kB`;
  });
  return Buffer.from(out, "latin1");
}
