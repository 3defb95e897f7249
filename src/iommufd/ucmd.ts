import type { KFile } from "../kernel/file.js";
import type { Task } from "../kernel/task.js";
import { EFAULT, fail } from "../uapi/errno.js";
import { readField, type StructDef, writeField } from "../uapi/struct.js";
import type { IommufdCtx } from "./ctx.js";
import type { IommufdObject } from "./object.js";

/**
 * struct iommufd_ucmd: one ioctl in flight. `kbuf` is the kernel's copy of
 * the struct (sizeof the kernel struct, zero-extended); handlers read and
 * write fields there and call `respond` to copy it back.
 */
export class Ucmd {
  constructor(
    readonly ictx: IommufdCtx,
    readonly task: Task,
    readonly file: KFile,
    readonly ubuf: bigint,
    readonly userSize: number,
    readonly def: StructDef,
    readonly kbuf: Uint8Array,
  ) {}

  /** A field as a bigint. */
  big(name: string): bigint {
    return readField(this.def, this.kbuf, name);
  }

  /** A field as a number (for 32-bit and smaller fields). */
  num(name: string): number {
    return Number(readField(this.def, this.kbuf, name));
  }

  set(name: string, v: bigint | number): void {
    writeField(this.def, this.kbuf, name, v);
  }

  /** iommufd_ucmd_respond(): copy back min(user size, sizeof) bytes of the whole struct. */
  respond(): void {
    const n = Math.min(this.userSize, this.kbuf.length);
    this.task.copyToUser(this.ubuf, this.kbuf.subarray(0, n));
  }

  /** Copy back just these bytes of the struct (IOMMU_OPTION writes only val64). */
  respondRange(offset: number, size: number): void {
    this.task.copyToUser(this.ubuf + BigInt(offset), this.kbuf.subarray(offset, offset + size));
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
