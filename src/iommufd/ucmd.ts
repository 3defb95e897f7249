import type { KFile } from "../kernel/file.js";
import type { Task } from "../kernel/task.js";
import { EFAULT, fail } from "../uapi/errno.js";
import type { IommufdCmdName, IommufdCmdStruct } from "../uapi/iommufd.js";
import {
  type FieldName,
  offsetOf,
  offsetOfEnd,
  type StructDef,
  type StructView,
  structView,
} from "../uapi/struct.js";
import type { IommufdCtx } from "./ctx.js";
import type { IommufdObject } from "./object.js";

/**
 * struct iommufd_ucmd: one ioctl in flight. `kbuf` is the kernel's copy of
 * the struct (sizeof the kernel struct, zero-extended); handlers read and
 * write it through `cmd`, typed by the command's struct table (a misspelt
 * field does not compile), and call `respond` to copy it back.
 */
export class Ucmd<D extends StructDef = StructDef> {
  /** ucmd->cmd: the command's struct, field by field. */
  readonly cmd: StructView<D>;

  constructor(
    readonly ictx: IommufdCtx,
    readonly task: Task,
    readonly file: KFile,
    readonly ubuf: bigint,
    readonly userSize: number,
    readonly def: D,
    readonly kbuf: Uint8Array,
  ) {
    this.cmd = structView(def, kbuf);
  }

  /** iommufd_ucmd_respond(): copy back min(user size, sizeof) bytes of the whole struct. */
  respond(): void {
    const n = Math.min(this.userSize, this.kbuf.length);
    this.task.copyToUser(this.ubuf, this.kbuf.subarray(0, n));
  }

  /** Copy back just this field of the struct (IOMMU_OPTION writes only val64). */
  respondField(name: FieldName<D>): void {
    const offset = offsetOf(this.def, name);
    this.task.copyToUser(this.ubuf + BigInt(offset), this.kbuf.subarray(offset, offsetOfEnd(this.def, name)));
  }

  /**
   * Create an object the way the kernel does for ucmd allocations: reserve
   * the ID, build, respond, and publish only when everything succeeded;
   * otherwise the ID is released and the half-built object destroyed.
   * `unwind` first drops what the build handed out that holds the object
   * (an event queue's file), as the kernel's error labels do before
   * iommufd_object_abort_and_destroy().
   */
  createObject<O extends IommufdObject>(obj: O, build: (o: O) => void, unwind?: () => void): O {
    this.ictx.objects.alloc(obj);
    try {
      build(obj);
      if (this.ictx.k.faults.hit("iommufd_object_finalize")) fail(EFAULT, "injected failure before finalize");
    } catch (e) {
      unwind?.();
      this.ictx.objects.abortAndDestroy(obj);
      throw e;
    }
    this.ictx.objects.finalize(obj);
    return obj;
  }
}

/** The ucmd of one command, typed by its struct: `UcmdOf<"IOMMU_IOAS_MAP">`. */
export type UcmdOf<N extends IommufdCmdName> = Ucmd<IommufdCmdStruct<N>>;
