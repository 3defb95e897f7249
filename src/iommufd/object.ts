import type { FaultInject } from "../hw/fault-inject.js";
import { EBUSY, ENOENT, ENOMEM, ENOSPC, fail } from "../uapi/errno.js";
import type { IommufdAccess } from "./access.js";
import type { IommufdDevice } from "./device.js";
import type { IommufdFault, IommufdVeventq } from "./eventq.js";
import type { HwptNested, HwptPaging } from "./hw-pagetable.js";
import type { IommufdHwQueue } from "./hw-queue.js";
import type { IommufdIoas } from "./ioas.js";
import type { SelftestDev } from "./selftest.js";
import type { IommufdVdevice, IommufdViommu } from "./viommu.js";

/**
 * enum iommufd_object_type (include/linux/iommufd.h); userspace only sees IDs.
 * SELFTEST is the mock "stdev" wrapper of IOMMU_TEST_OP_MOCK_DOMAIN.
 */
export type ObjType =
  | "DEVICE"
  | "HWPT_PAGING"
  | "HWPT_NESTED"
  | "IOAS"
  | "ACCESS"
  | "FAULT"
  | "VIOMMU"
  | "VDEVICE"
  | "VEVENTQ"
  | "HW_QUEUE"
  | "SELFTEST";

/** Every object class, told apart by its `type` (a discriminated union: `switch (o.type)` narrows). */
export type AnyObject =
  | IommufdDevice
  | HwptPaging
  | HwptNested
  | IommufdIoas
  | IommufdAccess
  | IommufdFault
  | IommufdViommu
  | IommufdVdevice
  | IommufdVeventq
  | IommufdHwQueue
  | SelftestDev;

/** The class of objects of type T: ObjOfType<"IOAS"> is IommufdIoas. */
export type ObjOfType<T extends ObjType> = Extract<AnyObject, { readonly type: T }>;

// Each ObjType has its class, and each class one ObjType.
const everyTypeHasAClass: [ObjType] extends [AnyObject["type"]] ? true : never = true;
void everyTypeHasAClass;

/** The object table's own hold on an object ends (removal, abort): module-private, set below. */
let dropTableRef: (o: IommufdObject, leaked?: boolean) => void;

/**
 * The header every object shares (struct iommufd_object).
 *
 * Ownership: `users` starts at 1, the reference of the object table. Every
 * long-term reference another object or a kernel user (VFIO) holds adds one
 * with refGet() and gives it back with refPut() (see iommufd-semantics.md
 * §1.3): HWPT_PAGING → IOAS, an attached device → its HWPT and itself, a
 * bound device → +1 for the binding driver, an attached access → its IOAS.
 * Only the table drops its own reference: DESTROY removes an object while
 * that is the only one (EBUSY otherwise); the kernel removes internally owned
 * objects (auto domains, the binding's device) with removeInternal().
 * Lookups take no short-term reference: an ioctl runs to completion before
 * another one starts, so nothing can free an object under a lookup.
 *
 * Each class says what it holds in `destroy` (iommufd_object_ops.destroy) and,
 * when a half-built object needs other undoing, in `abort` (ops.abort; by
 * default the same as destroy). ObjectTable.abortAndDestroy() is the one way
 * to undo an object whose creation failed.
 */
export abstract class IommufdObject {
  id = 0;
  #users = 1;
  /** Torn down by a release that found references leaked: holders' late puts are expected. */
  #leaked = false;
  /** Published in the table (lookups see it). */
  finalized = false;
  abstract readonly type: ObjType;
  /** Drop what this object holds on others; runs once, after removal from the table. */
  abstract destroy(): void;

  /** Undo a half-built object (iommufd_object_ops.abort); by default what destroy does. */
  abort(): void {
    this.destroy();
  }

  /** refcount_read(&obj->users): 1 for the table, one per holder; 0 once removed. */
  get users(): number {
    return this.#users;
  }

  /** refcount_inc(&obj->users) (n times): a long-term reference is taken. */
  refGet(n = 1): void {
    if (this.#users === 0) throw new Error(`${this.describe()}: reference taken after it was destroyed`);
    this.#users += n;
  }

  /**
   * refcount_dec(&obj->users) (n times): a reference is given back. Never
   * the table's own: a put that would drop it is a model bug.
   */
  refPut(n = 1): void {
    if (this.#leaked) return;
    if (this.#users - n < 1) {
      throw new Error(
        `${this.describe()}: reference put with only the object table's left (users ${this.#users})`,
      );
    }
    this.#users -= n;
  }

  /** A short description for reasons and debug dumps. */
  describe(): string {
    return `${this.type.toLowerCase()} ${this.id}`;
  }

  static {
    dropTableRef = (o, leaked = false) => {
      o.#users = 0;
      o.#leaked = leaked;
    };
  }
}

/** xa_limit_31b: IDs 1..2^31-1 (XA_FLAGS_ALLOC1 keeps 0 invalid). */
export const ID_MAX = 0x7fffffff;

/**
 * The per-context xarray of objects. xa_alloc hands out the lowest free
 * index (not cyclic), so a destroyed ID is reused by the next allocation.
 */
export class ObjectTable {
  private readonly slots = new Map<number, IommufdObject>();
  /** IDs below `next` that are free, as a binary min-heap. */
  private readonly freeHeap: number[] = [];
  private next = 1;

  constructor(private readonly faults?: FaultInject) {}

  get size(): number {
    return this.slots.size;
  }

  /** Reserve an ID for a new object (xa_alloc of a zero entry); not yet visible. */
  alloc<O extends IommufdObject>(obj: O): O {
    // iommufd_object_alloc: the kzalloc of the object and xa_alloc of its ID.
    if (this.faults?.hit("iommufd_object_alloc")) fail(ENOMEM, `cannot allocate the ${obj.type} object`);
    let id: number;
    if (this.freeHeap.length > 0) id = this.popFree();
    else {
      if (this.next > ID_MAX) fail(ENOSPC, "iommufd object IDs exhausted (xa_limit_31b)");
      id = this.next++;
    }
    obj.id = id;
    this.slots.set(id, obj);
    return obj;
  }

  /** iommufd_object_finalize: the object becomes visible to lookups. */
  finalize(obj: IommufdObject): void {
    obj.finalized = true;
  }

  /** iommufd_object_abort: release a reserved ID of an object that failed to be created. */
  abort(obj: IommufdObject): void {
    if (this.slots.get(obj.id) !== obj) return;
    this.slots.delete(obj.id);
    this.release(obj.id);
    obj.finalized = false;
  }

  /**
   * iommufd_get_object(): the published object with this ID, of type `type`
   * (one of several, or any when omitted), as its class. A missing ID and
   * an object of another type are both ENOENT, as in the kernel; `what`
   * names the argument in the reason.
   */
  get<T extends ObjType = ObjType>(id: number, type?: T | readonly T[], what = "object"): ObjOfType<T> {
    const o = this.tryGet(id);
    if (o === undefined) fail(ENOENT, `${what} id ${id} does not exist`);
    if (
      type !== undefined &&
      (typeof type === "string" ? o.type !== type : !(type as readonly string[]).includes(o.type))
    ) {
      fail(ENOENT, `id ${id} is a ${o.type} object, not ${typeof type === "string" ? type : type.join("/")}`);
    }
    // o.type was just checked against T, and each class has its own type
    return o as ObjOfType<T>;
  }

  /** The published object with this ID, if any. */
  tryGet(id: number): AnyObject | undefined {
    const o = this.slots.get(id);
    // only the iommufd object classes (AnyObject) are ever stored
    return o?.finalized ? (o as AnyObject) : undefined;
  }

  /**
   * IOMMU_DESTROY / iommufd_object_remove: only when the table holds the
   * last reference; the object's destroy then drops what it holds.
   */
  remove(id: number, type?: ObjType): AnyObject {
    const o = this.get(id, type);
    if (o.users !== 1) {
      fail(EBUSY, `${o.describe()} is still in use (${o.users - 1} reference(s) besides the object table)`);
    }
    this.slots.delete(id);
    this.release(id);
    dropTableRef(o);
    o.destroy();
    return o;
  }

  /** Remove an object that the kernel itself owns the last reference to (auto domains, stdev). */
  removeInternal(o: IommufdObject): void {
    if (this.slots.get(o.id) !== o) return;
    this.slots.delete(o.id);
    this.release(o.id);
    dropTableRef(o);
    o.destroy();
  }

  /**
   * iommufd_object_abort_and_destroy(): creation failed. The reserved ID (if
   * the object got one) is released and the class's abort undoes what the
   * half-built object holds. The object was never published.
   */
  abortAndDestroy(o: IommufdObject): void {
    this.abort(o);
    dropTableRef(o);
    o.abort();
  }

  /**
   * iommufd_fops_release() when references leaked (the kernel WARNs): the
   * table takes every object back regardless, so the model's books balance.
   */
  removeLeaked(objs: IommufdObject[]): void {
    for (const o of objs) {
      if (this.slots.get(o.id) !== o) continue;
      this.slots.delete(o.id);
      this.release(o.id);
      dropTableRef(o, true);
    }
    for (const o of objs) o.destroy();
  }

  /** Every object, published or only reserved, in ID-allocation order. */
  values(): AnyObject[] {
    // only the iommufd object classes (AnyObject) are ever stored
    return [...this.slots.values()] as AnyObject[];
  }

  private release(id: number): void {
    this.pushFree(id);
  }

  private pushFree(id: number): void {
    const a = this.freeHeap;
    a.push(id);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= a[i]) break;
      [a[p], a[i]] = [a[i], a[p]];
      i = p;
    }
  }

  private popFree(): number {
    const a = this.freeHeap;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private siftDown(i: number): void {
    const a = this.freeHeap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && a[l] < a[m]) m = l;
      if (r < a.length && a[r] < a[m]) m = r;
      if (m === i) return;
      [a[m], a[i]] = [a[i], a[m]];
      i = m;
    }
  }
}
