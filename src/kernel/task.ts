import type { MmStruct } from "../mm/index.js";
import { EBADF, EFAULT, EMFILE, ENOMEM, fail, rethrowWith } from "../uapi/errno.js";
import type { Cred } from "./cred.js";
import type { KFile } from "./file.js";

export const NR_OPEN_DEFAULT = 1024;

/**
 * What a driver sees of the calling process (current, in kernel terms):
 * its credentials, its address space (copy_{from,to}_user, pinning), and
 * its fd table.
 */
export class Task {
  /** Open files by fd number. */
  readonly fds: (KFile | undefined)[] = [];
  exited = false;
  /**
   * Where the next file goes when the fd number is not the model's to
   * choose (a real process behind the bridge reserved it): the number, or
   * -1 for EMFILE. Unset: the lowest free fd, as the kernel does.
   */
  fdAlloc: (() => number) | undefined;
  /**
   * A file the model does not hold at fd but the real process behind the
   * bridge does (its memfd for IOMMU_IOAS_MAP_FILE), or undefined.
   */
  fdImport: ((fd: number) => KFile | undefined) | undefined;
  /** The reason of the last refuse(), until the syscall layer takes it. */
  refusal: string | undefined = undefined;

  constructor(
    readonly pid: number,
    readonly cred: Cred,
    /** The process's address space. */
    readonly mm: MmStruct,
  ) {}

  capable(cap: string): boolean {
    return this.cred.caps.has(cap);
  }

  copyFromUser(ptr: bigint, len: number): Uint8Array {
    // fail_usercopy: fail_nth reaches copy_{from,to}_user too (the iommufd_fail_nth selftest relies on it).
    if (this.mm.faults.hit("copy_from_user")) fail(EFAULT, "copy_from_user failed (injected, fail_usercopy)");
    try {
      return this.mm.read(ptr, len);
    } catch (e) {
      rethrowWith(e, `cannot read ${len} bytes of user memory at 0x${ptr.toString(16)}: `, EFAULT);
    }
  }

  /** get_user() of a u32 (an ioctl struct's leading size): the value, or EFAULT as copyFromUser. */
  getUserU32(ptr: bigint): number {
    if (this.mm.faults.hit("copy_from_user")) fail(EFAULT, "copy_from_user failed (injected, fail_usercopy)");
    try {
      return this.mm.readU32(ptr);
    } catch (e) {
      rethrowWith(e, `cannot read 4 bytes of user memory at 0x${ptr.toString(16)}: `, EFAULT);
    }
  }

  copyToUser(ptr: bigint, bytes: Uint8Array): void {
    if (this.mm.faults.hit("copy_to_user")) fail(EFAULT, "copy_to_user failed (injected, fail_usercopy)");
    try {
      this.mm.write(ptr, bytes);
    } catch (e) {
      rethrowWith(e, `cannot write ${bytes.length} bytes of user memory at 0x${ptr.toString(16)}: `, EFAULT);
    }
  }

  /** fdget(): the file behind fd, or EBADF. */
  fdget(fd: number): KFile {
    const f = this.fdLookup(fd);
    if (f === undefined) fail(EBADF, this.badFd(fd));
    return f;
  }

  /** The file behind fd, or undefined (fdget without the throw, for the syscall fast paths). */
  fdLookup(fd: number): KFile | undefined {
    // (the bound check first: an index past the end of the array is a slow lookup in V8)
    const f = fd >= 0 && fd < this.fds.length ? this.fds[fd] : undefined;
    if (f !== undefined || this.fdImport === undefined || !Number.isInteger(fd) || fd < 0) return f;
    return this.fdImport(fd);
  }

  /** EBADF's reason. */
  badFd(fd: number): string {
    return `fd ${fd} is not open in pid ${this.pid}`;
  }

  /**
   * Refuse a call without a throw: keep the reason for the syscall layer,
   * which takes it with the returned -errno. For the paths a program hits
   * on purpose and often (probing a size, a closed fd): a throw costs V8
   * several times the rest of such a call. Everything else throws
   * KernelError (fail); both reach the caller as -errno with the reason.
   */
  refuse(errno: number, reason: string): number {
    this.refusal = reason;
    return -errno;
  }

  /** Take the reason refuse() left (undefined if none: a -errno without a reason is a model bug). */
  takeRefusal(): string | undefined {
    const r = this.refusal;
    this.refusal = undefined;
    return r;
  }

  /** Install a file at the lowest free fd (the file's reference moves to the table). */
  fdInstall(file: KFile): number {
    let fd = 0;
    if (this.fdAlloc !== undefined) fd = this.fdAlloc();
    else while (fd < this.fds.length && this.fds[fd] !== undefined) fd++;
    if (fd < 0 || fd >= NR_OPEN_DEFAULT) {
      file.put();
      fail(EMFILE, `pid ${this.pid} has ${NR_OPEN_DEFAULT} open files`);
    }
    // alloc_fd() growing the fd table (expand_files) can fail; the new file is released.
    if (this.mm.faults.hit("alloc_fd")) {
      file.put();
      fail(ENOMEM, "cannot grow the fd table (injected)");
    }
    this.fds[fd]?.put(); // a reserved number the model still held: the real fd was replaced
    this.fds[fd] = file;
    return fd;
  }

  /** Remove fd from the table and drop its reference: 0. */
  fdClose(fd: number): number {
    const f = this.fdget(fd);
    this.fds[fd] = undefined;
    while (this.fds.length > 0 && this.fds[this.fds.length - 1] === undefined) this.fds.length--;
    f.put();
    return 0;
  }

  openFileCount(): number {
    let n = 0;
    for (const f of this.fds) if (f !== undefined) n++;
    return n;
  }
}
