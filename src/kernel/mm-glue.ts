import {
  type ForeignMemory,
  ForeignMm,
  ForeignPageCache,
  isIoMem,
  MemFile,
  MmStruct,
  PageTracker,
  UserTable,
} from "../mm/index.js";
import { EINVAL, ENODEV, fail } from "../uapi/errno.js";
import {
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_EXEC,
  MFD_HUGE_MASK,
  MFD_HUGE_SHIFT,
  MFD_HUGETLB,
  MFD_NOEXEC_SEAL,
} from "../uapi/linux.js";
import type { Cred } from "./cred.js";
import { type FileOps, KFile } from "./file.js";
import type { KernelCtx } from "./kctx.js";
import type { Task } from "./task.js";

const MFD_ALL =
  MFD_CLOEXEC |
  MFD_ALLOW_SEALING |
  MFD_HUGETLB |
  MFD_NOEXEC_SEAL |
  MFD_EXEC |
  (MFD_HUGE_MASK << MFD_HUGE_SHIFT);
const MFD_NAME_MAX = 249;

/**
 * The syscall layer's use of src/mm: one PageTracker and UserTable per
 * machine, an MmStruct per process, memfd files.
 */
export class MmGlue {
  readonly pages: PageTracker;
  readonly users = new UserTable();
  /** Pages of real shared files behind the exec bridge, one frame per file page. */
  readonly foreignShared: ForeignPageCache;
  private pidSeed = 0;
  /** Run when a process's mm dies, after its files are closed (before exit_mmap): VFIO's mm_iommu_cleanup. */
  onMmExit: ((mm: MmStruct) => void) | undefined;

  constructor(private readonly ctx: KernelCtx) {
    this.pages = new PageTracker(ctx.phys, ctx.frames, ctx.faults);
    this.foreignShared = new ForeignPageCache(this.pages);
  }

  /** The mm layer's leak counters (m.debug.counters()). */
  counters() {
    const c = this.pages.counters();
    return { pinnedPages: this.pages.totalPinnedPages(), memFiles: c.memFiles, ownedFrames: c.ownedFrames };
  }

  newMm(cred: Cred): MmStruct {
    return new MmStruct({
      phys: this.ctx.phys,
      frames: this.ctx.frames,
      faults: this.ctx.faults,
      pages: this.pages,
      user: this.users.get(cred.uid),
      cred,
      seed: this.ctx.seed * 7919 + this.pidSeed++,
    });
  }

  /** The address space of a real process behind the exec bridge (its bytes stay in the process). */
  newForeignMm(cred: Cred, mem: ForeignMemory): ForeignMm {
    return new ForeignMm(
      {
        phys: this.ctx.phys,
        frames: this.ctx.frames,
        faults: this.ctx.faults,
        pages: this.pages,
        user: this.users.get(cred.uid),
        cred,
      },
      mem,
      this.foreignShared,
    );
  }

  /** dup_mm for fork: the child's copy of the parent's address space, charged to `cred`'s user. */
  fork(parent: Task, cred: Cred): MmStruct {
    return parent.mm.fork({ user: this.users.get(cred.uid), cred });
  }

  mm(task: Task): MmStruct {
    return task.mm;
  }

  mmap(
    task: Task,
    addr: bigint,
    len: bigint,
    prot: number,
    flags: number,
    backing: unknown,
    off: bigint,
  ): bigint {
    if (backing !== null && !(backing instanceof MemFile) && !isIoMem(backing)) {
      fail(ENODEV, "this file cannot be mapped into a process");
    }
    return this.mm(task).mmap(addr, len, prot, flags, backing, off);
  }

  munmap(task: Task, va: bigint, len: bigint): number {
    return this.mm(task).munmap(va, len);
  }

  release(task: Task): void {
    const mm = this.mm(task);
    this.onMmExit?.(mm);
    mm.release();
  }

  read(task: Task, va: bigint, len: number): Uint8Array {
    return this.mm(task).read(va, len);
  }

  write(task: Task, va: bigint, bytes: Uint8Array): number {
    return this.mm(task).write(va, bytes);
  }

  newMemfd(name: string, flags: number): KFile {
    if ((flags & ~MFD_ALL) !== 0) fail(EINVAL, `memfd_create: unknown flags 0x${flags.toString(16)}`);
    if (name.length > MFD_NAME_MAX) fail(EINVAL, "memfd_create: name longer than 249 bytes");
    const f = MemFile.create(this.pages, name, flags);
    return new KFile(memfdOps, f, `/memfd:${name} (deleted)`, 2);
  }

  truncate(file: KFile, len: bigint): number {
    if (!(file.priv instanceof MemFile)) fail(EINVAL, `ftruncate: ${file.kind} files cannot be truncated`);
    return file.priv.ftruncate(len);
  }
}

export const memfdOps: FileOps = {
  kind: "memfd",
  pread(file, _task, len, off) {
    return (file.priv as MemFile).read(off, len);
  },
  pwrite(file, _task, bytes, off) {
    return (file.priv as MemFile).write(off, bytes);
  },
  mmap(file) {
    return file.priv as MemFile;
  },
  release(file) {
    (file.priv as MemFile).put();
  },
};
