import type { FileOps, KFile } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { E2BIG, EBADFD, EINVAL, ENOMEM, ENOTTY, fail } from "../uapi/errno.js";
import { _IO } from "../uapi/ioc.js";
import {
  IOMMU_TEST_CMD,
  IOMMUFD_CMD_BASE,
  IOMMUFD_CMD_TEST,
  IOMMUFD_TYPE,
  type IoctlDef,
  type IommufdCmdName,
  type IommufdRow,
  iommufdRoute,
} from "../uapi/iommufd.js";
import { KERNEL_PROFILES } from "../uapi/profiles.js";
import { offsetOfEnd, type StructDef } from "../uapi/struct.js";
import { IommufdCtx, type IommufdGlobals } from "./ctx.js";
import { getHwInfo } from "./device.js";
import { faultQueueAlloc, veventqAlloc } from "./eventq.js";
import { getPa } from "./get-pa.js";
import { hwptAlloc, hwptGetDirtyBitmap, hwptInvalidate, hwptSetDirtyTracking } from "./hw-pagetable.js";
import { hwQueueAlloc } from "./hw-queue.js";
import {
  ioasAlloc,
  ioasAllowIovas,
  ioasChangeProcess,
  ioasCopy,
  ioasIovaRanges,
  ioasMap,
  ioasMapFile,
  ioasUnmap,
  option,
  vfioIoas,
} from "./ioas.js";
import { iommu_test_cmd, testCmd } from "./selftest.js";
import { Ucmd, type UcmdOf } from "./ucmd.js";
import { vfioCompatIoctl } from "./vfio-compat.js";
import { iommufdMmap, vdeviceAlloc, viommuAlloc } from "./viommu.js";

/** An ioctl handler, typed by the struct of its command. */
export type Handler<D extends StructDef = StructDef> = (u: Ucmd<D>) => number;

/**
 * The handler of every command in the uapi table (src/uapi/iommufd.ts, one
 * row per command: request, struct, last mandatory field, since). Keyed by
 * the command name as a type: a missing command, an unknown name, or a
 * handler written for another command's struct does not compile. With the
 * uapi row it makes the kernel's IOCTL_OP row; the uapi half stays in uapi
 * because user-space tools (scenario, trace printer) read it too.
 */
const IOCTL_OPS: { [R in IommufdRow as R["name"]]: Handler<R["struct"]> } = {
  IOMMU_DESTROY: destroy,
  IOMMU_IOAS_ALLOC: ioasAlloc,
  IOMMU_IOAS_ALLOW_IOVAS: ioasAllowIovas,
  IOMMU_IOAS_COPY: ioasCopy,
  IOMMU_IOAS_IOVA_RANGES: ioasIovaRanges,
  IOMMU_IOAS_MAP: ioasMap,
  IOMMU_IOAS_UNMAP: ioasUnmap,
  IOMMU_OPTION: option,
  IOMMU_VFIO_IOAS: vfioIoas,
  IOMMU_HWPT_ALLOC: hwptAlloc,
  IOMMU_GET_HW_INFO: getHwInfo,
  IOMMU_HWPT_SET_DIRTY_TRACKING: hwptSetDirtyTracking,
  IOMMU_HWPT_GET_DIRTY_BITMAP: hwptGetDirtyBitmap,
  IOMMU_HWPT_INVALIDATE: hwptInvalidate,
  IOMMU_FAULT_QUEUE_ALLOC: faultQueueAlloc,
  IOMMU_IOAS_MAP_FILE: ioasMapFile,
  IOMMU_VIOMMU_ALLOC: viommuAlloc,
  IOMMU_VDEVICE_ALLOC: vdeviceAlloc,
  IOMMU_IOAS_CHANGE_PROCESS: ioasChangeProcess,
  IOMMU_VEVENTQ_ALLOC: veventqAlloc,
  IOMMU_HW_QUEUE_ALLOC: hwQueueAlloc,
  IOMMU_IOAS_NOIOMMU_GET_PA: getPa,
};

/**
 * One row of the kernel's ioctl table (IOCTL_OP in main.c): the command's
 * uapi row (request, struct for this profile, minimum size) and its handler.
 */
export interface IoctlRow {
  def: IoctlDef;
  /** The handler, given a ucmd over the kernel's copy of the struct. */
  run(ictx: IommufdCtx, task: Task, file: KFile, arg: bigint, usize: number, kbuf: Uint8Array): number;
}

function makeRow<D extends StructDef>(def: IoctlDef<D>, handler: Handler<D>): IoctlRow {
  return {
    def,
    run: (ictx, task, file, arg, usize, kbuf) =>
      handler(new Ucmd(ictx, task, file, arg, usize, def.struct, kbuf)),
  };
}

const rows = new WeakMap<IoctlDef, IoctlRow>();

/** The kernel's row for a command the route found; built once per profile's command. */
function ioctlRow(def: IoctlDef): IoctlRow {
  let row = rows.get(def);
  if (row === undefined) {
    // def.struct is the struct of def.name (the uapi row, possibly a profile's
    // variant of it); IOCTL_OPS's type ties each handler to that struct.
    row = makeRow(def, IOCTL_OPS[def.name as IommufdCmdName] as Handler);
    rows.set(def, row);
  }
  return row;
}

/** IOMMU_TEST_CMD's row (selftest kernels only; not a uapi command). */
const TEST_ROW: IoctlRow = makeRow(
  {
    name: "IOMMU_TEST_CMD",
    nr: IOMMUFD_CMD_TEST,
    request: IOMMU_TEST_CMD,
    struct: iommu_test_cmd,
    lastField: "last",
    minSize: offsetOfEnd(iommu_test_cmd, "last"),
    since: "6.2",
    profiles: new Set(KERNEL_PROFILES),
  },
  testCmd,
);

/** The ioctl table of a kernel, by nr: its profile's commands and, on selftest kernels, IOMMU_TEST_CMD. */
export function ioctlTable(k: KernelCtx): Map<number, IoctlRow> {
  const t = new Map<number, IoctlRow>();
  for (let nr = IOMMUFD_CMD_BASE; nr <= IOMMUFD_CMD_TEST; nr++) {
    const route = iommufdRoute(
      _IO(IOMMUFD_TYPE, nr),
      k.profile,
      k.kconfig.IOMMUFD_TEST,
      k.kconfig.IOMMUFD_NOIOMMU,
    );
    if (route.kind === "ioctl") t.set(nr, ioctlRow(route.def));
    else if (route.kind === "test") t.set(nr, TEST_ROW);
  }
  return t;
}

/** IOMMU_DESTROY: any object type; EBUSY while referenced. */
function destroy(u: UcmdOf<"IOMMU_DESTROY">): number {
  u.ictx.objects.remove(u.cmd.id);
  return 0;
}

/**
 * copy_struct_from_user() over a user buffer that may be far larger than
 * the kernel struct: the tail is checked for zeros page by page rather
 * than copied whole.
 */
function copyIn(task: Task, ptr: bigint, usize: number, ksize: number, what: string): Uint8Array {
  const kbuf = new Uint8Array(ksize);
  kbuf.set(task.copyFromUser(ptr, Math.min(usize, ksize)));
  for (let off = ksize; off < usize; ) {
    const n = Math.min(4096, usize - off);
    const b = task.copyFromUser(ptr + BigInt(off), n);
    for (let i = 0; i < n; i++) {
      if (b[i] !== 0) {
        fail(
          E2BIG,
          `${what}: byte ${off + i} past the kernel's ${ksize}-byte struct is non-zero (size ${usize})`,
        );
      }
    }
    off += n;
  }
  return kbuf;
}

/** iommufd_fops_ioctl(): route, size rules, handler (uapi.md §2). */
function iommufdIoctl(file: KFile, task: Task, cmd: number, arg: bigint): number {
  const ictx = file.priv as IommufdCtx;
  ictx.file = file;
  const k = ictx.k;
  const route = iommufdRoute(cmd, k.profile, k.kconfig.IOMMUFD_TEST, k.kconfig.IOMMUFD_NOIOMMU);
  if (route.kind === "compat") return vfioCompatIoctl(ictx, task, cmd, arg);
  const usize = task.getUserU32(arg);
  // (the two refusals a program probes for: without a throw, see Task.refuse)
  if (route.kind === "enotty") {
    return task.refuse(
      ENOTTY,
      `ioctl 0x${(cmd >>> 0).toString(16)} is not an iommufd command of this kernel (${k.profile})`,
    );
  }
  const row = route.kind === "test" ? TEST_ROW : ioctlRow(route.def);
  const def = row.def;
  if (usize < def.minSize) {
    return task.refuse(
      EINVAL,
      `${def.struct.name}: size ${usize} is below the minimum ${def.minSize} (offsetofend of the last mandatory field)`,
    );
  }
  const kbuf = copyIn(task, arg, usize, def.struct.size, def.struct.name);
  return row.run(ictx, task, file, arg, usize, kbuf);
}

/**
 * iommufd_fops_release(): destroy every object whose only reference is the
 * table, leaves first, until none remain. Unmaps every area and drops every
 * pin. In-kernel users (VFIO devices, accesses) hold the file, so by now
 * they are gone.
 */
export function releaseCtx(ictx: IommufdCtx): void {
  if (ictx.released) return;
  ictx.released = true;
  for (;;) {
    // xa_for_each() walks the table in ID order (a reused low ID comes first).
    const objs = ictx.objects.values().sort((a, b) => a.id - b.id);
    if (objs.length === 0) break;
    let progress = false;
    for (const o of objs) {
      if (ictx.objects.tryGet(o.id) !== o && o.finalized) continue;
      if (o.users === 1) {
        ictx.objects.removeInternal(o);
        progress = true;
      }
    }
    if (!progress) {
      // A reference leaked: the kernel WARNs. Keep the model's books balanced anyway.
      ictx.k.klog.lines.push(`WARNING: iommufd release with ${objs.length} object(s) still referenced`);
      ictx.objects.removeLeaked(ictx.objects.values());
    }
  }
  ictx.globals.contexts.delete(ictx);
}

export function iommufdFops(): FileOps {
  return {
    kind: "iommufd",
    ioctl: iommufdIoctl,
    mmap: (file, _task, len, off, prot) => iommufdMmap(file.priv as IommufdCtx, file, len, off, prot),
    release: (file) => releaseCtx(file.priv as IommufdCtx),
  };
}

const FOPS = iommufdFops();

/** A new context with its KFile (open of /dev/iommu, or of /dev/vfio/vfio for the compat container). */
export function openIommufd(
  globals: IommufdGlobals,
  viaVfioContainer: boolean,
): { ops: FileOps; priv: IommufdCtx } {
  if (globals.k.faults.hit("iommufd_fops_open")) fail(ENOMEM, "cannot allocate the iommufd_ctx");
  return { ops: FOPS, priv: new IommufdCtx(globals, viaVfioContainer) };
}

/** iommufd_ctx_from_file(): EBADFD when the file is not an iommufd. */
export function iommufdCtxFromFile(file: KFile): IommufdCtx {
  if (file.ops !== FOPS || !(file.priv instanceof IommufdCtx)) {
    fail(EBADFD, `${file.kind} file ${file.path} is not an iommufd`);
  }
  file.priv.file = file;
  return file.priv;
}
