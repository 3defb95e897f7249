import type { Task } from "../kernel/task.js";
import { EINVAL, ENODEV, ENOTTY, EOVERFLOW, EPERM, fail } from "../uapi/errno.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from "../uapi/iommufd.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import { offsetOf, offsetOfEnd, type StructDef, type StructView, structView } from "../uapi/struct.js";
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_GET_API_VERSION,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  vfio_info_cap_header,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
  vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_dma_avail,
  vfio_iova_range,
} from "../uapi/vfio.js";
import type { IommufdCtx } from "./ctx.js";
import { HwptPaging } from "./hw-pagetable.js";
import { allocUserPages, disableLargePages, IommufdIoas, mapNewPages } from "./ioas.js";
import { U64_MAX } from "./iova-alloc.js";

/** get_compat_ioas(): ENODEV when no compat IOAS is set. */
function compatIoas(ictx: IommufdCtx): IommufdIoas {
  const ioas = ictx.vfioIoas;
  if (ioas === undefined) {
    fail(ENODEV, "no compat IOAS: attach a VFIO group to this container or set one with IOMMU_VFIO_IOAS");
  }
  return ioas;
}

/**
 * iommufd_vfio_compat_ioas_create(): the IOAS the first VFIO group on the
 * container uses (a normal object, destroyed at close). The kernel allocates
 * the new IOAS first (so an allocation failure wins), then refuses a
 * no-IOMMU context (EINVAL, even when an IOAS was set with IOMMU_VFIO_IOAS),
 * then reuses an existing compat IOAS and drops the new one.
 */
export function iommufdVfioCompatIoasCreate(ictx: IommufdCtx): number {
  const ioas = new IommufdIoas(ictx);
  ictx.objects.alloc(ioas);
  if (ictx.noIommuMode) {
    ictx.objects.abort(ioas);
    fail(EINVAL, "the container is in no-IOMMU mode; it has no IOAS");
  }
  if (ictx.vfioIoas !== undefined) {
    ictx.objects.abort(ioas);
    return ictx.vfioIoas.id;
  }
  ictx.objects.finalize(ioas);
  ictx.vfioIoas = ioas;
  return ioas.id;
}

/** iommufd_vfio_compat_ioas_get_id(). */
export function iommufdVfioCompatIoasGetId(ictx: IommufdCtx): number {
  return compatIoas(ictx).id;
}

/** iommufd_vfio_compat_set_no_iommu(): refused once a compat IOAS exists. */
export function iommufdVfioCompatSetNoIommu(ictx: IommufdCtx): void {
  if (ictx.vfioIoas !== undefined)
    fail(EINVAL, "a compat IOAS already exists; the container cannot become no-IOMMU");
  ictx.noIommuMode = true;
}

/** iommufd_vfio_ioctl(): the type1 container ioctls on an iommufd fd (nr < 0x80 or past the table). */
export function vfioCompatIoctl(ictx: IommufdCtx, task: Task, cmd: number, arg: bigint): number {
  switch (cmd >>> 0) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_SET_IOMMU:
      return setIommu(ictx, task, arg);
    case VFIO_CHECK_EXTENSION:
      return checkExtension(ictx, arg);
    case VFIO_IOMMU_GET_INFO:
      return getInfo(ictx, task, arg);
    case VFIO_IOMMU_MAP_DMA:
      return mapDma(ictx, task, arg);
    case VFIO_IOMMU_UNMAP_DMA:
      return unmapDma(ictx, task, arg);
    default:
      return fail(
        ENOTTY,
        `ioctl 0x${(cmd >>> 0).toString(16)} is neither an iommufd command nor a type1 ioctl the compat layer serves`,
      );
  }
}

function checkExtension(ictx: IommufdCtx, arg: bigint): number {
  const type = Number(BigInt.asUintN(32, arg));
  switch (type) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      // iommufd_vfio_check_extension() answers 1 even in no-IOMMU mode (SET_IOMMU then refuses).
      return 1;
    case VFIO_NOIOMMU_IOMMU:
      return ictx.k.kconfig.VFIO_NOIOMMU ? 1 : 0;
    case VFIO_DMA_CC_IOMMU: {
      const ioas = compatIoas(ictx);
      for (const h of ioas.hwptList) if (h instanceof HwptPaging && !h.domain.enforcingCoherency) return 0;
      return 1;
    }
    default:
      return 0;
  }
}

function setIommu(ictx: IommufdCtx, task: Task, arg: bigint): number {
  const type = Number(BigInt.asUintN(32, arg));
  if (ictx.k.kconfig.VFIO_NOIOMMU && type === VFIO_NOIOMMU_IOMMU && ictx.noIommuMode) {
    if (!task.capable("CAP_SYS_RAWIO")) fail(EPERM, "VFIO_NOIOMMU_IOMMU needs CAP_SYS_RAWIO");
    return 0;
  }
  if ((type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) || ictx.noIommuMode) {
    fail(EINVAL, `iommufd's compat container serves only TYPE1/TYPE1v2 (asked for ${type})`);
  }
  const ioas = compatIoas(ictx);
  // TYPE1 (v1) may unmap inside a mapping: that needs PAGE_SIZE IOPTEs.
  if (type === VFIO_TYPE1_IOMMU) disableLargePages(ioas);
  return 0;
}

/** The first `minsz` bytes of a struct, in a buffer of its sizeof (zero past minsz), as a typed view. */
function readStruct<D extends StructDef>(
  task: Task,
  arg: bigint,
  def: D,
  minsz: number,
): { s: StructView<D>; buf: Uint8Array } {
  const buf = new Uint8Array(def.size);
  buf.set(task.copyFromUser(arg, minsz));
  return { s: structView(def, buf), buf };
}

const MAP_MINSZ = offsetOfEnd(vfio_iommu_type1_dma_map, "size");
const UNMAP_MINSZ = offsetOfEnd(vfio_iommu_type1_dma_unmap, "size");
const INFO_MINSZ = offsetOfEnd(vfio_iommu_type1_info, "iova_pgsizes");

function mapDma(ictx: IommufdCtx, task: Task, arg: bigint): number {
  const { s: map } = readStruct(task, arg, vfio_iommu_type1_dma_map, MAP_MINSZ);
  const { argsz, flags } = map;
  if (argsz < MAP_MINSZ || (flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) !== 0) {
    fail(EINVAL, `vfio_iommu_type1_dma_map: argsz ${argsz} < 32 or unknown flags 0x${flags.toString(16)}`);
  }
  const ioas = compatIoas(ictx);
  let mflags = IOMMU_IOAS_MAP_FIXED_IOVA;
  if (flags & VFIO_DMA_MAP_FLAG_READ) mflags |= IOMMU_IOAS_MAP_READABLE;
  if (flags & VFIO_DMA_MAP_FLAG_WRITE) mflags |= IOMMU_IOAS_MAP_WRITEABLE;
  const { vaddr, iova, size } = map;
  // The accounting is the context's (iopt_map_common): MM when the context was opened as
  // /dev/vfio/vfio or set so by RLIMIT_MODE, per-user on a plain /dev/iommu.
  const pages = allocUserPages(ictx, task, vaddr, size, (flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0);
  mapNewPages(ioas, pages, iova, mflags);
  return 0;
}

function unmapDma(ictx: IommufdCtx, task: Task, arg: bigint): number {
  const { s: unmap, buf } = readStruct(task, arg, vfio_iommu_type1_dma_unmap, UNMAP_MINSZ);
  const { argsz, flags } = unmap;
  if (argsz < UNMAP_MINSZ || (flags & ~VFIO_DMA_UNMAP_FLAG_ALL) !== 0) {
    fail(
      EINVAL,
      `vfio_iommu_type1_dma_unmap: argsz ${argsz} < 24 or unsupported flags 0x${flags.toString(16)}`,
    );
  }
  const ioas = compatIoas(ictx);
  const { iova, size } = unmap;
  // iommufd_vfio_unmap_dma() writes `size` (the bytes unmapped so far) back even when the
  // unmap itself fails; only the UNMAP_ALL argument check and a failed cut skip the copy.
  const progress = { unmapped: 0n };
  let err: unknown;
  if (flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (iova !== 0n || size !== 0n) fail(EINVAL, "VFIO_DMA_UNMAP_FLAG_ALL needs iova 0 and size 0");
    try {
      ioas.iopt.unmapRange(0n, U64_MAX, progress);
    } catch (e) {
      err = e;
    }
  } else {
    if (ioas.iopt.disableLargePages) {
      // TYPE1: cut at the range's edges so a sub-range of a mapping can go.
      const pts = [BigInt.asUintN(64, iova + size - 1n)];
      if (iova !== 0n) pts.push(iova - 1n);
      ioas.iopt.cutIova(pts);
    }
    try {
      if (size === 0n) fail(EINVAL, "size is 0");
      const last = iova + size - 1n;
      if (last > U64_MAX) fail(EOVERFLOW, `iova 0x${iova.toString(16)} + size - 1 overflows`);
      // Since the 2025 fix an unmap that finds nothing succeeds with size 0, as legacy type1 does.
      ioas.iopt.unmapRange(iova, last, progress);
    } catch (e) {
      err = e;
    }
  }
  unmap.size = progress.unmapped;
  task.copyToUser(arg, buf.subarray(0, UNMAP_MINSZ));
  if (err !== undefined) throw err;
  return 0;
}

function getInfo(ictx: IommufdCtx, task: Task, arg: bigint): number {
  // Only minsz bytes are read; cap_offset and pad go back as the kernel's zeroes.
  const { s: info, buf } = readStruct(task, arg, vfio_iommu_type1_info, INFO_MINSZ);
  const argsz = info.argsz;
  if (argsz < INFO_MINSZ) fail(EINVAL, `vfio_iommu_type1_info: argsz ${argsz} < 16`);
  const copy = Math.min(argsz, vfio_iommu_type1_info.size);
  const ioas = compatIoas(ictx);
  // iommufd_get_pagesizes(): AND of every domain's sizes, sub-page sizes folded into PAGE_SIZE.
  let pg = U64_MAX;
  for (const d of ioas.iopt.domains) pg &= d.pgsizeBitmap;
  if ((pg & (PAGE - 1n)) !== 0n) pg = (pg & ~(PAGE - 1n)) | PAGE;
  if (pg < ioas.iopt.iovaAlignment) pg = ioas.iopt.iovaAlignment;
  info.flags = VFIO_IOMMU_INFO_PGSIZES;
  info.iova_pgsizes = pg;
  info.cap_offset = 0;
  const caps: Uint8Array[] = [];
  const avail = new Uint8Array(vfio_iommu_type1_info_dma_avail.size);
  const av = structView(vfio_iommu_type1_info_dma_avail, avail);
  av.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
  av.version = 1;
  av.avail = 0xffffffff;
  caps.push(avail);
  const ranges = ioas.iopt.usableRanges();
  const hdrSize = vfio_iommu_type1_info_cap_iova_range.size;
  const rangeSize = vfio_iova_range.size;
  const iovaCap = new Uint8Array(hdrSize + rangeSize * ranges.length);
  const ic = structView(vfio_iommu_type1_info_cap_iova_range, iovaCap);
  ic.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
  ic.version = 1;
  ic.nr_iovas = ranges.length;
  const rangeAt = (r: number) => hdrSize + rangeSize * r;
  ranges.forEach(([start, end], i) => {
    const r = structView(vfio_iova_range, iovaCap.subarray(rangeAt(i), rangeAt(i + 1)));
    r.start = start;
    r.end = end;
  });
  caps.push(iovaCap);
  let total = vfio_iommu_type1_info.size;
  let lastCapOff = -1;
  for (const [i, c] of caps.entries()) {
    const room = argsz > total ? argsz - total : 0;
    if (room >= c.length) task.copyToUser(arg + BigInt(total), c);
    else if (i === 1) {
      // iommufd_fill_cap_iova(): each range that fits is written even when the whole cap does not.
      for (let r = 0; rangeAt(r + 1) <= room; r++)
        task.copyToUser(arg + BigInt(total + rangeAt(r)), c.subarray(rangeAt(r), rangeAt(r + 1)));
    }
    // The previous cap's `next` is written only when everything so far fit.
    if (lastCapOff >= 0 && argsz >= total) {
      const hdr = new Uint8Array(vfio_info_cap_header.size);
      structView(vfio_info_cap_header, hdr).next = total;
      const at = offsetOf(vfio_info_cap_header, "next");
      task.copyToUser(
        arg + BigInt(lastCapOff + at),
        hdr.subarray(at, offsetOfEnd(vfio_info_cap_header, "next")),
      );
    }
    lastCapOff = total;
    total += Math.ceil(c.length / 8) * 8;
  }
  if (argsz >= total) info.cap_offset = vfio_iommu_type1_info.size;
  info.argsz = total;
  info.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
  task.copyToUser(arg, buf.subarray(0, copy));
  return 0;
}
