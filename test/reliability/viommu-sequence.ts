// A vIOMMU sequence for the fail_nth sweep, on the mock IOMMU (the only
// driver with viommu_init): a PCI device through the VFIO cdev, a
// NEST_PARENT HWPT, a vIOMMU, a vDEVICE, a fault queue and a vEVENTQ with
// their fds, an IOPF-capable nested HWPT through the vIOMMU, a PASID
// attach, then everything torn down again (catalogue line 69's device body
// and its newer vIOMMU/PASID additions). One system call per step.
import type { MachineOptions } from "../../src/kernel/machine.js";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import { argArea, sioctl, vioctl } from "./rig.js";
import type { SeqState, Step } from "./sequence.js";

const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
const PASID = 5;

interface Extra {
  parent: number;
  pasidHwpt: number;
  viommu: number;
  vdev: number;
  fault: number;
  faultFd: number;
  veventq: number;
  veventqFd: number;
  nested: number;
}

const extra = new WeakMap<SeqState, Extra>();
function x(s: SeqState): Extra {
  let e = extra.get(s);
  if (e === undefined) {
    e = {
      parent: 0,
      pasidHwpt: 0,
      viommu: 0,
      vdev: 0,
      fault: 0,
      faultFd: -1,
      veventq: 0,
      veventqFd: -1,
      nested: 0,
    };
    extra.set(s, e);
  }
  return e;
}

const destroyStep = (name: string, id: (s: SeqState) => number): Step => ({
  name: `IOMMU_DESTROY (${name})`,
  run: (s) => sioctl(s.p, s.iommufd, I.IOMMU_DESTROY, I.iommu_destroy, { id: id(s) }).rc,
});

const attach = (s: SeqState, pt: number, pasid?: number) =>
  vioctl(
    s.p,
    s.dev,
    V.VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    V.vfio_device_attach_iommufd_pt,
    pasid === undefined ? { pt_id: pt } : { flags: V.VFIO_DEVICE_ATTACH_PASID, pt_id: pt, pasid },
    pasid === undefined ? 12 : 16,
  ).rc;

const hwpt = (
  s: SeqState,
  pt: number,
  flags: number,
  set: (id: number) => void,
  nested = false,
  faultId = 0,
) => {
  let uptr = 0n;
  if (nested) {
    // struct iommu_hwpt_selftest in the (already faulted) second page of the argument area.
    uptr = argArea(s.p) + 4096n;
    s.p.writeMemory(uptr, new Uint8Array([0xef, 0xbe, 0xad, 0x0b]));
  }
  const r = sioctl(s.p, s.iommufd, I.IOMMU_HWPT_ALLOC, I.iommu_hwpt_alloc, {
    flags,
    dev_id: s.devid,
    pt_id: pt,
    data_type: nested ? IOMMU_HWPT_DATA_SELFTEST : 0,
    data_len: nested ? 4 : 0,
    data_uptr: uptr,
    fault_id: faultId,
  });
  set(Number(r.out.out_hwpt_id));
  return r.rc;
};

export const VIOMMU_STEPS: Step[] = [
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
    name: "IOMMU_HWPT_ALLOC (NEST_PARENT|PASID)",
    run: (s) =>
      hwpt(s, s.ioas, I.IOMMU_HWPT_ALLOC_NEST_PARENT | I.IOMMU_HWPT_ALLOC_PASID, (id) => {
        x(s).parent = id;
      }),
  },
  { name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (parent)", run: (s) => attach(s, x(s).parent) },
  {
    name: "IOMMU_HWPT_ALLOC (PASID)",
    run: (s) =>
      hwpt(s, s.ioas, I.IOMMU_HWPT_ALLOC_PASID, (id) => {
        x(s).pasidHwpt = id;
      }),
  },
  { name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (PASID)", run: (s) => attach(s, x(s).pasidHwpt, PASID) },
  {
    name: "IOMMU_VIOMMU_ALLOC",
    run(s) {
      const r = sioctl(s.p, s.iommufd, I.IOMMU_VIOMMU_ALLOC, I.iommu_viommu_alloc, {
        type: IOMMU_VIOMMU_TYPE_SELFTEST,
        dev_id: s.devid,
        hwpt_id: x(s).parent,
      });
      x(s).viommu = Number(r.out.out_viommu_id);
      return r.rc;
    },
  },
  {
    name: "IOMMU_VDEVICE_ALLOC",
    run(s) {
      const r = sioctl(s.p, s.iommufd, I.IOMMU_VDEVICE_ALLOC, I.iommu_vdevice_alloc, {
        viommu_id: x(s).viommu,
        dev_id: s.devid,
        virt_id: 0x99n,
      });
      x(s).vdev = Number(r.out.out_vdevice_id);
      return r.rc;
    },
  },
  {
    name: "IOMMU_FAULT_QUEUE_ALLOC",
    run(s) {
      const r = sioctl(s.p, s.iommufd, I.IOMMU_FAULT_QUEUE_ALLOC, I.iommu_fault_alloc, {});
      x(s).fault = Number(r.out.out_fault_id);
      x(s).faultFd = Number(r.out.out_fault_fd);
      return r.rc;
    },
  },
  {
    name: "IOMMU_VEVENTQ_ALLOC",
    run(s) {
      const r = sioctl(s.p, s.iommufd, I.IOMMU_VEVENTQ_ALLOC, I.iommu_veventq_alloc, {
        viommu_id: x(s).viommu,
        type: IOMMU_VEVENTQ_TYPE_SELFTEST,
        veventq_depth: 2,
      });
      x(s).veventq = Number(r.out.out_veventq_id);
      x(s).veventqFd = Number(r.out.out_veventq_fd);
      return r.rc;
    },
  },
  {
    name: "IOMMU_HWPT_ALLOC (iopf nested on the vIOMMU)",
    run: (s) =>
      hwpt(
        s,
        x(s).viommu,
        I.IOMMU_HWPT_FAULT_ID_VALID | I.IOMMU_HWPT_ALLOC_PASID,
        (id) => {
          x(s).nested = id;
        },
        true,
        x(s).fault,
      ),
  },
  {
    name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (replace with the nested HWPT)",
    keepsEffectOnRespondFault: true,
    run: (s) => attach(s, x(s).nested),
  },
  {
    name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT (back to the parent)",
    keepsEffectOnRespondFault: true,
    run: (s) => attach(s, x(s).parent),
  },
  {
    name: "VFIO_DEVICE_DETACH_IOMMUFD_PT (PASID)",
    run: (s) =>
      vioctl(s.p, s.dev, V.VFIO_DEVICE_DETACH_IOMMUFD_PT, V.vfio_device_detach_iommufd_pt, {
        flags: V.VFIO_DEVICE_DETACH_PASID,
        pasid: PASID,
      }).rc,
  },
  destroyStep("nested HWPT", (s) => x(s).nested),
  { name: "close fault fd", run: (s) => s.p.close(x(s).faultFd) },
  destroyStep("FAULT", (s) => x(s).fault),
  { name: "close vEVENTQ fd", run: (s) => s.p.close(x(s).veventqFd) },
  destroyStep("VEVENTQ", (s) => x(s).veventq),
  destroyStep("VDEVICE", (s) => x(s).vdev),
  destroyStep("VIOMMU", (s) => x(s).viommu),
  destroyStep("PASID HWPT", (s) => x(s).pasidHwpt),
  { name: "close vfio cdev", run: (s) => s.p.close(s.dev) },
  destroyStep("parent HWPT", (s) => x(s).parent),
  destroyStep("IOAS", (s) => s.ioas),
  { name: "close /dev/iommu", run: (s) => s.p.close(s.iommufd) },
];

/** The sweep's machine for it: the mock IOMMU with IOMMUFD_TEST and a PASID-capable PCI function. */
export const VIOMMU_CONFIG = {
  opts: {
    iommu: "mock",
    kconfig: { IOMMUFD_TEST: true },
    pci: [{ bdf: "0000:00:04.0", kind: "memcpy", flags: { pasid: true } }],
  } as MachineOptions,
  caps: [] as string[],
  devNode: "/dev/vfio/devices/vfio0",
  steps: VIOMMU_STEPS,
};
