/**
 * A rollback log: steps taken by an operation that must be all-or-nothing
 * (a pin, a fault-in of a range). On failure the steps are undone newest
 * first, so the state is exactly as before the call.
 */
export class UndoLog {
  private readonly steps: (() => void)[] = [];

  add(step: () => void): void {
    this.steps.push(step);
  }

  rollback(): void {
    for (let i = this.steps.length - 1; i >= 0; i--) this.steps[i]();
    this.steps.length = 0;
  }

  get size(): number {
    return this.steps.length;
  }
}
