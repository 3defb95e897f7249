import { statSync } from "node:fs";
import { EBADF, EINVAL, ENOMEM } from "../uapi/errno.js";
import { MFD_HUGE_MASK, MFD_HUGE_SHIFT, MFD_HUGETLB } from "../uapi/linux.js";

/** The huge page sizes the model's pools have (hstates): 2 MiB and 1 GiB. */
const HSTATE_SHIFTS = new Set([21, 30]);

/**
 * memfd_create(MFD_HUGETLB) through the bridge (shim/memfd.c): the shim made
 * an ordinary memfd, and every mapping of it is to be hugetlb memory of the
 * model's pool. Checks the flags as memfd_create does (EINVAL for a page
 * size no hstate has) and returns the file's key as /proc/PID/maps prints a
 * mapping of it ("MAJ:MIN INODE", hex device, decimal inode), or -errno
 * with the reason.
 */
export function hugetlbMemfd(
  pid: number,
  fd: number,
  flags: number,
): { key: string; shift: number } | { errno: number; reason: string } {
  if ((flags & MFD_HUGETLB) === 0) return { errno: -EINVAL, reason: "MFD_HUGETLB is not set" };
  const shift = (flags >>> MFD_HUGE_SHIFT) & MFD_HUGE_MASK;
  const size = shift === 0 ? 21 : shift;
  if (!HSTATE_SHIFTS.has(size))
    return {
      errno: -EINVAL,
      reason: `no hugetlb pool of 2^${size} bytes pages (hstate): only 2 MiB and 1 GiB`,
    };
  let st: { dev: number; ino: number };
  try {
    st = statSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return { errno: -EBADF, reason: `fd ${fd} is not open in the process` };
  }
  return { key: mapsKey(st.dev, st.ino), shift: size };
}

/** A file's device and inode as /proc/PID/maps prints them (new_encode_dev order of major and minor). */
export function mapsKey(dev: number, ino: number): string {
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  return `${hex(major)}:${hex(minor)} ${ino}`;
}

/** What mmap of a hugetlb memfd needs to know of the model's pools: its sysfs attributes. */
export type HstateAttrs = (shift: number, attr: string) => string | undefined;

/**
 * mmap of a file memfd_create(MFD_HUGETLB) made through the bridge:
 * 1 (map it: the pool has the pages), 0 (the fd is no such file: an
 * ordinary mmap), or -errno with the reason. As hugetlbfs_file_mmap: the
 * offset must be a multiple of the huge page size (EINVAL), and the pool
 * must be able to provide every huge page of the mapping, free pages not
 * promised to others plus what overcommit still allows (ENOMEM, the check
 * of hugetlb_reserve_pages). The model takes the pages when it first
 * touches them (a pin, a pagemap lookup), not here.
 */
export function hugetlbMmap(
  files: ReadonlyMap<string, number>,
  attrs: HstateAttrs,
  pid: number,
  fd: number,
  len: bigint,
  off: bigint,
): number | { errno: number; reason: string } {
  let st: { dev: number; ino: number };
  try {
    st = statSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return 0;
  }
  const shift = files.get(mapsKey(st.dev, st.ino));
  if (shift === undefined) return 0;
  const size = 1n << BigInt(shift);
  if (off % size !== 0n)
    return { errno: -EINVAL, reason: `offset 0x${off.toString(16)} is not a multiple of the huge page size` };
  const need = (len + size - 1n) / size;
  const num = (a: string) => BigInt(attrs(shift, a)?.trim() ?? "0");
  const overcommit = num("nr_overcommit_hugepages") - num("surplus_hugepages");
  const have = num("free_hugepages") - num("resv_hugepages") + (overcommit > 0n ? overcommit : 0n);
  if (have < need)
    return {
      errno: -ENOMEM,
      reason: `the model's pool of ${shift === 21 ? "2 MiB" : "1 GiB"} pages has ${have} available, the mapping needs ${need} (hugetlb_reserve_pages)`,
    };
  return 1;
}
