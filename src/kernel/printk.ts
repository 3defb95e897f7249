/** Kernel taint flags the model can raise (include/linux/panic.h names). */
export type TaintFlag = "TAINT_USER" | "TAINT_WARN" | "TAINT_FIRMWARE_WORKAROUND";

/** dmesg and taint: what the kernel said and what it marked itself with. */
export class KernelLog {
  readonly lines: string[] = [];
  private readonly taints = new Set<TaintFlag>();

  printk(level: "info" | "warn" | "err", msg: string): void {
    this.lines.push(`${level}: ${msg}`);
  }

  addTaint(flag: TaintFlag, why: string): void {
    this.taints.add(flag);
    this.printk("warn", `${why}; tainting kernel with ${flag}`);
  }

  taint(): TaintFlag[] {
    return [...this.taints].sort();
  }
}
