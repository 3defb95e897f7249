import { ENOMEM } from "../uapi/errno.js";
import { PAGE_SHIFT, RLIM_INFINITY } from "./mman.js";

/**
 * RLIMIT_MEMLOCK accounting of pinned memory, as iommufd does it
 * (drivers/iommu/iommufd/pages.c: incr_user_locked_vm, update_mm_locked_vm,
 * iopt_pages_update_pinned) on top of mm/util.c __account_locked_vm.
 */

/** The credentials mm consults: the kernel layer's Cred fits this shape and may change it. */
export interface MmCred {
  caps: Set<string>;
  /** RLIMIT_MEMLOCK in bytes; RLIM_INFINITY for none. */
  rlimitMemlock: bigint;
}

/** struct user_struct: one per uid, shared by every process of that user. */
export class UserStruct {
  /** Pages charged to this user (user->locked_vm). */
  lockedVm = 0;
  constructor(readonly uid: number) {}
}

/** The user_structs of a machine, by uid (find_user / alloc_uid). */
export class UserTable {
  private readonly users = new Map<number, UserStruct>();
  get(uid: number): UserStruct {
    let u = this.users.get(uid);
    if (u === undefined) {
      u = new UserStruct(uid);
      this.users.set(uid, u);
    }
    return u;
  }
  all(): UserStruct[] {
    return [...this.users.values()];
  }
}

/** What a pages object charges (enum iopt_pages_account_mode). */
export const IOPT_PAGES_ACCOUNT_NONE = 0;
export const IOPT_PAGES_ACCOUNT_USER = 1;
export const IOPT_PAGES_ACCOUNT_MM = 2;
export type IoptPagesAccountMode = 0 | 1 | 2;

/** The accounting target: an MmStruct has all of these. */
export interface AccountTarget {
  cred: MmCred;
  user: UserStruct;
  /** mm->locked_vm (VmLck), pages. */
  lockedVm: number;
  /** mm->pinned_vm (VmPin), pages. */
  pinnedVm: number;
}

/** RLIMIT_MEMLOCK in pages (Infinity for RLIM_INFINITY). */
export function memlockLimitPages(cred: MmCred): number {
  if (cred.rlimitMemlock >= RLIM_INFINITY) return Number.POSITIVE_INFINITY;
  return Number(cred.rlimitMemlock >> BigInt(PAGE_SHIFT));
}

/**
 * The mode a new pages object gets (iopt_alloc_pages): a process with
 * CAP_IPC_LOCK is not charged at all; anyone else is charged per user.
 * The context-wide RLIMIT_MODE option may then upgrade USER to MM.
 */
export function iommufdDefaultAccountMode(cred: MmCred): IoptPagesAccountMode {
  return cred.caps.has("CAP_IPC_LOCK") ? IOPT_PAGES_ACCOUNT_NONE : IOPT_PAGES_ACCOUNT_USER;
}

/**
 * Charge `npages` to user->locked_vm against the task's RLIMIT_MEMLOCK.
 * There is no capability check here: CAP_IPC_LOCK was already honoured by
 * choosing ACCOUNT_NONE. Returns 0 or -ENOMEM (nothing charged).
 */
export function incrUserLockedVm(t: AccountTarget, npages: number): number {
  const next = t.user.lockedVm + npages;
  if (next > memlockLimitPages(t.cred)) return -ENOMEM;
  t.user.lockedVm = next;
  return 0;
}

export function decrUserLockedVm(t: AccountTarget, npages: number): void {
  if (npages > t.user.lockedVm) throw new Error(`user ${t.user.uid} locked_vm underflow`);
  t.user.lockedVm -= npages;
}

/**
 * account_locked_vm(): charge or uncharge mm->locked_vm. A charge past
 * RLIMIT_MEMLOCK fails with -ENOMEM unless the task has CAP_IPC_LOCK.
 */
export function accountMmLockedVm(t: AccountTarget, npages: number, inc: boolean): number {
  if (npages === 0) return 0;
  if (inc) {
    if (!t.cred.caps.has("CAP_IPC_LOCK") && t.lockedVm + npages > memlockLimitPages(t.cred)) return -ENOMEM;
    t.lockedVm += npages;
  } else {
    if (npages > t.lockedVm) throw new Error("mm locked_vm underflow");
    t.lockedVm -= npages;
  }
  return 0;
}

/**
 * iopt_pages_update_pinned(inc): charge newly pinned pages per the mode and
 * add them to mm->pinned_vm. Returns 0 or -ENOMEM, in which case nothing
 * was charged (the caller unpins the batch).
 */
export function accountLockedVm(t: AccountTarget, npages: number, mode: IoptPagesAccountMode): number {
  let rc = 0;
  if (mode === IOPT_PAGES_ACCOUNT_USER) rc = incrUserLockedVm(t, npages);
  else if (mode === IOPT_PAGES_ACCOUNT_MM) rc = accountMmLockedVm(t, npages, true);
  if (rc !== 0) return rc;
  t.pinnedVm += npages;
  return 0;
}

/** iopt_pages_update_pinned(dec): the matching uncharge; never fails. */
export function unaccountLockedVm(t: AccountTarget, npages: number, mode: IoptPagesAccountMode): void {
  if (mode === IOPT_PAGES_ACCOUNT_USER) decrUserLockedVm(t, npages);
  else if (mode === IOPT_PAGES_ACCOUNT_MM) accountMmLockedVm(t, npages, false);
  if (npages > t.pinnedVm) throw new Error("mm pinned_vm underflow");
  t.pinnedVm -= npages;
}
