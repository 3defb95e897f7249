// A realistic VMM-style sequence over VFIO cdev + iommufd, as a list of
// steps each making exactly one system call, so a fail_nth sweep can arm
// the fault injector around any one of them.
import type { Machine, MachineOptions } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import { argArea, MAP_PRIVATE_ANON, MAP_SHARED, must, newMachine, PROT_RW, sioctl, vioctl } from "./rig.js";
import { VIOMMU_CONFIG } from "./viommu-sequence.js";

export const BDF = "0000:00:04.0";
const RW = I.IOMMU_IOAS_MAP_READABLE | I.IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = I.IOMMU_IOAS_MAP_FIXED_IOVA;
export const BUF = 64n * 1024n;
export const IOVA = 0x100000n;
export const COPY_IOVA = 0x400000n;
export const FILE_IOVA = 0x800000n;

/** What the sequence has built so far. */
export interface SeqState {
  m: Machine;
  p: Process;
  iommufd: number;
  ioas: number;
  dev: number;
  devid: number;
  hwpt: number;
  hwpt2: number;
  buf: bigint;
  memfd: number;
  devNode: string;
  /** Counters after boot, before any process existed. */
  baseline: Record<string, number>;
}

export interface Step {
  name: string;
  /**
   * The kernel does the work before copying the result back and does not
   * undo it when that copy fails (IOAS_UNMAP reports EFAULT with the range
   * gone; ATTACH_IOMMUFD_PT detaches, so a replace ends detached).
   */
  keepsEffectOnRespondFault?: boolean;
  /** The one system call; returns its rc (>= 0 success). */
  run(s: SeqState): number;
}

const ret = (rc: number | bigint) => Number(rc < 0 ? rc : 0);

export const STEPS: Step[] = [
  { name: "open /dev/iommu", run: (s) => (s.iommufd = s.p.open("/dev/iommu")) },
  {
    name: "IOMMU_IOAS_ALLOC",
    run(s) {
      const r = sioctl(s.p, s.iommufd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
      s.ioas = Number(r.out.out_ioas_id);
      return r.rc;
    },
  },
  { name: "open vfio cdev", run: (s) => (s.dev = s.p.open(s.devNode)) },
  {
    name: "VFIO_DEVICE_BIND_IOMMUFD",
    run(s) {
      const r = vioctl(s.p, s.dev, V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd, {
        iommufd: s.iommufd,
      });
      s.devid = Number(r.out.out_devid);
      return r.rc;
    },
  },
  {
    name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (IOAS)",
    run(s) {
      const r = vioctl(
        s.p,
        s.dev,
        V.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        V.vfio_device_attach_iommufd_pt,
        { pt_id: s.ioas },
        12,
      );
      s.hwpt = Number(r.out.pt_id);
      return r.rc;
    },
  },
  {
    name: "mmap buffer",
    run(s) {
      const va = s.p.mmap(0n, BUF, PROT_RW, MAP_PRIVATE_ANON);
      if (va >= 0n) s.buf = va;
      return ret(va);
    },
  },
  {
    name: "IOMMU_IOAS_MAP",
    keepsEffectOnRespondFault: true,
    run: (s) =>
      sioctl(s.p, s.iommufd, I.IOMMU_IOAS_MAP, I.iommu_ioas_map, {
        flags: RW | FIXED,
        ioas_id: s.ioas,
        user_va: s.buf,
        length: BUF,
        iova: IOVA,
      }).rc,
  },
  {
    name: "IOMMU_IOAS_COPY",
    keepsEffectOnRespondFault: true,
    run: (s) =>
      sioctl(s.p, s.iommufd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
        flags: RW | FIXED,
        dst_ioas_id: s.ioas,
        src_ioas_id: s.ioas,
        length: BUF / 2n,
        dst_iova: COPY_IOVA,
        src_iova: IOVA + 0x4000n,
      }).rc,
  },
  { name: "memfd_create", run: (s) => (s.memfd = s.p.memfdCreate("guest-ram")) },
  { name: "ftruncate", run: (s) => s.p.ftruncate(s.memfd, BUF) },
  {
    name: "IOMMU_IOAS_MAP_FILE",
    keepsEffectOnRespondFault: true,
    run: (s) =>
      sioctl(s.p, s.iommufd, I.IOMMU_IOAS_MAP_FILE, I.iommu_ioas_map_file, {
        flags: RW | FIXED,
        ioas_id: s.ioas,
        fd: s.memfd,
        start: 0n,
        length: BUF,
        iova: FILE_IOVA,
      }).rc,
  },
  {
    name: "IOMMU_HWPT_ALLOC",
    run(s) {
      const r = sioctl(s.p, s.iommufd, I.IOMMU_HWPT_ALLOC, I.iommu_hwpt_alloc, {
        dev_id: s.devid,
        pt_id: s.ioas,
      });
      s.hwpt2 = Number(r.out.out_hwpt_id);
      return r.rc;
    },
  },
  {
    name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace with HWPT)",
    keepsEffectOnRespondFault: true,
    run: (s) =>
      vioctl(
        s.p,
        s.dev,
        V.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        V.vfio_device_attach_iommufd_pt,
        { pt_id: s.hwpt2 },
        12,
      ).rc,
  },
  {
    name: "mmap memfd shared",
    run: (s) => ret(s.p.mmap(0n, BUF, PROT_RW, MAP_SHARED, s.memfd, 0n)),
  },
  {
    name: "IOMMU_IOAS_UNMAP (the copy)",
    keepsEffectOnRespondFault: true,
    run: (s) =>
      sioctl(s.p, s.iommufd, I.IOMMU_IOAS_UNMAP, I.iommu_ioas_unmap, {
        ioas_id: s.ioas,
        iova: COPY_IOVA,
        length: BUF / 2n,
      }).rc,
  },
  {
    name: "IOMMU_IOAS_UNMAP (all)",
    keepsEffectOnRespondFault: true,
    run: (s) =>
      sioctl(s.p, s.iommufd, I.IOMMU_IOAS_UNMAP, I.iommu_ioas_unmap, {
        ioas_id: s.ioas,
        iova: 0n,
        length: (1n << 64n) - 1n,
      }).rc,
  },
  {
    name: "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    run: (s) => vioctl(s.p, s.dev, V.VFIO_DEVICE_DETACH_IOMMUFD_PT, V.vfio_device_detach_iommufd_pt, {}).rc,
  },
  {
    name: "IOMMU_DESTROY (HWPT)",
    run: (s) => sioctl(s.p, s.iommufd, I.IOMMU_DESTROY, I.iommu_destroy, { id: s.hwpt2 }).rc,
  },
  { name: "close vfio cdev", run: (s) => s.p.close(s.dev) },
  {
    name: "IOMMU_DESTROY (IOAS)",
    run: (s) => sioctl(s.p, s.iommufd, I.IOMMU_DESTROY, I.iommu_destroy, { id: s.ioas }).rc,
  },
  { name: "close /dev/iommu", run: (s) => s.p.close(s.iommufd) },
  { name: "close memfd", run: (s) => s.p.close(s.memfd) },
];

/** IOMMU_IOAS_NOIOMMU_GET_PA of the first mapped page (noiommu machines only). */
export const GET_PA: Step = {
  name: "IOMMU_IOAS_NOIOMMU_GET_PA",
  run: (s) =>
    sioctl(s.p, s.iommufd, I.IOMMU_IOAS_NOIOMMU_GET_PA, I.iommu_ioas_noiommu_get_pa, {
      ioas_id: s.ioas,
      iova: IOVA,
      length: 0x1000n,
    }).rc,
};

/** The machines a sequence runs on: an AMD IOMMU, and a device with no IOMMU through the noiommu cdev. */
export const CONFIGS = {
  amd: { opts: {} as MachineOptions, caps: [] as string[], devNode: "/dev/vfio/devices/vfio0", steps: STEPS },
  noiommu: {
    opts: { iommu: "none", params: { "vfio.enable_unsafe_noiommu_mode": true } } as MachineOptions,
    caps: ["CAP_SYS_RAWIO"],
    devNode: "/dev/vfio/devices/noiommu-vfio0",
    steps: [
      ...STEPS.slice(
        0,
        STEPS.findIndex((x) => x.name === "IOMMU_HWPT_ALLOC"),
      ),
      GET_PA,
      ...STEPS.slice(STEPS.findIndex((x) => x.name === "IOMMU_HWPT_ALLOC")),
    ],
  },
  /** vIOMMU, vDEVICE, fault queue, vEVENTQ, nested HWPT and PASID on the mock IOMMU (viommu-sequence.ts). */
  viommu: VIOMMU_CONFIG,
};
export type ConfigName = keyof typeof CONFIGS;

/** A booted machine with the device bound to vfio-pci and a process with its argument page. */
export function boot(
  opts: MachineOptions = {},
  caps: string[] = [],
  devNode = CONFIGS.amd.devNode,
): SeqState {
  const m = newMachine(opts);
  if (m.bindDriver(BDF, "vfio-pci") !== 0) throw new Error("cannot bind vfio-pci");
  const baseline = m.debug.counters();
  const p = m.spawn({ rlimitMemlock: 64n << 20n, caps });
  argArea(p);
  return {
    m,
    p,
    baseline,
    devNode,
    iommufd: -1,
    ioas: 0,
    dev: -1,
    devid: 0,
    hwpt: 0,
    hwpt2: 0,
    buf: 0n,
    memfd: -1,
  };
}

/** Run steps [from, to) unarmed; each must succeed. */
export function runSteps(s: SeqState, from: number, to: number, steps: Step[] = STEPS): void {
  for (let i = from; i < to; i++) must(s.p, steps[i].run(s), steps[i].name);
}
