import { describe, expect, it } from "vitest";
import type { Process } from "../../src/kernel/process.js";
import { EBADF, EBUSY, EINVAL, ENOENT, ENOMEM, EPERM } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import { argArea, MAP_PRIVATE_ANON, newMachine, PROT_RW, sioctl, vioctl } from "./rig.js";

const BDF = "0000:00:04.0";
const RW = I.IOMMU_IOAS_MAP_READABLE | I.IOMMU_IOAS_MAP_WRITEABLE | I.IOMMU_IOAS_MAP_FIXED_IOVA;

function machine(devices = 1) {
  const bdfs = [BDF, "0000:00:05.0"].slice(0, devices);
  const m = newMachine({ pci: bdfs.map((bdf) => ({ bdf, kind: "memcpy" as const })) });
  for (const b of bdfs) expect(m.bindDriver(b, "vfio-pci")).toBe(0);
  return m;
}

function proc(m: ReturnType<typeof machine>, opts: Parameters<typeof m.spawn>[0] = {}): Process {
  const p = m.spawn({ rlimitMemlock: 64n << 20n, ...opts });
  argArea(p);
  return p;
}

function ioas(p: Process, fd: number): number {
  const r = sioctl(p, fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
  expect(r.rc).toBe(0);
  return Number(r.out.out_ioas_id);
}

function map(p: Process, fd: number, id: number, va: bigint, len: bigint, iova: bigint) {
  return sioctl(p, fd, I.IOMMU_IOAS_MAP, I.iommu_ioas_map, {
    flags: RW,
    ioas_id: id,
    user_va: va,
    length: len,
    iova,
  }).rc;
}

function bindAttach(p: Process, iommufd: number, id: number, node = "vfio0"): { dev: number; rc: number } {
  const dev = p.open(`/dev/vfio/devices/${node}`);
  expect(dev).toBeGreaterThanOrEqual(0);
  const b = vioctl(p, dev, V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd, { iommufd });
  if (b.rc !== 0) return { dev, rc: b.rc };
  const a = vioctl(
    p,
    dev,
    V.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    V.vfio_device_attach_iommufd_pt,
    { pt_id: id },
    12,
  );
  return { dev, rc: a.rc };
}

function clean(m: ReturnType<typeof machine>): void {
  expect(m.debug.checkInvariants()).toEqual([]);
}

describe("isolation", () => {
  it("objects of one iommufd are unreachable from another, even with the same id", () => {
    const m = machine();
    const p = proc(m);
    const a = p.open("/dev/iommu");
    const b = p.open("/dev/iommu");
    const id = ioas(p, a);
    const before = m.debug.counters();
    const va = p.mmap(0n, 0x4000n, PROT_RW, MAP_PRIVATE_ANON);
    expect(map(p, b, id, va, 0x4000n, 0x100000n)).toBe(-ENOENT);
    expect(sioctl(p, b, I.IOMMU_DESTROY, I.iommu_destroy, { id }).rc).toBe(-ENOENT);
    expect(m.debug.counters().objects).toBe(before.objects);
    // The other context's first IOAS gets the same id number and is a different object.
    expect(ioas(p, b)).toBe(id);
    expect(map(p, b, id, va, 0x4000n, 0x100000n)).toBe(0);
    expect(map(p, a, id, va, 0x4000n, 0x100000n)).toBe(0);
    expect(m.debug.counters().areas).toBe(2);
    clean(m);
    p.exit();
    clean(m);
  });

  it("fds are per process: another process's fd number is EBADF here", () => {
    const m = machine();
    const p = proc(m);
    const q = proc(m);
    const fd = p.open("/dev/iommu");
    ioas(p, fd);
    expect(q.close(fd + 5)).toBe(-EBADF);
    expect(sioctl(q, fd + 5, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {}).rc).toBe(-EBADF);
    // q's own fd with the same number is q's file, with none of p's objects.
    const qfd = q.open("/dev/iommu");
    expect(sioctl(q, qfd, I.IOMMU_DESTROY, I.iommu_destroy, { id: 1 }).rc).toBe(-ENOENT);
    p.exit();
    q.exit();
    clean(m);
  });

  it("one binder per device: a second cdev opener, from any process, is refused and changes nothing", () => {
    const m = machine();
    const p = proc(m);
    const q = proc(m);
    const pfd = p.open("/dev/iommu");
    const r1 = bindAttach(p, pfd, ioas(p, pfd));
    expect(r1.rc).toBe(0);
    const qfd = q.open("/dev/iommu");
    const before = m.debug.counters();
    const r2 = bindAttach(q, qfd, ioas(q, qfd));
    expect([-EBUSY, -EINVAL]).toContain(r2.rc);
    expect(m.debug.counters().objects).toBe(before.objects + 1); // q's IOAS only
    // The same process binding a second fd of the same device: refused as well.
    const r3 = bindAttach(p, pfd, 1);
    expect([-EBUSY, -EINVAL]).toContain(r3.rc);
    clean(m);
    p.exit();
    // Once the binder is gone the device is free for q.
    const dev = q.open("/dev/vfio/devices/vfio0");
    expect(vioctl(q, dev, V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd, { iommufd: qfd }).rc).toBe(
      0,
    );
    q.exit();
    clean(m);
  });

  it("group and cdev exclude each other", () => {
    const m = machine();
    const p = proc(m);
    const q = proc(m);
    const groups = m.listDir("/dev/vfio").filter((n) => /^\d+$/.test(n));
    expect(groups.length).toBe(1);
    const g = p.open(`/dev/vfio/${groups[0]}`);
    expect(g).toBeGreaterThanOrEqual(0);
    const qfd = q.open("/dev/iommu");
    const r = bindAttach(q, qfd, ioas(q, qfd));
    expect(r.rc).toBe(-EBUSY);
    p.exit();
    const r2 = bindAttach(q, qfd, 1);
    expect(r2.rc).toBe(0);
    // And while the cdev is bound, the group cannot be opened.
    expect(p.task.exited).toBe(true);
    const p2 = proc(m);
    expect(p2.open(`/dev/vfio/${groups[0]}`)).toBe(-EBUSY);
    q.exit();
    p2.exit();
    clean(m);
  });
});

describe("privilege and limits", () => {
  it("IOMMU_OPTION RLIMIT_MODE set needs CAP_SYS_RESOURCE", () => {
    const m = machine();
    const opt = { option_id: I.IOMMU_OPTION_RLIMIT_MODE, op: I.IOMMU_OPTION_OP_SET, object_id: 0, val64: 1n };
    const p = proc(m);
    const fd = p.open("/dev/iommu");
    expect(sioctl(p, fd, I.IOMMU_OPTION, I.iommu_option, opt).rc).toBe(-EPERM);
    const r = proc(m, { caps: ["CAP_SYS_RESOURCE"] });
    const rfd = r.open("/dev/iommu");
    expect(sioctl(r, rfd, I.IOMMU_OPTION, I.iommu_option, opt).rc).toBe(0);
    p.exit();
    r.exit();
    clean(m);
  });

  it("GET_PA needs CAP_SYS_RAWIO (checked before anything else)", () => {
    const m = machine();
    const p = proc(m);
    const fd = p.open("/dev/iommu");
    const r = sioctl(p, fd, I.IOMMU_IOAS_NOIOMMU_GET_PA, I.iommu_ioas_noiommu_get_pa, {
      ioas_id: 12345,
      length: 4096n,
    });
    expect(r.rc).toBe(-EPERM);
    p.exit();
  });

  it("RLIMIT_MEMLOCK bounds what an unprivileged process pins; CAP_IPC_LOCK lifts it", () => {
    for (const caps of [[], ["CAP_IPC_LOCK"]]) {
      const m = machine();
      const p = proc(m, { caps, rlimitMemlock: 64n * 1024n });
      const fd = p.open("/dev/iommu");
      const id = ioas(p, fd);
      expect(bindAttach(p, fd, id).rc).toBe(0);
      const va = p.mmap(0n, 0x20000n, PROT_RW, MAP_PRIVATE_ANON);
      const before = m.debug.counters();
      const rc = map(p, fd, id, va, 0x20000n, 0x100000n); // 128 KiB > 64 KiB
      if (caps.length === 0) {
        expect(rc).toBe(-ENOMEM);
        const after = m.debug.counters();
        expect([after.pinnedPages, after.areas, after.objects]).toEqual([
          before.pinnedPages,
          before.areas,
          before.objects,
        ]);
        expect(map(p, fd, id, va, 0x10000n, 0x100000n)).toBe(0); // exactly the limit
      } else expect(rc).toBe(0);
      clean(m);
      p.exit();
      clean(m);
      expect(m.debug.counters().pinnedPages).toBe(0);
    }
  });

  it("processes of one user share the user's locked_vm", () => {
    const m = machine(2);
    const p = proc(m, { rlimitMemlock: 64n * 1024n });
    const q = proc(m, { rlimitMemlock: 64n * 1024n });
    const pfd = p.open("/dev/iommu");
    const pid = ioas(p, pfd);
    expect(bindAttach(p, pfd, pid).rc).toBe(0);
    const pva = p.mmap(0n, 0xc000n, PROT_RW, MAP_PRIVATE_ANON);
    expect(map(p, pfd, pid, pva, 0xc000n, 0x100000n)).toBe(0);
    const qfd = q.open("/dev/iommu");
    const qid = ioas(q, qfd);
    expect(bindAttach(q, qfd, qid, "vfio1").rc).toBe(0);
    const qva = q.mmap(0n, 0x8000n, PROT_RW, MAP_PRIVATE_ANON);
    // 48 KiB pinned by p + 32 KiB by q > 64 KiB for uid 1000; 16 KiB fits.
    expect(map(q, qfd, qid, qva, 0x8000n, 0x100000n)).toBe(-ENOMEM);
    expect(map(q, qfd, qid, qva, 0x4000n, 0x100000n)).toBe(0);
    p.exit();
    expect(map(q, qfd, qid, qva + 0x4000n, 0x4000n, 0x200000n)).toBe(0);
    q.exit();
    clean(m);
  });

  it("a process exiting in the middle of anything releases all of it", () => {
    const m = machine();
    const base = m.debug.counters();
    const p = proc(m);
    const fd = p.open("/dev/iommu");
    const id = ioas(p, fd);
    expect(bindAttach(p, fd, id).rc).toBe(0);
    const va = p.mmap(0n, 0x10000n, PROT_RW, MAP_PRIVATE_ANON);
    expect(map(p, fd, id, va, 0x10000n, 0x100000n)).toBe(0);
    const mfd = p.memfdCreate("x");
    expect(p.ftruncate(mfd, 0x10000n)).toBe(0);
    const fm = sioctl(p, fd, I.IOMMU_IOAS_MAP_FILE, I.iommu_ioas_map_file, {
      flags: RW,
      ioas_id: id,
      fd: mfd,
      start: 0n,
      length: 0x10000n,
      iova: 0x400000n,
    });
    expect(fm.rc).toBe(0);
    expect(p.close(mfd)).toBe(0); // the pages object keeps the memfd alive
    expect(m.debug.counters().memFiles).toBe(1);
    // A second IOAS mid-build and a user buffer munmapped while pinned.
    ioas(p, fd);
    expect(p.munmap(va, 0x10000n)).toBe(0);
    expect(m.debug.counters().pinnedPages).toBe(32);
    p.exit();
    const after = m.debug.counters();
    for (const k of Object.keys(base))
      if (k !== "residentFrames") expect([k, after[k]]).toEqual([k, base[k]]);
    clean(m);
    // The exited process's syscalls fail; nothing is created.
    expect(p.open("/dev/iommu")).toBeLessThan(0);
    expect(m.debug.counters().openFiles).toBe(0);
  });
});
