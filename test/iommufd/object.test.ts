import { describe, expect, expectTypeOf, it } from "vitest";
import type { HwptNested, HwptPaging } from "../../src/iommufd/hw-pagetable.js";
import type { IommufdIoas } from "../../src/iommufd/ioas.js";
import { type AnyObject, IommufdObject, ObjectTable } from "../../src/iommufd/object.js";
import { EBUSY, ENOENT, KernelError } from "../../src/uapi/errno.js";

/** An object that records what was undone, and how. */
class Probe extends IommufdObject {
  readonly type = "IOAS" as const;
  readonly calls: string[] = [];
  destroy(): void {
    this.calls.push("destroy");
  }
}

class HwptProbe extends IommufdObject {
  readonly type = "HWPT_PAGING" as const;
  destroy(): void {}
}

class ProbeWithAbort extends Probe {
  override abort(): void {
    this.calls.push("abort");
  }
}

function published<O extends IommufdObject>(t: ObjectTable, o: O): O {
  t.alloc(o);
  t.finalize(o);
  return o;
}

const errnoOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 0;
};

describe("iommufd object lifetimes (struct iommufd_object)", () => {
  it("users: 1 for the table, +1 per holder; DESTROY is EBUSY until only the table's is left", () => {
    const t = new ObjectTable();
    const o = published(t, new Probe());
    expect(o.users).toBe(1);
    o.refGet();
    o.refGet(2);
    expect(o.users).toBe(4);
    expect(errnoOf(() => t.remove(o.id))).toBe(EBUSY);
    expect(o.calls).toEqual([]);
    o.refPut(3);
    t.remove(o.id);
    expect(o.users).toBe(0);
    expect(o.calls).toEqual(["destroy"]);
    expect(t.size).toBe(0);
  });

  it("a put that would drop the table's own reference, or a get after destroy, is a model bug", () => {
    const t = new ObjectTable();
    const o = published(t, new Probe());
    expect(() => o.refPut()).toThrow(/only the object table's left/);
    expect(o.users).toBe(1);
    t.remove(o.id);
    expect(() => o.refGet()).toThrow(/after it was destroyed/);
  });

  it("abortAndDestroy releases the reserved ID and runs the class's abort (destroy by default)", () => {
    const t = new ObjectTable();
    const a = t.alloc(new Probe());
    const b = t.alloc(new ProbeWithAbort());
    expect([a.id, b.id]).toEqual([1, 2]);
    t.abortAndDestroy(a);
    t.abortAndDestroy(b);
    expect(a.calls).toEqual(["destroy"]);
    expect(b.calls).toEqual(["abort"]);
    expect([a.users, b.users]).toEqual([0, 0]);
    expect(t.size).toBe(0);
    // both IDs are free again, lowest first
    expect(t.alloc(new Probe()).id).toBe(1);
    expect(t.alloc(new Probe()).id).toBe(2);
  });

  it("abortAndDestroy of an object that never got an ID only undoes it", () => {
    const t = new ObjectTable();
    const kept = published(t, new Probe());
    const o = new Probe();
    t.abortAndDestroy(o);
    expect(o.calls).toEqual(["destroy"]);
    expect(t.size).toBe(1);
    expect(t.tryGet(kept.id)).toBe(kept);
  });

  it("an unpublished object is invisible to lookups (ENOENT)", () => {
    const t = new ObjectTable();
    const o = t.alloc(new Probe());
    expect(errnoOf(() => t.get(o.id, "IOAS"))).toBe(ENOENT);
    t.finalize(o);
    expect(t.get(o.id, "IOAS")).toBe(o);
  });

  it("get(id, type) returns that class; a missing id or another type is ENOENT with a reason", () => {
    const t = new ObjectTable();
    const ioas = published(t, new Probe());
    const hwpt = published(t, new HwptProbe());
    // the types: the class of the type asked for, a union for several, every class for none
    expectTypeOf(t.get(ioas.id, "IOAS")).toEqualTypeOf<IommufdIoas>();
    expectTypeOf(t.get(hwpt.id, ["HWPT_PAGING", "HWPT_NESTED"])).toEqualTypeOf<HwptPaging | HwptNested>();
    expectTypeOf(t.get(hwpt.id)).toEqualTypeOf<AnyObject>();
    expect(t.get(ioas.id, "IOAS")).toBe(ioas);
    expect(t.get(hwpt.id, ["HWPT_PAGING", "HWPT_NESTED"])).toBe(hwpt);
    const reason = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        if (e instanceof KernelError) return [e.errno, e.reason];
        throw e;
      }
      return [0, ""];
    };
    expect(reason(() => t.get(hwpt.id, "IOAS", "IOAS"))).toEqual([
      ENOENT,
      expect.stringContaining(`id ${hwpt.id} is a HWPT_PAGING object, not IOAS`),
    ]);
    expect(reason(() => t.get(9, "IOAS", "IOAS"))).toEqual([
      ENOENT,
      expect.stringContaining("IOAS id 9 does not exist"),
    ]);
    // a failed lookup takes nothing
    expect([ioas.users, hwpt.users]).toEqual([1, 1]);
  });
});
