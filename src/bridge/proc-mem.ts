import {
  closeSync,
  fstatSync,
  openSync,
  readFileSync,
  readlinkSync,
  readSync,
  statfsSync,
  writeSync,
} from "node:fs";
import type { ForeignFile, ForeignMemory, ForeignVma } from "../mm/index.js";
import { EFAULT } from "../uapi/errno.js";
import { mapsKey } from "./hugetlb-fd.js";

/**
 * A real process's memory through /proc/PID/mem (reads and writes at
 * virtual addresses; the kernel answers EIO for an unmapped byte, which
 * becomes EFAULT) and its mappings through /proc/PID/maps. The server may
 * open it: the program is its child under exec, and under serve the shim
 * names the server its ptracer (PR_SET_PTRACER) for Yama.
 */
export class ProcMemory implements ForeignMemory {
  /**
   * Bumped by the server before each request: a process's mappings can
   * change only between requests as the model sees them (the caller waits
   * for its reply), so /proc/PID/maps is read once per request at most; a
   * process exit that hands over thousands of pinned pages asked for it
   * once per page.
   */
  static epoch = 0;
  private maps: ForeignVma[] | null = null;
  private mapsEpoch = -1;
  private fd: number;
  /** Files whose mappings are hugetlb memory of the model's pool (memfd_create(MFD_HUGETLB) through the shim), by "MAJ:MIN INODE". */
  hugetlbFiles: { has(key: string): boolean } = new Set<string>();
  /** The bytes at winVa the shim sent with the call being served (its ioctl struct), or null. */
  private win: Uint8Array | null = null;
  private winVa = 0;
  /** Reads that went to /proc/PID/mem, and reads the window answered. */
  readonly counts = { preads: 0, prefetched: 0, mapsReads: 0 };

  constructor(readonly pid: number) {
    this.fd = openSync(`/proc/${pid}/mem`, "r+");
  }

  /**
   * For one call: the process's memory at va is `bytes` (the shim read
   * them as the call began, as the kernel's copy_from_user would), so
   * reads inside them need no pread of /proc/PID/mem; a write that
   * touches them ends the window (later reads see the real memory). null
   * ends it.
   */
  prefetched(va: number, bytes: Uint8Array | null): void {
    this.win = bytes !== null && bytes.length > 0 ? bytes : null;
    this.winVa = va;
  }

  readU32(va: number): number {
    const w = this.win;
    if (w !== null && va >= this.winVa && va + 4 <= this.winVa + w.length) {
      this.counts.prefetched++;
      const o = va - this.winVa;
      return (w[o] | (w[o + 1] << 8) | (w[o + 2] << 16) | (w[o + 3] << 24)) >>> 0;
    }
    const b = this.read(va, 4);
    return typeof b === "number" ? b : (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }

  read(va: number, len: number): Uint8Array | number {
    const w = this.win;
    if (w !== null && va >= this.winVa && va + len <= this.winVa + w.length) {
      this.counts.prefetched++;
      // a copy (the window is the channel's buffer), byte by byte: a struct is short, a view costs more
      const out = new Uint8Array(len);
      for (let i = 0, o = va - this.winVa; i < len; i++) out[i] = w[o + i];
      return out;
    }
    if (this.fd < 0) return -EFAULT;
    this.counts.preads++;
    const out = Buffer.allocUnsafe(len);
    let done = 0;
    try {
      while (done < len) {
        const n = readSync(this.fd, out, done, len - done, va + done);
        if (n <= 0) return -EFAULT;
        done += n;
      }
    } catch {
      return -EFAULT;
    }
    return new Uint8Array(out.buffer, out.byteOffset, len);
  }

  write(va: number, bytes: Uint8Array): number {
    if (this.fd < 0) return -EFAULT;
    const w = this.win;
    if (w !== null && va < this.winVa + w.length && va + bytes.length > this.winVa) {
      this.win = null;
    }
    let done = 0;
    try {
      while (done < bytes.length) {
        const n = writeSync(this.fd, bytes, done, bytes.length - done, va + done);
        if (n <= 0) return -EFAULT;
        done += n;
      }
    } catch {
      return -EFAULT;
    }
    return 0;
  }

  vma(va: number): ForeignVma | undefined {
    if (this.mapsEpoch !== ProcMemory.epoch || this.maps === null) {
      this.maps = this.readMaps();
      this.mapsEpoch = ProcMemory.epoch;
    }
    // sorted by start, as the kernel lists them: a binary search
    const l = this.maps;
    let lo = 0;
    let hi = l.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = l[mid];
      if (va < v.start) hi = mid - 1;
      else if (va >= v.end) lo = mid + 1;
      else return { ...v };
    }
    return undefined;
  }

  private readMaps(): ForeignVma[] {
    this.counts.mapsReads++;
    let text: string;
    try {
      text = readFileSync(`/proc/${this.pid}/maps`, "latin1");
    } catch {
      return [];
    }
    const out: ForeignVma[] = [];
    for (const line of text.split("\n")) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\S+)\s*(.*)$/.exec(line);
      if (m === null) continue;
      const perms = m[3];
      const name = m[7];
      const hugetlb =
        name.startsWith("/anon_hugepage") ||
        name.startsWith("/dev/hugepages/") ||
        this.hugetlbFiles.has(`${m[5]} ${m[6]}`);
      out.push({
        start: Number.parseInt(m[1], 16),
        end: Number.parseInt(m[2], 16),
        read: perms[0] === "r",
        write: perms[1] === "w",
        io: name.startsWith("/dev/") && !name.startsWith("/dev/shm/") && !name.startsWith("/dev/zero"),
        // MAP_HUGETLB memory (anonymous or on hugetlbfs), in pages of the size smaps gives
        hugetlb,
        ...(hugetlb && { hugeShift: this.hugeShift(m[1]) }),
        ...(perms[3] === "s" && { shared: `${m[5]} ${m[6]}`, pgoff: Number.parseInt(m[4], 16) / 4096 }),
      });
    }
    return out;
  }

  /** log2 of a hugetlb vma's page size: KernelPageSize in /proc/PID/smaps (2 MiB if unreadable). */
  private hugeShift(startHex: string): number {
    try {
      const smaps = readFileSync(`/proc/${this.pid}/smaps`, "latin1");
      const at = smaps.startsWith(`${startHex}-`) ? 0 : smaps.indexOf(`\n${startHex}-`) + 1;
      if (at === 0 && !smaps.startsWith(`${startHex}-`)) return 21;
      const kb = Number(/^KernelPageSize:\s+(\d+) kB/m.exec(smaps.slice(at))?.[1] ?? "2048");
      return kb === 1048576 ? 30 : 21;
    } catch {
      return 21;
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** What the bridge needs of a real process's credentials: /proc/PID/status and limits. */
export function procCred(pid: number): { uid: number; capEff: bigint; rlimitMemlock: bigint } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "latin1");
    const uid = Number(/^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1] ?? "1000");
    const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? "0"}`);
    const limits = readFileSync(`/proc/${pid}/limits`, "latin1");
    const ml = /^Max locked memory\s+(\S+)/m.exec(limits)?.[1] ?? "8388608";
    const rlimitMemlock = ml === "unlimited" ? (1n << 64n) - 1n : BigInt(ml);
    return { uid, capEff, rlimitMemlock };
  } catch {
    return undefined;
  }
}

/** Capability numbers the model checks (linux/capability.h). */
const CAP_BITS: Record<string, number> = {
  CAP_DAC_OVERRIDE: 1,
  CAP_IPC_LOCK: 14,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_RESOURCE: 24,
};

/** The capability names set in a CapEff mask. */
export function capNames(capEff: bigint): string[] {
  return Object.entries(CAP_BITS)
    .filter(([, bit]) => (capEff >> BigInt(bit)) & 1n)
    .map(([name]) => name);
}

/** statfs f_type of shmem (tmpfs, and the internal mount memfds live on) and of hugetlbfs. */
const TMPFS_MAGIC = 0x01021994;
const HUGETLBFS_MAGIC = 0x958458f6;

/**
 * A real process's shmem file (a memfd, a tmpfs file such as /dev/shm/x),
 * opened by the server through /proc/PID/fd/N (the same file, not a copy;
 * the server's open keeps it alive after the program closes its fd or
 * exits), with its name, its link and its key as /proc/PID/maps names a mapping of it
 * ("MAJ:MIN INODE"). `{ other }` (the fd's link) for any other open file,
 * undefined when fd is not open in the process.
 */
export function openProcShmemFile(
  pid: number,
  fd: number,
): { file: ForeignFile; name: string; path: string; key: string } | { other: string } | undefined {
  const path = `/proc/${pid}/fd/${fd}`;
  let target: string;
  let fsType: number;
  try {
    target = readlinkSync(path);
    fsType = Number(statfsSync(path).type);
  } catch {
    return undefined;
  }
  // memfd_pin_folios() takes shmem and hugetlbfs files only: anything else the model sees as a file it cannot pin
  if (fsType !== TMPFS_MAGIC && fsType !== HUGETLBFS_MAGIC) return { other: target };
  let osfd: number;
  try {
    osfd = openSync(path, "r+");
  } catch {
    try {
      osfd = openSync(path, "r");
    } catch {
      return { other: target };
    }
  }
  let open = true;
  const file: ForeignFile = {
    read(off, len) {
      if (!open) return -EFAULT;
      const out = Buffer.alloc(len);
      try {
        const n = readSync(osfd, out, 0, len, off);
        return new Uint8Array(out.buffer, out.byteOffset, n);
      } catch (e) {
        return -((e as NodeJS.ErrnoException).errno !== undefined ? -(e as NodeJS.ErrnoException).errno! : 5);
      }
    },
    write(off, bytes) {
      if (!open) return -EFAULT;
      try {
        return writeSync(osfd, bytes, 0, bytes.length, off);
      } catch (e) {
        return -((e as NodeJS.ErrnoException).errno !== undefined ? -(e as NodeJS.ErrnoException).errno! : 5);
      }
    },
    size() {
      return open ? BigInt(fstatSync(osfd).size) : 0n;
    },
    close() {
      if (open) closeSync(osfd);
      open = false;
    },
  };
  const st = fstatSync(osfd);
  const name = target.startsWith("/memfd:") ? target.slice("/memfd:".length) : target;
  return { file, name: name.replace(/ \(deleted\)$/, ""), path: target, key: mapsKey(st.dev, st.ino) };
}
