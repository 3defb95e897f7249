import { describe, expect, it } from "vitest";
import { UndoLog } from "../../src/mm/undo.js";

describe("UndoLog", () => {
  it("undoes closures and folio records together, newest first", () => {
    const log = new UndoLog();
    const m = new Map<number, number>();
    const seen: string[] = [];
    const put = (h: number) => seen.push(`put ${h} (map has ${[...m.keys()].join(",")})`);
    log.add(() => seen.push("a"));
    m.set(1, 100);
    log.addFolio(m, 1, 100, put);
    log.add(() => seen.push("b"));
    m.set(2, 200);
    log.addFolio(m, 2, 200, put);
    expect(log.size).toBe(4);
    log.rollback();
    expect(seen).toEqual(["put 200 (map has 1)", "b", "put 100 (map has )", "a"]);
    expect(m.size).toBe(0);
    expect(log.size).toBe(0);
    log.rollback();
    expect(seen.length).toBe(4);
  });
});
