import type { AccountTarget } from "../mm/locked-vm.js";
import type { MemFile } from "../mm/memfd.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import { EFAULT, fail } from "../uapi/errno.js";

/**
 * Where an iopt_pages gets its pages: a process's memory (pin_user_pages
 * with FOLL_LONGTERM) or a memfd's page cache (memfd_pin_folios). `index`
 * is the page index inside the pages object.
 */
export interface PinSource {
  readonly kind: "user" | "file" | "dmabuf";
  /** Pin n pages from page `index`: the runs; a refusal throws a KernelError with its reason. */
  pin(index: number, n: number, write: boolean): PfnRuns;
  unpin(runs: PfnRuns): void;
  /** Byte copy used by access rw when the pages are not pinned (slow path); throws as pin does. */
  read?(index: number, offset: number, len: number): Uint8Array;
  write?(index: number, offset: number, bytes: Uint8Array): number;
  describe(): string;
}

/**
 * What iommufd needs from a process address space (mm_struct): the
 * accounting target plus FOLL_LONGTERM pinning. src/mm's MmStruct provides it.
 */
export interface PinnableMm extends AccountTarget {
  pinUserPages(va: bigint, n: number, write: boolean, site?: string): PfnRuns;
  unpinUserPages(runs: PfnRuns): void;
  read(va: bigint, len: number): Uint8Array;
  write(va: bigint, bytes: Uint8Array): number;
  /** Set once the process exited and its memory is gone. */
  readonly released?: boolean;
}

export function userPinSource(mm: PinnableMm, baseVa: bigint): PinSource {
  const va = (index: number) => baseVa + BigInt(index) * 4096n;
  const live = () => {
    if (mm.released === true) fail(EFAULT, "the owning process's memory is gone");
  };
  return {
    kind: "user",
    pin: (index, n, write) => {
      live();
      return mm.pinUserPages(va(index), n, write, "iopt_pages_pin");
    },
    unpin: (runs) => mm.unpinUserPages(runs),
    read: (index, offset, len) => {
      live();
      return mm.read(va(index) + BigInt(offset), len);
    },
    write: (index, offset, bytes) => {
      live();
      return mm.write(va(index) + BigInt(offset), bytes);
    },
    describe: () => `user memory at 0x${baseVa.toString(16)}`,
  };
}

export function filePinSource(file: MemFile, firstPgoff: number): PinSource {
  return {
    kind: "file",
    pin: (index, n, write) => file.pinPages(firstPgoff + index, n, write, "iopt_pages_pin_file"),
    unpin: (runs) => file.unpinPages(runs),
    read: (index, offset, len) => file.read(BigInt(firstPgoff + index) * 4096n + BigInt(offset), len),
    write: (index, offset, bytes) => file.write(BigInt(firstPgoff + index) * 4096n + BigInt(offset), bytes),
    describe: () => `memfd ${file.name} from page ${firstPgoff}`,
  };
}
