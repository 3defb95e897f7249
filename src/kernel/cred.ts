/** Capabilities the model checks, by their kernel names. */
export const CAPABILITIES = [
  "CAP_SYS_RAWIO",
  "CAP_IPC_LOCK",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_ADMIN",
  "CAP_DAC_OVERRIDE",
] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** RLIM_INFINITY as the kernel spells it (all ones). */
export const RLIM_INFINITY = (1n << 64n) - 1n;

/** A process's credentials and the limits the model uses. */
export interface Cred {
  uid: number;
  caps: Set<string>;
  /** RLIMIT_MEMLOCK in bytes (RLIM_INFINITY for none). */
  rlimitMemlock: bigint;
}

export function capable(cred: Cred, cap: Capability): boolean {
  return cred.caps.has(cap);
}
