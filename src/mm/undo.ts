/**
 * A rollback log: steps taken by an operation that must be all-or-nothing
 * (a pin, a fault-in of a range). On failure the steps are undone newest
 * first, so the state is exactly as before the call.
 *
 * The commonest step, "a private folio was installed at key of a private
 * page map", is recorded as numbers rather than a closure (a 64 GiB hugetlb
 * pin installs 32768 of them).
 */
export class UndoLog {
  /** Each step: a closure, or null for the newest not yet undone folio record. */
  private readonly steps: ((() => void) | null)[] = [];
  private readonly fMap: Map<number, number>[] = [];
  private readonly fKey: number[] = [];
  private readonly fHead: number[] = [];
  private readonly fPut: ((head: number) => void)[] = [];

  add(step: () => void): void {
    this.steps.push(step);
  }

  /** Undo = delete `key` from `map`, then `put(head)`. */
  addFolio(map: Map<number, number>, key: number, head: number, put: (head: number) => void): void {
    this.steps.push(null);
    this.fMap.push(map);
    this.fKey.push(key);
    this.fHead.push(head);
    this.fPut.push(put);
  }

  rollback(): void {
    for (let i = this.steps.length - 1; i >= 0; i--) {
      const s = this.steps[i];
      if (s !== null) {
        s();
        continue;
      }
      const head = this.fHead.pop()!;
      this.fMap.pop()!.delete(this.fKey.pop()!);
      this.fPut.pop()!(head);
    }
    this.steps.length = 0;
  }

  get size(): number {
    return this.steps.length;
  }
}
