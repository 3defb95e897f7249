import { Machine } from "../kernel/machine.js";
import * as U from "../uapi/iommufd.js";
import { encode } from "../uapi/struct.js";
import { nowNs, registerSuite } from "./registry.js";

/**
 * The cost of a system call on the model next to the host kernel's
 * (bench/syscallref.c, run by main.ts in the same run): a refused ioctl,
 * close of a bad fd, an object made and freed. The struct argument lives in
 * the process's memory and the ioctl gets its address, as a C program calls it.
 */
function syscalls(quick: boolean): Record<string, number> {
  const n = quick ? 2_000 : 100_000;
  const m = new Machine({ iommu: "amd", seed: 1 });
  const p = m.spawn();
  const fd = p.open("/dev/iommu");
  const va = p.mmap(0n, 4096n, 3, 0x22);
  if (fd < 0 || va < 0n) throw new Error("bench setup failed");
  const bad = encode(U.iommu_ioas_alloc, { size: 8 });
  const good = encode(U.iommu_ioas_alloc, { size: 12 });
  const destroy = encode(U.iommu_destroy, { size: 8 });
  const vaGood = va + 64n;
  const vaDestroy = va + 128n;
  p.writeMemory(va, bad);
  p.writeMemory(vaGood, good);

  let t0 = nowNs();
  for (let i = 0; i < n; i++) if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, va) !== -22) throw new Error("ioctl");
  const ioctlFail = (nowNs() - t0) / n;

  t0 = nowNs();
  for (let i = 0; i < n; i++) if (p.close(1 << 20) !== -9) throw new Error("close");
  const closeBad = (nowNs() - t0) / n;

  // ids are allocated lowest-free (xa_alloc): every IOAS of the loop gets the id the first one got
  if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, vaGood) !== 0) throw new Error("alloc");
  const out = p.readMemory(vaGood + 8n, 4) as Uint8Array;
  destroy.set(out, 4); // out_ioas_id into iommu_destroy.id
  p.writeMemory(vaDestroy, destroy);
  if (p.ioctl(fd, U.IOMMU_DESTROY, vaDestroy) !== 0) throw new Error("destroy");
  t0 = nowNs();
  for (let i = 0; i < n; i++) {
    if (p.ioctl(fd, U.IOMMU_IOAS_ALLOC, vaGood) !== 0) throw new Error("alloc");
    if (p.ioctl(fd, U.IOMMU_DESTROY, vaDestroy) !== 0) throw new Error("destroy");
  }
  const makeFree = (nowNs() - t0) / n;
  p.exit();
  return {
    syscall_ioctl_fail_ns: ioctlFail,
    syscall_close_ebadf_ns: closeBad,
    syscall_object_make_free_ns: makeFree,
  };
}

registerSuite({
  name: "syscall",
  host: {
    syscall_ioctl_fail_ns: "ioctl_fail_ns",
    syscall_close_ebadf_ns: "close_ebadf_ns",
    syscall_object_make_free_ns: "object_make_free_ns",
  },
  run: ({ quick }) => syscalls(quick),
});
