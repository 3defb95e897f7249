import * as ioat from "../../hw/ioat-regs.js";
import {
  MEMCPY_MSIX_BAR,
  MEMCPY_MSIX_BAR_SIZE,
  MEMCPY_MSIX_PBA_OFFSET,
  MEMCPY_MSIX_TABLE_OFFSET,
  MEMCPY_REG_COUNT,
  MEMCPY_REG_DOORBELL,
  MEMCPY_REG_DST,
  MEMCPY_REG_FAULT_ADDR,
  MEMCPY_REG_ID,
  MEMCPY_REG_LEN,
  MEMCPY_REG_SRC,
  MEMCPY_REG_STATUS,
} from "../../hw/memcpy-dev.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_DEVICE_ID,
  PCI_STATUS,
  PCI_VENDOR_ID,
} from "../../hw/pci-regs.js";
import type { TraceEvent } from "../../index.js";
import { hex } from "./addr.js";

/** VFIO_PCI_OFFSET_SHIFT: a vfio-pci device fd's file offset is region index << 40 | offset in the region. */
const REGION_SHIFT = 40n;
const REGION_NAMES = ["BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config space", "VGA"];
const CONFIG_INDEX = 7;

const MEMCPY_REGS: Record<number, string> = {
  [MEMCPY_REG_ID]: "ID",
  [MEMCPY_REG_SRC]: "SRC",
  [MEMCPY_REG_DST]: "DST",
  [MEMCPY_REG_LEN]: "LEN",
  [MEMCPY_REG_DOORBELL]: "DOORBELL",
  [MEMCPY_REG_STATUS]: "STATUS",
  [MEMCPY_REG_FAULT_ADDR]: "FAULT_ADDR",
  [MEMCPY_REG_COUNT]: "COUNT",
};

const CONFIG_REGS: Record<number, string> = {
  [PCI_VENDOR_ID]: "PCI_VENDOR_ID",
  [PCI_DEVICE_ID]: "PCI_DEVICE_ID",
  [PCI_COMMAND]: "PCI_COMMAND",
  [PCI_STATUS]: "PCI_STATUS",
  [PCI_BASE_ADDRESS_0]: "PCI_BASE_ADDRESS_0",
};

/** The register of a device kind's BAR0 at `off`, when the view knows its layout. */
function bar0Reg(kind: string | undefined, off: number): string | undefined {
  if (kind === "memcpy") return MEMCPY_REGS[off];
  if (kind === "ioat") {
    if (off >= ioat.IOAT_MSIX_TABLE_OFFSET && off < ioat.IOAT_MSIX_PBA_OFFSET) return "MSI-X table";
    if (off >= ioat.IOAT_MSIX_PBA_OFFSET && off < ioat.IOAT_MSIX_PBA_OFFSET + 0x1000) return "MSI-X PBA";
    return ioat.ioatRegName(off);
  }
  return undefined;
}

/** The part of the memcpy device's MSI-X BAR at `off`: the table and the PBA have a page each. */
function memcpyMsixPart(off: number): string | undefined {
  if (off >= MEMCPY_MSIX_TABLE_OFFSET && off < MEMCPY_MSIX_PBA_OFFSET) return "MSI-X table";
  if (off >= MEMCPY_MSIX_PBA_OFFSET && off < MEMCPY_MSIX_BAR_SIZE) return "MSI-X PBA";
  return undefined;
}

/**
 * What a pread/pwrite on a VFIO device fd touched, in words: "BAR0 + 0x90
 * (CHAINADDR) ← 0x100000". `kind` is the device's kind when known (its
 * registers are then named); undefined for any other call.
 */
export function mmioNote(ev: TraceEvent, kind: string | undefined): string | undefined {
  if (ev.call !== "pread64" && ev.call !== "pwrite64") return undefined;
  const off = BigInt(ev.args[2] ?? -1);
  if (off < 0n) return undefined;
  const index = Number(off >> REGION_SHIFT);
  const inRegion = Number(off & ((1n << REGION_SHIFT) - 1n));
  const region = REGION_NAMES[index] ?? `region ${index}`;
  const reg =
    index === CONFIG_INDEX
      ? CONFIG_REGS[inRegion]
      : index === 0
        ? bar0Reg(kind, inRegion)
        : index === MEMCPY_MSIX_BAR && kind === "memcpy"
          ? memcpyMsixPart(inRegion)
          : undefined;
  let text = `${region} + ${hex(inRegion)}${reg ? ` (${reg})` : ""}`;
  const d = ev.data;
  if (ev.errno === undefined && d !== undefined && d.length > 0 && d.length <= 8) {
    let v = 0n;
    for (let i = d.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(d[i]);
    text += ev.call === "pwrite64" ? ` ← ${hex(v)}` : ` → ${hex(v)}`;
    const meaning = reg && index === 0 ? decodeValue(kind, reg, v) : undefined;
    if (meaning) text += ` (${meaning})`;
  }
  return text;
}

const IOAT_STATUS = ["ACTIVE", "DONE", "SUSPENDED", "HALTED"];
const IOAT_CHANERR_BITS: [number, string][] = [
  [ioat.IOAT_CHANERR_SRC_ADDR_ERR, "SRC_ADDR_ERR"],
  [ioat.IOAT_CHANERR_DEST_ADDR_ERR, "DEST_ADDR_ERR"],
  [ioat.IOAT_CHANERR_NEXT_ADDR_ERR, "NEXT_ADDR_ERR"],
  [ioat.IOAT_CHANERR_NEXT_DESC_ALIGN_ERR, "NEXT_DESC_ALIGN_ERR"],
  [ioat.IOAT_CHANERR_CHAIN_ADDR_VALUE_ERR, "CHAIN_ADDR_VALUE_ERR"],
  [ioat.IOAT_CHANERR_READ_DATA_ERR, "READ_DATA_ERR"],
  [ioat.IOAT_CHANERR_WRITE_DATA_ERR, "WRITE_DATA_ERR"],
  [ioat.IOAT_CHANERR_CONTROL_ERR, "CONTROL_ERR"],
  [ioat.IOAT_CHANERR_LENGTH_ERR, "LENGTH_ERR"],
  [ioat.IOAT_CHANERR_COMPLETION_ADDR_ERR, "COMPLETION_ADDR_ERR"],
];
const MEMCPY_STATUS: Record<number, string> = { 0: "idle", 2: "done", 3: "error: the copy faulted" };

/** A status or error register's value in words (the registers a driver polls). */
function decodeValue(kind: string | undefined, reg: string, v: bigint): string | undefined {
  if (kind === "ioat" && reg === "CHANSTS") {
    const st = Number(v & BigInt(ioat.IOAT_CHANSTS_STATUS));
    return `${IOAT_STATUS[st] ?? st}, last descriptor ${hex(v & ~0x3fn)}`;
  }
  if (kind === "ioat" && reg === "CHANERR") {
    const names = IOAT_CHANERR_BITS.filter(([b]) => (v & BigInt(b)) !== 0n).map(([, n]) => n);
    return names.length ? names.join(" | ") : "no error";
  }
  if (kind === "memcpy" && reg === "STATUS") return MEMCPY_STATUS[Number(v)];
  return undefined;
}
