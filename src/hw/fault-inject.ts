/**
 * fail_nth, as the kernel's fault-injection framework offers it to the
 * iommufd_fail_nth selftest: once armed with n, the nth hit of any fail
 * point in the model fails (an allocation returns ENOMEM, a pin fails...).
 * Every allocation and pin point calls `hit(site)`; it costs one branch when
 * disarmed.
 */
export class FaultInject {
  private nth = 0;
  private count = 0;
  /** Sites that were hit since arming, in order (for reports). */
  readonly hits: string[] = [];
  /** The site that fired, once it has. */
  fired: string | undefined;

  /** Arm: the nth hit from now fails (n >= 1). n = 0 disarms. */
  arm(n: number): void {
    this.nth = n;
    this.count = 0;
    this.fired = undefined;
    this.hits.length = 0;
  }

  disarm(): void {
    this.nth = 0;
  }

  /**
   * What /proc/<pid>/task/<tid>/fail-nth reads: the hits left before the
   * failure, 0 once it fired or when disarmed.
   */
  remaining(): number {
    return this.nth === 0 || this.fired !== undefined ? 0 : this.nth - this.count;
  }

  get armed(): boolean {
    return this.nth > 0;
  }

  /** True when this hit must fail. */
  hit(site: string): boolean {
    if (this.nth === 0) return false;
    this.hits.push(site);
    this.count++;
    if (this.count === this.nth) {
      this.fired = site;
      return true;
    }
    return false;
  }
}
