import type { FileOps, KFile } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { E2BIG, EBADFD, EINVAL, ENOMEM, ENOTTY, fail } from "../uapi/errno.js";
import { IOMMUFD_CMD_TEST, type IoctlDef, iommufdIoctls, iommufdRoute } from "../uapi/iommufd.js";
import type { StructDef } from "../uapi/struct.js";
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
import { IOMMU_TEST_CMD_MIN_SIZE, iommu_test_cmd, testCmd } from "./selftest.js";
import { Ucmd } from "./ucmd.js";
import { vfioCompatIoctl } from "./vfio-compat.js";
import { iommufdMmap, vdeviceAlloc, viommuAlloc } from "./viommu.js";

export type Handler = (u: Ucmd) => number;

/**
 * One row of the ioctl table (IOCTL_OP in main.c): the command, its struct,
 * the minimum size (offsetofend of the last mandatory field) and the
 * handler. The uapi layer says which commands a profile has; this table
 * says who serves them.
 */
export interface IoctlRow {
  nr: number;
  request: number;
  name: string;
  def: StructDef;
  minSize: number;
  handler: Handler;
}

const HANDLERS: Record<string, Handler> = {
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

const tables = new Map<string, Map<number, IoctlRow>>();
/** Slots in each table (ARRAY_SIZE of the kernel's iommufd_ioctl_ops): nr - 0x80 past it goes to compat. */
const tableLens = new WeakMap<Map<number, IoctlRow>, number>();

/** The ioctl table of a kernel: rows by nr, for its profile and Kconfig. */
export function ioctlTable(k: KernelCtx): Map<number, IoctlRow> {
  const key = `${k.profile}/${k.kconfig.IOMMUFD_TEST}/${k.kconfig.IOMMUFD_NOIOMMU}`;
  let t = tables.get(key);
  if (t !== undefined) return t;
  t = new Map();
  for (const d of iommufdIoctls(k.profile) as IoctlDef[]) {
    if (d.name === "IOMMU_IOAS_NOIOMMU_GET_PA" && !k.kconfig.IOMMUFD_NOIOMMU) continue;
    const handler = HANDLERS[d.name];
    if (handler === undefined) throw new Error(`iommufd: no handler for ${d.name}`);
    t.set(d.nr, { nr: d.nr, request: d.request, name: d.name, def: d.struct, minSize: d.minSize, handler });
  }
  if (k.kconfig.IOMMUFD_TEST) {
    t.set(IOMMUFD_CMD_TEST, {
      nr: IOMMUFD_CMD_TEST,
      request: 0x3b00 | IOMMUFD_CMD_TEST,
      name: "IOMMU_TEST_CMD",
      def: iommu_test_cmd,
      minSize: IOMMU_TEST_CMD_MIN_SIZE,
      handler: testCmd,
    });
  }
  tables.set(key, t);
  tableLens.set(t, Math.max(...t.keys()) - 0x80 + 1);
  return t;
}

/** IOMMU_DESTROY: any object type; EBUSY while referenced. */
function destroy(u: Ucmd): number {
  u.ictx.objects.remove(u.num("id"));
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
  ictx.ioctls ??= ioctlTable(k);
  const table = ictx.ioctls;
  const route = iommufdRoute(cmd, k.profile, k.kconfig.IOMMUFD_TEST);
  const nr = cmd & 0xff;
  const tableLen = tableLens.get(table)!;
  if (route.kind === "compat" || nr - 0x80 >= tableLen) return vfioCompatIoctl(ictx, task, cmd, arg);
  const head = task.copyFromUser(arg, 4);
  // (not a DataView: making one over a small array costs more than the rest of a failing ioctl)
  const usize = (head[0] | (head[1] << 8) | (head[2] << 16) | (head[3] << 24)) >>> 0;
  const row = table.get(nr);
  if (route.kind === "enotty" || row === undefined || row.request !== cmd >>> 0) {
    fail(
      ENOTTY,
      `ioctl 0x${(cmd >>> 0).toString(16)} is not an iommufd command of this kernel (${k.profile})`,
    );
  }
  if (usize < row.minSize) {
    fail(
      EINVAL,
      `${row.def.name}: size ${usize} is below the minimum ${row.minSize} (offsetofend of the last mandatory field)`,
    );
  }
  const kbuf = copyIn(task, arg, usize, row.def.size, row.def.name);
  return row.handler(new Ucmd(ictx, task, file, arg, usize, row.def, kbuf));
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
