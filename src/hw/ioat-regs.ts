/**
 * Intel I/OAT (Crystal Beach DMA) register facts, named as in the kernel's
 * drivers/dma/ioat/registers.h and hw.h: the device-wide registers at the
 * start of BAR0, channel 0's registers at BAR0 + 0x80, the 64-byte copy
 * descriptor, and the two error registers in extended config space.
 */

/** PCI_DEVICE_ID_INTEL_IOAT_SKX: the only ID the VFIO selftests' ioat driver claims. */
export const IOAT_VENDOR_ID = 0x8086;
export const IOAT_DEVICE_ID = 0x2021;
/** Class 0x08 (base system peripheral), subclass 0x80 (other), as the real part reports. */
export const IOAT_CLASS = 0x088000;
export const IOAT_REVISION = 0x04;

/** BAR0 is 16 KiB on the real part; the MSI-X table and PBA sit in it too. */
export const IOAT_BAR0_SIZE = 16384;
export const IOAT_MSIX_TABLE_OFFSET = 0x2000;
export const IOAT_MSIX_PBA_OFFSET = 0x3000;
export const IOAT_MSIX_VECTORS = 1;

// --- device registers (BAR0) ---------------------------------------------------
export const IOAT_CHANCNT_OFFSET = 0x00; // 8-bit
export const IOAT_XFERCAP_OFFSET = 0x01; // 8-bit, log2 of the largest copy
export const IOAT_INTRCTRL_OFFSET = 0x03; // 8-bit
export const IOAT_INTRCTRL_MASTER_INT_EN = 0x01;
export const IOAT_INTRCTRL_MSIX_VECTOR_CONTROL = 0x08;
export const IOAT_VER_OFFSET = 0x08; // 8-bit CBVER
export const IOAT_DMA_CAP_OFFSET = 0x10; // 32-bit

/** CBVER 3.3 (Skylake-SP), one of the two versions the selftest accepts. */
export const IOAT_VER_3_3 = 0x33;
/**
 * 2^12 = 4 KiB per descriptor. vfio_pci_driver_test copies at this size and
 * its memcpy_storm does min(250 GiB / size, 65535) copies: 65535 x 4 KiB is
 * 256 MiB a run, which five IOMMU modes can afford in their 60 s budget on
 * two shared cores; 2^16 would be 4 GiB a run. 12 is also a value real
 * parts report (IOAT_XFERCAP_4KB).
 */
export const IOAT_XFERCAP_LOG2 = 12;

// --- channel 0 registers (BAR0 + 0x80) -------------------------------------------
export const IOAT_CHANNEL_MMIO_SIZE = 0x80;
export const IOAT_CHAN0 = IOAT_CHANNEL_MMIO_SIZE;
export const IOAT_CHANCTRL_OFFSET = 0x00; // 16-bit
export const IOAT_CHANCTRL_INT_REARM = 0x0001;
export const IOAT_CHANCTRL_ERR_COMPLETION_EN = 0x0004;
export const IOAT_CHANCTRL_ANY_ERR_ABORT_EN = 0x0008;
export const IOAT_CHANCTRL_ERR_INT_EN = 0x0010;
export const IOAT_CHANCMD_OFFSET = 0x04; // 8-bit
export const IOAT_CHANCMD_RESET = 0x20;
export const IOAT_CHANCMD_RESUME = 0x10;
export const IOAT_CHANCMD_ABORT = 0x08;
export const IOAT_CHANCMD_SUSPEND = 0x04;
export const IOAT_CHAN_DMACOUNT_OFFSET = 0x06; // 16-bit
export const IOAT_CHANSTS_OFFSET = 0x08; // 64-bit, RO
export const IOAT_CHANSTS_STATUS = 0x7;
export const IOAT_CHANSTS_ACTIVE = 0x0;
export const IOAT_CHANSTS_DONE = 0x1;
export const IOAT_CHANSTS_SUSPENDED = 0x2;
export const IOAT_CHANSTS_HALTED = 0x3;
export const IOAT_CHAINADDR_OFFSET = 0x10; // 64-bit
export const IOAT_CHANCMP_OFFSET = 0x18; // 64-bit completion writeback address
export const IOAT_CDAR_OFFSET = 0x20; // 64-bit current descriptor address, RO
export const IOAT_CHANERR_OFFSET = 0x28; // 32-bit, RW1C

export const IOAT_CHANERR_SRC_ADDR_ERR = 0x0001;
export const IOAT_CHANERR_DEST_ADDR_ERR = 0x0002;
export const IOAT_CHANERR_NEXT_ADDR_ERR = 0x0004;
export const IOAT_CHANERR_NEXT_DESC_ALIGN_ERR = 0x0008;
export const IOAT_CHANERR_CHAIN_ADDR_VALUE_ERR = 0x0010;
export const IOAT_CHANERR_READ_DATA_ERR = 0x0100;
export const IOAT_CHANERR_WRITE_DATA_ERR = 0x0200;
export const IOAT_CHANERR_CONTROL_ERR = 0x0400;
export const IOAT_CHANERR_LENGTH_ERR = 0x0800;
export const IOAT_CHANERR_COMPLETION_ADDR_ERR = 0x1000;
/** Every CHANERR bit the model can raise (the rest read 0 and ignore writes). */
export const IOAT_CHANERR_IMPLEMENTED = 0x1f1f;

// --- extended configuration space --------------------------------------------------
export const IOAT_PCI_DMAUNCERRSTS_OFFSET = 0x148;
export const IOAT_PCI_CHANERR_INT_OFFSET = 0x180;

// --- the 64-byte descriptor (struct ioat_dma_descriptor) ------------------------------
export const IOAT_DESC_SIZE = 64;
export const IOAT_DESC_SIZE_OFFSET = 0x00; // u32 bytes to copy
export const IOAT_DESC_CTL_OFFSET = 0x04; // u32 control
export const IOAT_DESC_SRC_OFFSET = 0x08;
export const IOAT_DESC_DST_OFFSET = 0x10;
export const IOAT_DESC_NEXT_OFFSET = 0x18;
export const IOAT_DESC_CTL_INT_EN = 0x1;
export const IOAT_DESC_CTL_COMPL_WRITE = 0x8;
/** A null descriptor moves no data (the kernel driver starts a channel with one). */
export const IOAT_DESC_CTL_NULL = 0x20;
export const IOAT_DESC_CTL_OP_SHIFT = 24;
export const IOAT_OP_COPY = 0x00;

/** Register names by BAR0 offset and width, for traces and `inspect`. */
export const IOAT_REG_NAMES: readonly { off: number; width: number; name: string }[] = [
  { off: IOAT_CHANCNT_OFFSET, width: 1, name: "CHANCNT" },
  { off: IOAT_XFERCAP_OFFSET, width: 1, name: "XFERCAP" },
  { off: IOAT_INTRCTRL_OFFSET, width: 1, name: "INTRCTRL" },
  { off: IOAT_VER_OFFSET, width: 1, name: "CBVER" },
  { off: IOAT_DMA_CAP_OFFSET, width: 4, name: "DMA_CAP" },
  { off: IOAT_CHAN0 + IOAT_CHANCTRL_OFFSET, width: 2, name: "CHANCTRL" },
  { off: IOAT_CHAN0 + IOAT_CHANCMD_OFFSET, width: 1, name: "CHANCMD" },
  { off: IOAT_CHAN0 + IOAT_CHAN_DMACOUNT_OFFSET, width: 2, name: "DMACOUNT" },
  { off: IOAT_CHAN0 + IOAT_CHANSTS_OFFSET, width: 8, name: "CHANSTS" },
  { off: IOAT_CHAN0 + IOAT_CHAINADDR_OFFSET, width: 8, name: "CHAINADDR" },
  { off: IOAT_CHAN0 + IOAT_CHANCMP_OFFSET, width: 8, name: "CHANCMP" },
  { off: IOAT_CHAN0 + IOAT_CDAR_OFFSET, width: 8, name: "CDAR" },
  { off: IOAT_CHAN0 + IOAT_CHANERR_OFFSET, width: 4, name: "CHANERR" },
];

/** The register an access at BAR0 `off` falls in, as "NAME" or "NAME+k" (undefined outside them). */
export function ioatRegName(off: number): string | undefined {
  for (const r of IOAT_REG_NAMES) {
    if (off >= r.off && off < r.off + r.width) return off === r.off ? r.name : `${r.name}+${off - r.off}`;
  }
  return undefined;
}
