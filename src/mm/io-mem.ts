/**
 * Device memory a driver lets a process map (a VM_IO | VM_PFNMAP mapping,
 * as vfio-pci's BAR mmap makes with io_remap_pfn_range): no struct pages,
 * no page faults into RAM; every load and store reaches the device.
 * Offsets are file offsets (the mmap offset plus the distance into the VMA).
 */
export interface IoMem {
  readonly kind: "io";
  /** Loads: the bytes, or -errno (the access faults: SIGBUS, EFAULT to a syscall). */
  read(off: number, len: number): Uint8Array | number;
  /** Stores: 0 or -errno. */
  write(off: number, bytes: Uint8Array): number;
  /**
   * The frame a PTE of the mapping at file offset `off` maps (follow_pfn
   * after the device's fault handler ran): a device pfn, or -1 when the
   * fault would fail (SIGBUS). Absent: the mapping has no frame to follow.
   */
  pfn?(off: number): number;
  /** A new VMA refers to the mapping (the VMA's vm_file reference). */
  get?(): void;
  /** A VMA referring to it went away. */
  put?(): void;
}

export function isIoMem(x: unknown): x is IoMem {
  return typeof x === "object" && x !== null && (x as { kind?: unknown }).kind === "io";
}
