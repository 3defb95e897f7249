import type { KFile } from "../kernel/file.js";
import type { Task } from "../kernel/task.js";
import {
  accountLockedVm,
  IOPT_PAGES_ACCOUNT_MM,
  IOPT_PAGES_ACCOUNT_NONE,
  IOPT_PAGES_ACCOUNT_USER,
  type IoptPagesAccountMode,
  unaccountLockedVm,
} from "../mm/locked-vm.js";
import { MemFile } from "../mm/memfd.js";
import {
  EBADF,
  EBUSY,
  EINVAL,
  EMSGSIZE,
  ENODEV,
  ENOENT,
  ENOMEM,
  EOPNOTSUPP,
  EOVERFLOW,
  EPERM,
  fail,
} from "../uapi/errno.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IOMMU_OPTION_RLIMIT_MODE,
  IOMMU_VFIO_IOAS_CLEAR,
  IOMMU_VFIO_IOAS_GET,
  IOMMU_VFIO_IOAS_SET,
  iommu_iova_range,
} from "../uapi/iommufd.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import { structView } from "../uapi/struct.js";
import type { IommufdCtx } from "./ctx.js";
import { DmaBuf, dmabufPinSource } from "./dmabuf.js";
import type { HwptPaging } from "./hw-pagetable.js";
import { IoPagetable, type PagesSlice } from "./io-pagetable.js";
import { hex, U64_MAX } from "./iova-alloc.js";
import { IommufdObject } from "./object.js";
import { IoptPages } from "./pages.js";
import { filePinSource, type PinnableMm, type PinSource, userPinSource } from "./pin-source.js";
import type { UcmdOf } from "./ucmd.js";

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/** struct iommufd_ioas. HWPTs on it and attached accesses hold `users`. */
export class IommufdIoas extends IommufdObject {
  readonly type = "IOAS" as const;
  readonly iopt: IoPagetable;
  /** HWPT_PAGING objects built on this IOAS (auto ones are tried by device attach, in order). */
  readonly hwptList: HwptPaging[] = [];
  constructor(readonly ictx: IommufdCtx) {
    super();
    this.iopt = new IoPagetable(ictx.k.faults);
  }
  destroy(): void {
    // Areas never block destroy; unmapping them drops their pages.
    this.iopt.unmapAll();
    if (this.ictx.vfioIoas === this) this.ictx.vfioIoas = undefined;
  }
}

export function getIoas(ictx: IommufdCtx, id: number): IommufdIoas {
  return ictx.objects.get(id, "IOAS", "IOAS");
}

/** The accounting mode a new pages object gets (iopt_alloc_pages + the context's RLIMIT_MODE). */
export function pagesAccountMode(ictx: IommufdCtx, task: Task): IoptPagesAccountMode {
  let mode: IoptPagesAccountMode = task.capable("CAP_IPC_LOCK")
    ? IOPT_PAGES_ACCOUNT_NONE
    : IOPT_PAGES_ACCOUNT_USER;
  if (ictx.accountMode === IOPT_PAGES_ACCOUNT_MM && mode === IOPT_PAGES_ACCOUNT_USER)
    mode = IOPT_PAGES_ACCOUNT_MM;
  return mode;
}

export function taskMm(task: Task): PinnableMm {
  return task.mm as unknown as PinnableMm;
}

/** iopt_alloc_pages() length rules. */
function checkPagesLength(length: bigint): void {
  if (length === 0n || length > U64_MAX - PAGE) {
    fail(EINVAL, `length ${hex(length)} is 0 or larger than SIZE_MAX - PAGE_SIZE`);
  }
}

/** The pages [base, base + npages * PAGE) holding a byte range that starts off bytes into the first. */
type PagesSpan = { base: bigint; off: number; npages: number };

/**
 * iopt_alloc_pages()'s length rules and the page span of [start, start+length):
 * the first page, the offset of start in it and the number of pages.
 */
function pagesSpan(start: bigint, length: bigint, what: string): PagesSpan {
  checkPagesLength(length);
  if (start + length > U64_MAX + 1n)
    fail(EOVERFLOW, `${what} ${hex(start)} + length ${hex(length)} overflows`);
  const base = start & ~(PAGE - 1n);
  const off = Number(start - base);
  return { base, off, npages: Number((length + BigInt(off) + PAGE - 1n) / PAGE) };
}

/** The iopt_pages object over a span, accounted as the caller's context says. */
function newPages(
  ictx: IommufdCtx,
  task: Task,
  src: PinSource,
  span: PagesSpan,
  length: bigint,
  writable: boolean,
): IoptPages {
  pagesAllocFault(ictx);
  const { base, off, npages } = span;
  return new IoptPages(src, base, off, length, npages, writable, pagesAccountMode(ictx, task), taskMm(task));
}

/** iopt_alloc_user_pages(): a pages object over [uptr, uptr+length) of the caller's memory. */
export function allocUserPages(
  ictx: IommufdCtx,
  task: Task,
  uptr: bigint,
  length: bigint,
  writable: boolean,
): IoptPages {
  const span = pagesSpan(uptr, length, "user_va");
  return newPages(ictx, task, userPinSource(taskMm(task), span.base), span, length, writable);
}

/** iopt_alloc_file_pages(): a pages object over [start, start+length) of a memfd. */
function allocFilePages(
  ictx: IommufdCtx,
  task: Task,
  file: KFile,
  start: bigint,
  length: bigint,
  writable: boolean,
): IoptPages {
  const span = pagesSpan(start, length, "start");
  if (file.priv instanceof DmaBuf)
    return allocDmabufPages(ictx, task, file.priv, span, start, length, writable);
  let src: PinSource;
  let memfile: MemFile | undefined;
  if (file.priv instanceof MemFile) {
    memfile = file.priv;
    src = filePinSource(memfile, Number(span.base / PAGE));
  } else {
    // memfd_pin_folios() refuses anything but shmem and hugetlbfs files.
    src = {
      kind: "file",
      pin: () => fail(EINVAL, `${file.kind} files are neither shmem nor hugetlbfs (memfd_pin_folios)`),
      unpin: () => {},
      describe: () => `${file.kind} file ${file.path}`,
    };
  }
  const pages = newPages(ictx, task, src, span, length, writable);
  if (memfile !== undefined) {
    // The pages object keeps the file (and its page cache) alive.
    memfile.get();
    pages.onFree = () => memfile.put();
  }
  return pages;
}

/**
 * iopt_alloc_dmabuf_pages(): a pages object over [start, start+length) of a
 * dma-buf. The exporter is asked for the memory first (revoked: ENODEV),
 * the range must lie inside it (EINVAL); nothing is pinned or charged. On
 * a revoke every area of it is unmapped from its IOAS's domains.
 */
function allocDmabufPages(
  ictx: IommufdCtx,
  task: Task,
  buf: DmaBuf,
  span: PagesSpan,
  start: bigint,
  length: bigint,
  writable: boolean,
): IoptPages {
  if (buf.revoked) fail(ENODEV, "the dma-buf is revoked");
  if (start + length > buf.length) {
    fail(EINVAL, `[${hex(start)}, +${hex(length)}) is outside the ${hex(buf.length)}-byte dma-buf`);
  }
  const pages = newPages(ictx, task, dmabufPinSource(buf, Number(span.base / PAGE)), span, length, writable);
  pages.accountMode = IOPT_PAGES_ACCOUNT_NONE;
  const importer = {
    revoke: () => {
      pages.revoked = true;
      for (const o of ictx.objects.values()) if (o instanceof IommufdIoas) o.iopt.revokePages(pages);
    },
  };
  buf.get();
  buf.importers.add(importer);
  pages.onFree = () => {
    buf.importers.delete(importer);
    buf.put();
  };
  return pages;
}

/** iopt_alloc_pages(): the kzalloc of struct iopt_pages. */
function pagesAllocFault(ictx: IommufdCtx): void {
  if (ictx.k.faults.hit("iopt_alloc_pages")) fail(ENOMEM, "cannot allocate the iopt_pages object");
}

function checkMapFlags(flags: number, reserved: number): void {
  if ((flags & ~MAP_FLAGS) !== 0 || reserved !== 0) {
    fail(EOPNOTSUPP, `unknown flags 0x${(flags & ~MAP_FLAGS).toString(16)} or non-zero __reserved`);
  }
}

function checkRw(flags: number): void {
  if ((flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)) === 0) {
    fail(EINVAL, "neither IOMMU_IOAS_MAP_WRITEABLE nor IOMMU_IOAS_MAP_READABLE is set");
  }
}

/** Map one fresh pages object; the area takes its own reference, the creation one is dropped. */
export function mapNewPages(ioas: IommufdIoas, pages: IoptPages, iova: bigint, flags: number): bigint {
  try {
    return ioas.iopt.mapSlices(
      [{ pages, startByte: BigInt(pages.pageOffset), length: pages.length }],
      iova,
      flags,
    );
  } finally {
    pages.put();
  }
}

// --- handlers ---------------------------------------------------------------

export function ioasAlloc(u: UcmdOf<"IOMMU_IOAS_ALLOC">): number {
  if (u.cmd.flags !== 0) fail(EOPNOTSUPP, "iommu_ioas_alloc.flags must be 0");
  u.createObject(new IommufdIoas(u.ictx), (ioas) => {
    u.cmd.out_ioas_id = ioas.id;
    u.respond();
  });
  return 0;
}

/** What IOAS_MAP and IOAS_MAP_FILE check first, in this order: flags, ULONG_MAX, READABLE|WRITEABLE, the IOAS. */
/** IOMMU_IOAS_MAP and IOMMU_IOAS_MAP_FILE share flags, ioas_id, length and iova. */
type UcmdMap = UcmdOf<"IOMMU_IOAS_MAP"> | UcmdOf<"IOMMU_IOAS_MAP_FILE">;

function mapArgs(u: UcmdMap, reserved: number) {
  const flags = u.cmd.flags;
  checkMapFlags(flags, reserved);
  const iova = u.cmd.iova;
  const length = u.cmd.length;
  if (iova >= U64_MAX || length >= U64_MAX) fail(EOVERFLOW, "iova or length is ULONG_MAX");
  checkRw(flags);
  const ioas = getIoas(u.ictx, u.cmd.ioas_id);
  return { flags, iova, length, ioas, writable: (flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0 };
}

/** Map a new pages object and tell the caller its IOVA. */
function mapAndRespond(u: UcmdMap, ioas: IommufdIoas, pages: IoptPages, iova: bigint, flags: number): number {
  const out = mapNewPages(ioas, pages, iova, flags);
  u.cmd.iova = out;
  // iommufd_ioas_map(): a failed copy-back returns EFAULT and leaves the mapping in place.
  u.respond();
  return 0;
}

export function ioasMap(u: UcmdOf<"IOMMU_IOAS_MAP">): number {
  const { flags, iova, length, ioas, writable } = mapArgs(u, u.cmd.__reserved);
  const pages = allocUserPages(u.ictx, u.task, u.cmd.user_va, length, writable);
  return mapAndRespond(u, ioas, pages, iova, flags);
}

export function ioasMapFile(u: UcmdOf<"IOMMU_IOAS_MAP_FILE">): number {
  const { flags, iova, length, ioas, writable } = mapArgs(u, 0);
  const fd = u.cmd.fd;
  let file: KFile;
  try {
    file = u.task.fdget(fd);
  } catch {
    return fail(EBADF, `fd ${fd} is not open`);
  }
  const pages = allocFilePages(u.ictx, u.task, file, u.cmd.start, length, writable);
  return mapAndRespond(u, ioas, pages, iova, flags);
}

export function ioasCopy(u: UcmdOf<"IOMMU_IOAS_COPY">): number {
  const flags = u.cmd.flags;
  if ((flags & ~MAP_FLAGS) !== 0) fail(EOPNOTSUPP, `unknown flags 0x${(flags & ~MAP_FLAGS).toString(16)}`);
  const length = u.cmd.length;
  const src = u.cmd.src_iova;
  const dst = u.cmd.dst_iova;
  if (length >= U64_MAX || src >= U64_MAX || dst >= U64_MAX)
    fail(EOVERFLOW, "length, src_iova or dst_iova is ULONG_MAX");
  checkRw(flags);
  const srcIoas = getIoas(u.ictx, u.cmd.src_ioas_id);
  if (length === 0n) fail(EINVAL, "length is 0");
  if (src + length - 1n > U64_MAX) fail(EOVERFLOW, `src_iova ${hex(src)} + length overflows`);
  const slices: PagesSlice[] = srcIoas.iopt.getPages(src, length);
  const dstIoas = getIoas(u.ictx, u.cmd.dst_ioas_id);
  const out = dstIoas.iopt.mapSlices(slices, dst, flags);
  u.cmd.dst_iova = out;
  // iommufd_ioas_copy(): as for MAP, EFAULT with the copy left mapped.
  u.respond();
  return 0;
}

export function ioasUnmap(u: UcmdOf<"IOMMU_IOAS_UNMAP">): number {
  const ioas = getIoas(u.ictx, u.cmd.ioas_id);
  const iova = u.cmd.iova;
  const length = u.cmd.length;
  let unmapped: bigint;
  if (iova === 0n && length === U64_MAX) {
    unmapped = ioas.iopt.unmapAll();
  } else {
    if (iova >= U64_MAX || length >= U64_MAX) fail(EOVERFLOW, "iova or length is ULONG_MAX");
    if (length === 0n) fail(EINVAL, "length is 0");
    const last = iova + length - 1n;
    if (last > U64_MAX) fail(EOVERFLOW, `iova ${hex(iova)} + length ${hex(length)} - 1 overflows`);
    unmapped = ioas.iopt.unmapRange(iova, last);
    if (unmapped === 0n) fail(ENOENT, `no area inside [${hex(iova)}, ${hex(last)}]`);
  }
  u.cmd.length = unmapped;
  u.respond();
  return 0;
}

export function ioasIovaRanges(u: UcmdOf<"IOMMU_IOAS_IOVA_RANGES">): number {
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  const ioas = getIoas(u.ictx, u.cmd.ioas_id);
  const max = u.cmd.num_iovas;
  const ptr = u.cmd.allowed_iovas;
  const ranges = ioas.iopt.usableRanges();
  const n = iommu_iova_range.size;
  for (let i = 0; i < ranges.length && i < max; i++) {
    const b = new Uint8Array(n);
    const r = structView(iommu_iova_range, b);
    r.start = ranges[i][0];
    r.last = ranges[i][1];
    u.task.copyToUser(ptr + BigInt(i * n), b);
  }
  u.cmd.num_iovas = ranges.length;
  u.cmd.out_iova_alignment = ioas.iopt.iovaAlignment;
  u.respond();
  if (ranges.length > max) {
    fail(EMSGSIZE, `${ranges.length} IOVA range(s) but room for ${max}; num_iovas now holds the total`);
  }
  return 0;
}

export function ioasAllowIovas(u: UcmdOf<"IOMMU_IOAS_ALLOW_IOVAS">): number {
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  const ioas = getIoas(u.ictx, u.cmd.ioas_id);
  const n = u.cmd.num_iovas;
  const ptr = u.cmd.allowed_iovas;
  const list: [bigint, bigint][] = [];
  const size = iommu_iova_range.size;
  for (let i = 0; i < n; i++) {
    const { start: s, last: l } = structView(
      iommu_iova_range,
      u.task.copyFromUser(ptr + BigInt(i * size), size),
    );
    if (s >= l) fail(EINVAL, `allowed range ${i}: start ${hex(s)} >= last ${hex(l)}`);
    for (const [ps, pl] of list) {
      if (s <= pl && ps <= l) fail(EINVAL, `allowed range ${i} [${hex(s)}, ${hex(l)}] overlaps another one`);
    }
    list.push([s, l]);
  }
  ioas.iopt.setAllowed(list);
  return 0;
}

export function option(u: UcmdOf<"IOMMU_OPTION">): number {
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  const id = u.cmd.option_id;
  const op = u.cmd.op;
  if (id === IOMMU_OPTION_RLIMIT_MODE) optionRlimitMode(u, op);
  else if (id === IOMMU_OPTION_HUGE_PAGES) optionHugePages(u, op);
  else fail(EOPNOTSUPP, `unknown option_id ${id}`);
  u.respondField("val64");
  return 0;
}

function optionRlimitMode(u: UcmdOf<"IOMMU_OPTION">, op: number): void {
  if (u.cmd.object_id !== 0) fail(EOPNOTSUPP, "IOMMU_OPTION_RLIMIT_MODE is global: object_id must be 0");
  if (op === IOMMU_OPTION_OP_GET) {
    u.cmd.val64 = u.ictx.accountMode === IOPT_PAGES_ACCOUNT_MM ? 1n : 0n;
    return;
  }
  if (op !== IOMMU_OPTION_OP_SET) fail(EOPNOTSUPP, `unknown op ${op}`);
  if (!u.task.capable("CAP_SYS_RESOURCE"))
    fail(EPERM, "setting IOMMU_OPTION_RLIMIT_MODE needs CAP_SYS_RESOURCE");
  if (u.ictx.objects.size > 0) {
    fail(
      EBUSY,
      `the context already has ${u.ictx.objects.size} object(s); RLIMIT_MODE can only change while empty`,
    );
  }
  const v = u.cmd.val64;
  if (v === 0n) u.ictx.accountMode = IOPT_PAGES_ACCOUNT_USER;
  else if (v === 1n) u.ictx.accountMode = IOPT_PAGES_ACCOUNT_MM;
  else fail(EINVAL, `RLIMIT_MODE value ${v} is neither 0 (user) nor 1 (process)`);
}

function optionHugePages(u: UcmdOf<"IOMMU_OPTION">, op: number): void {
  const ioas = getIoas(u.ictx, u.cmd.object_id);
  if (op === IOMMU_OPTION_OP_GET) {
    u.cmd.val64 = ioas.iopt.disableLargePages ? 0n : 1n;
    return;
  }
  if (op !== IOMMU_OPTION_OP_SET) fail(EOPNOTSUPP, `unknown op ${op}`);
  const v = u.cmd.val64;
  if (v === 0n) disableLargePages(ioas);
  else if (v === 1n) ioas.iopt.setDisableLargePages(false);
  else fail(EINVAL, `HUGE_PAGES value ${v} is neither 0 nor 1`);
}

/** iopt_disable_large_pages(): refused once a domain already holds mappings. */
export function disableLargePages(ioas: IommufdIoas): void {
  const iopt = ioas.iopt;
  if (iopt.disableLargePages) return;
  if (iopt.domains.length > 0 && iopt.areas.size > 0) {
    fail(EINVAL, "cannot disable large pages: a domain is attached and areas are already mapped");
  }
  iopt.setDisableLargePages(true);
}

export function vfioIoas(u: UcmdOf<"IOMMU_VFIO_IOAS">): number {
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  const op = u.cmd.op;
  switch (op) {
    case IOMMU_VFIO_IOAS_GET: {
      const ioas = u.ictx.vfioIoas;
      if (ioas === undefined)
        fail(ENODEV, "no compat IOAS is set (IOMMU_VFIO_IOAS SET, or attach a VFIO group)");
      u.cmd.ioas_id = ioas.id;
      u.respond();
      return 0;
    }
    case IOMMU_VFIO_IOAS_SET:
      u.ictx.vfioIoas = getIoas(u.ictx, u.cmd.ioas_id);
      return 0;
    case IOMMU_VFIO_IOAS_CLEAR:
      u.ictx.vfioIoas = undefined;
      return 0;
    default:
      return fail(EOPNOTSUPP, `unknown op ${op}`);
  }
}

/**
 * IOMMU_IOAS_CHANGE_PROCESS: move the accounting of every pinned page to
 * the caller. Only file-backed areas can move (their pages do not belong
 * to the old mm); all-or-nothing.
 */
export function ioasChangeProcess(u: UcmdOf<"IOMMU_IOAS_CHANGE_PROCESS">): number {
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  const ioases = u.ictx.objects.values().filter((o): o is IommufdIoas => o instanceof IommufdIoas);
  const pagesSet = new Set<IoptPages>();
  for (const ioas of ioases) {
    for (const n of ioas.iopt.areas.all()) {
      if (n.value.pages.source.kind !== "file") {
        fail(
          EINVAL,
          `area [${hex(n.value.iova)}, ${hex(n.value.last)}] is not file-backed; only MAP_FILE areas can change process`,
        );
      }
      pagesSet.add(n.value.pages);
    }
  }
  const mm = taskMm(u.task);
  // need_charge_update(): the pages keep their account mode; only the target changes.
  // NONE pages are never charged (the model still moves their pinned_vm, see docs).
  const needs = (p: IoptPages): boolean =>
    p.accountMode === IOPT_PAGES_ACCOUNT_MM
      ? p.acct !== mm
      : p.accountMode === IOPT_PAGES_ACCOUNT_USER && (p.acct.user !== mm.user || p.acct !== mm);
  // charge_current(): everything at once per mode, so the limit sees the sum.
  const total = [0, 0, 0];
  for (const p of pagesSet) if (needs(p)) total[p.accountMode] += p.npinned;
  const charged: IoptPagesAccountMode[] = [];
  for (const mode of [IOPT_PAGES_ACCOUNT_USER, IOPT_PAGES_ACCOUNT_MM] as const) {
    if (total[mode] === 0) continue;
    if (accountLockedVm(mm, total[mode], mode) !== 0) {
      for (const c of charged) unaccountLockedVm(mm, total[c], c);
      fail(ENOMEM, `charging ${total[mode]} pinned page(s) to the caller would exceed RLIMIT_MEMLOCK`);
    }
    charged.push(mode);
  }
  for (const p of pagesSet) {
    if (needs(p)) unaccountLockedVm(p.acct, p.npinned, p.accountMode);
    else if (p.accountMode === IOPT_PAGES_ACCOUNT_NONE && p.acct !== mm) {
      unaccountLockedVm(p.acct, p.npinned, IOPT_PAGES_ACCOUNT_NONE);
      accountLockedVm(mm, p.npinned, IOPT_PAGES_ACCOUNT_NONE);
    }
    p.rehome(mm, p.accountMode);
  }
  return 0;
}
