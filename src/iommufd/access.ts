import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import { EFAULT, EINVAL, ENOENT, EOVERFLOW, EPERM, fail, rethrowWith } from "../uapi/errno.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import type { IommufdCtx } from "./ctx.js";
import type { IoptAccessHook, IoptArea } from "./io-pagetable.js";
import { getIoas, type IommufdIoas } from "./ioas.js";
import { hex, U64_MAX } from "./iova-alloc.js";
import { IommufdObject } from "./object.js";
import type { PinUser } from "./pages.js";

/** IOMMUFD_ACCESS_RW_WRITE */
export const IOMMUFD_ACCESS_RW_WRITE = 1 << 0;
/** IOMMUFD_ACCESS_RW_KTHREAD: caller is not the owning process (force the slow path). */
export const IOMMUFD_ACCESS_RW_KTHREAD = 1 << 1;

/** struct iommufd_access_ops as a driver supplies them. */
export interface AccessOps {
  /** The driver pins pages (needs_pin_pages): the IOAS alignment becomes PAGE_SIZE. */
  needsPinPages: boolean;
  /** Called when userspace unmaps [iova, iova+length): unpin everything inside before returning. */
  unmap(iova: bigint, length: bigint): void;
}

interface AccessPin {
  user: PinUser;
  count: number;
  area: IoptArea;
}

/**
 * struct iommufd_access: an in-kernel user of an IOAS (emulated devices,
 * mdev). users: the table, +1 for the creating driver. Holds the iommufd
 * file; an attached access holds +1 on its IOAS.
 */
export class IommufdAccess extends IommufdObject implements IoptAccessHook {
  readonly type = "ACCESS" as const;
  ioas: IommufdIoas | undefined;
  readonly iovaAlignment: bigint;
  /** Pin records by area and page range (identical ranges share one record). */
  readonly pins = new Map<string, AccessPin>();
  constructor(
    readonly ictx: IommufdCtx,
    readonly ops: AccessOps,
    /**
     * iommufd_access_create_internal(): a kernel-owned access (a HW queue's)
     * outside the object table that holds no file reference; its pins lock
     * their areas (IOAS_UNMAP gives EBUSY).
     */
    readonly internal = false,
  ) {
    super();
    this.iovaAlignment = ops.needsPinPages ? PAGE : 1n;
  }
  notifyUnmap(iova: bigint, length: bigint): void {
    this.ops.unmap(iova, length);
  }
  destroy(): void {
    if (this.ioas !== undefined) {
      // A driver that still holds pins at destroy leaks them in the kernel; the model drops them.
      for (const p of this.pins.values()) {
        p.area.pages.removeUser(p.user);
        p.area.numAccesses -= p.count;
        if (this.internal) p.area.numLocks -= p.count;
      }
      this.pins.clear();
      this.ioas.iopt.removeAccess(this);
      this.ioas.refPut();
      this.ioas = undefined;
    }
    if (!this.internal) this.ictx.put();
  }
}

/** iommufd_access_create_internal() + iommufd_access_attach_internal(). */
export function iommufdAccessCreateInternal(ictx: IommufdCtx, ioas: IommufdIoas): IommufdAccess {
  const a = new IommufdAccess(ictx, { needsPinPages: false, unmap: () => {} }, true);
  ioas.iopt.addAccess(a);
  ioas.refGet();
  a.ioas = ioas;
  return a;
}

/** iommufd_access_create(): the object is published at once with the driver's reference. */
export function iommufdAccessCreate(ictx: IommufdCtx, ops: AccessOps): IommufdAccess {
  const a = new IommufdAccess(ictx, ops);
  ictx.objects.alloc(a);
  a.refGet();
  ictx.get();
  ictx.objects.finalize(a);
  return a;
}

/** iommufd_access_destroy(): the driver drops its reference and the object goes. */
export function iommufdAccessDestroy(a: IommufdAccess): void {
  a.refPut();
  a.ictx.objects.removeInternal(a);
}

/** iommufd_access_attach(): EINVAL when already attached; EADDRINUSE from the alignment rule. */
export function iommufdAccessAttach(a: IommufdAccess, ioasId: number): void {
  if (a.ioas !== undefined) fail(EINVAL, `access ${a.id} is already attached to IOAS ${a.ioas.id}`);
  const ioas = getIoas(a.ictx, ioasId);
  ioas.iopt.addAccess(a);
  ioas.refGet();
  a.ioas = ioas;
}

/** iommufd_access_replace(): the driver first drops every pin through unmap(0, ULONG_MAX). */
export function iommufdAccessReplace(a: IommufdAccess, ioasId: number): void {
  if (a.ioas === undefined) fail(ENOENT, `access ${a.id} is not attached`);
  const ioas = getIoas(a.ictx, ioasId);
  if (ioas === a.ioas) return;
  ioas.iopt.checkAlignment(ioas.iopt.computeAlignment({ access: a }));
  a.ops.unmap(0n, U64_MAX);
  detachInternal(a);
  ioas.iopt.addAccess(a);
  ioas.refGet();
  a.ioas = ioas;
}

/** iommufd_access_detach(): unmap-all notification, then leave the IOAS. */
export function iommufdAccessDetach(a: IommufdAccess): void {
  if (a.ioas === undefined) return;
  a.ops.unmap(0n, U64_MAX);
  detachInternal(a);
}

function detachInternal(a: IommufdAccess): void {
  const ioas = a.ioas!;
  ioas.iopt.removeAccess(a);
  ioas.refPut();
  a.ioas = undefined;
}

/** The areas covering [iova, last] with no gap, or ENOENT (iopt_for_each_contig_area + contig_done). */
function contigAreas(
  ioas: IommufdIoas,
  iova: bigint,
  last: bigint,
  each: (a: IoptArea, s: bigint, e: bigint) => void,
): void {
  let cur = iova;
  for (const n of ioas.iopt.areas.intersecting(iova, last)) {
    const a = n.value;
    if (a.iova > cur) break;
    const e = a.last < last ? a.last : last;
    each(a, cur, e);
    cur = e + 1n;
    if (cur > last) return;
  }
  fail(ENOENT, `[${hex(iova)}, ${hex(last)}] is not fully mapped (gap at ${hex(cur)})`);
}

function checkRange(a: IommufdAccess, iova: bigint, length: bigint): [IommufdIoas, bigint] {
  if (length === 0n) fail(EINVAL, "length is 0");
  const last = iova + length - 1n;
  if (last > U64_MAX) fail(EOVERFLOW, `iova ${hex(iova)} + length overflows`);
  if (a.ioas === undefined) fail(ENOENT, `access ${a.id} is not attached to an IOAS`);
  return [a.ioas, last];
}

function checkProt(area: IoptArea, flags: number): void {
  const need = flags & IOMMUFD_ACCESS_RW_WRITE ? IOMMU_WRITE : IOMMU_READ;
  if ((area.iommuProt & need) === 0) {
    fail(
      EPERM,
      `area [${hex(area.iova)}, ${hex(area.last)}] is not mapped ${need === IOMMU_WRITE ? "WRITEABLE" : "READABLE"}`,
    );
  }
}

/**
 * iommufd_access_pin_pages(): pin [iova, iova+length) and return one pfn
 * per PAGE_SIZE page. Partial failures are rolled back.
 */
export function iommufdAccessPinPages(
  a: IommufdAccess,
  iova: bigint,
  length: bigint,
  flags: number,
): number[] {
  const [ioas, last] = checkRange(a, iova, length);
  const plan: { area: IoptArea; first: number; lastIdx: number }[] = [];
  contigAreas(ioas, iova, last, (area, s, e) => {
    const startByte = area.startByte + (s - area.iova);
    if (area.preventAccess) fail(EINVAL, `area [${hex(area.iova)}, ${hex(area.last)}] is being unmapped`);
    if (plan.length === 0 && startByte % PAGE !== 0n)
      fail(EINVAL, `iova ${hex(iova)} is not page aligned in its area`);
    if (e < last && (area.startByte + (e - area.iova)) % PAGE !== PAGE - 1n) {
      fail(EINVAL, `area [${hex(area.iova)}, ${hex(area.last)}] does not end on a page boundary`);
    }
    checkProt(area, flags);
    if (flags & IOMMUFD_ACCESS_RW_WRITE && !area.pages.writable)
      fail(EPERM, "writable pin of read-only pages");
    plan.push({
      area,
      first: Number(startByte / PAGE),
      lastIdx: Number((area.startByte + (e - area.iova)) / PAGE),
    });
  });
  const done: string[] = [];
  const out: number[] = [];
  try {
    for (const p of plan) {
      const key = `${p.area.iova}:${p.first}:${p.lastIdx}`;
      let rec = a.pins.get(key);
      if (rec === undefined) {
        const user = p.area.pages.addUser(
          p.first,
          p.lastIdx,
          "access",
          (flags & IOMMUFD_ACCESS_RW_WRITE) !== 0,
        );
        rec = { user, count: 0, area: p.area };
        a.pins.set(key, rec);
      }
      rec.count++;
      p.area.numAccesses++;
      if (a.internal) p.area.numLocks++;
      done.push(key);
      for (let i = p.first; i <= p.lastIdx; i++) out.push(p.area.pages.pfnAt(i));
    }
  } catch (e) {
    for (const key of done) dropPin(a, key);
    throw e;
  }
  return out;
}

function dropPin(a: IommufdAccess, key: string): void {
  const rec = a.pins.get(key)!;
  rec.area.numAccesses--;
  if (a.internal) rec.area.numLocks--;
  if (--rec.count === 0) {
    rec.area.pages.removeUser(rec.user);
    a.pins.delete(key);
  }
}

/** iommufd_access_unpin_pages(): must match an earlier pin exactly. */
export function iommufdAccessUnpinPages(a: IommufdAccess, iova: bigint, length: bigint): void {
  const [ioas, last] = checkRange(a, iova, length);
  const keys: string[] = [];
  contigAreas(ioas, iova, last, (area, s, e) => {
    const first = Number((area.startByte + (s - area.iova)) / PAGE);
    const lastIdx = Number((area.startByte + (e - area.iova)) / PAGE);
    const key = `${area.iova}:${first}:${lastIdx}`;
    if (!a.pins.has(key)) fail(EINVAL, `no pin of [${hex(s)}, ${hex(e)}] to drop`);
    keys.push(key);
  });
  for (const k of keys) dropPin(a, k);
}

/**
 * iommufd_access_rw(): byte copy to/from the IOAS. Pinned pages are read
 * through physical memory; others through the owning process's memory
 * (which fails once that memory is gone).
 */
export function iommufdAccessRw(a: IommufdAccess, iova: bigint, buf: Uint8Array, flags: number): void {
  const [ioas, last] = checkRange(a, iova, BigInt(buf.length));
  const write = (flags & IOMMUFD_ACCESS_RW_WRITE) !== 0;
  const phys = a.ictx.k.phys;
  const steps: (() => void)[] = [];
  contigAreas(ioas, iova, last, (area, s, e) => {
    if (area.preventAccess) fail(EINVAL, `area [${hex(area.iova)}, ${hex(area.last)}] is being unmapped`);
    checkProt(area, flags);
    if (write && !area.pages.writable) fail(EPERM, "write to read-only pages");
    steps.push(() => {
      let byte = area.startByte + (s - area.iova);
      let bufOff = Number(s - iova);
      let left = Number(e - s + 1n);
      while (left > 0) {
        const idx = Number(byte / PAGE);
        const off = Number(byte % PAGE);
        const n = Math.min(left, 4096 - off);
        const pfn = area.pages.pfnAt(idx);
        if (pfn >= 0) {
          const pa = pfn * 4096 + off;
          if (write) phys.write(pa, buf.subarray(bufOff, bufOff + n));
          else buf.set(phys.read(pa, n), bufOff);
        } else {
          const src = area.pages.source;
          const what = `cannot ${write ? "write" : "read"} ${src.describe()} page ${idx}: `;
          try {
            if (write) {
              if (src.write === undefined) fail(EFAULT, "no CPU access to these pages");
              src.write(idx, off, buf.subarray(bufOff, bufOff + n));
            } else {
              if (src.read === undefined) fail(EFAULT, "no CPU access to these pages");
              buf.set(src.read(idx, off, n), bufOff);
            }
          } catch (e) {
            rethrowWith(e, what, EFAULT);
          }
        }
        byte += BigInt(n);
        bufOff += n;
        left -= n;
      }
    });
  });
  for (const s of steps) s();
}
