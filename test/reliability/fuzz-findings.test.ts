// Regression tests for what model-based fuzzing found (docs/reliability.md):
// each reproduces the shrunk sequence as plain system calls and checks the
// kernel's answer.
import { describe, expect, it } from "vitest";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import { argArea, MAP_PRIVATE_ANON, must, newMachine, PROT_RW, sioctl, vioctl } from "./rig.js";

const BDF = "0000:00:04.0";
const RW = I.IOMMU_IOAS_MAP_READABLE | I.IOMMU_IOAS_MAP_WRITEABLE;

/** A bound cdev, an IOAS with 4 pages mapped at 0x100000, a dirty-tracking HWPT on it. */
function dirtyRig(iommu: "amd" | "intel" | "mock") {
  const m = newMachine({ iommu, ...(iommu === "mock" ? { kconfig: { IOMMUFD_TEST: true } } : {}) });
  expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
  const p = m.spawn({ rlimitMemlock: 64n << 20n });
  argArea(p);
  const fd = must(p, p.open("/dev/iommu"), "open");
  const dev = must(p, p.open("/dev/vfio/devices/vfio0"), "open cdev");
  const devid = Number(
    vioctl(p, dev, V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd, { iommufd: fd }).out.out_devid,
  );
  const ioas = Number(sioctl(p, fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {}).out.out_ioas_id);
  const buf = p.mmap(0n, 0x4000n, PROT_RW, MAP_PRIVATE_ANON);
  const iova = iommu === "mock" ? 1n << 24n : 0x100000n;
  must(
    p,
    sioctl(p, fd, I.IOMMU_IOAS_MAP, I.iommu_ioas_map, {
      flags: RW | I.IOMMU_IOAS_MAP_FIXED_IOVA,
      ioas_id: ioas,
      user_va: buf,
      length: 0x4000n,
      iova,
    }).rc,
    "map",
  );
  const h = sioctl(p, fd, I.IOMMU_HWPT_ALLOC, I.iommu_hwpt_alloc, {
    flags: I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    dev_id: devid,
    pt_id: ioas,
  });
  must(p, h.rc, "HWPT_ALLOC dirty");
  return { m, p, fd, hwpt: Number(h.out.out_hwpt_id), iova };
}

/** A process with two sPAPR v2 containers, one group each, each with a 4-page region registered. */
function spaprTwoContainers() {
  const m = newMachine({
    iommu: "spapr",
    pci: [0, 1].map((g) => ({ bdf: `0000:00:0${4 + g}.0`, kind: "memcpy" as const, group: g })),
  });
  for (const g of [0, 1]) expect(m.bindDriver(`0000:00:0${4 + g}.0`, "vfio-pci")).toBe(0);
  const baseline = m.debug.counters();
  const p = m.spawn({ rlimitMemlock: 64n << 20n });
  const arg = argArea(p);
  const c: number[] = [];
  const grps: number[] = [];
  const buf: bigint[] = [];
  for (const g of [0, 1]) {
    const grp = must(p, p.open(`/dev/vfio/${g}`), "open group");
    grps.push(grp);
    c.push(must(p, p.open("/dev/vfio/vfio"), "open container"));
    expect(p.writeMemory(arg, new Uint8Array(new Int32Array([c[g]]).buffer))).toBe(0);
    must(p, p.ioctl(grp, V.VFIO_GROUP_SET_CONTAINER, arg), "SET_CONTAINER");
    must(p, p.ioctl(c[g], V.VFIO_SET_IOMMU, BigInt(V.VFIO_SPAPR_TCE_v2_IOMMU)), "SET_IOMMU");
    buf.push(p.mmap(0n, 0x4000n, PROT_RW, MAP_PRIVATE_ANON));
    must(
      p,
      vioctl(p, c[g], V.VFIO_IOMMU_SPAPR_REGISTER_MEMORY, V.vfio_iommu_spapr_register_memory, {
        vaddr: buf[g],
        size: 0x4000n,
      }).rc,
      "REGISTER_MEMORY",
    );
  }
  return { m, p, c, grps, buf, baseline };
}

describe("fuzzing findings", () => {
  it("sPAPR: a region whose container went while another container's TCEs used it is counted once, kept while the mm lives and freed when it dies", () => {
    const { m, p, c, grps, buf, baseline } = spaprTwoContainers();
    // Container 0 maps a TCE into the region container 1 registered (the mm's list is shared).
    must(
      p,
      vioctl(p, c[0], V.VFIO_IOMMU_MAP_DMA, V.vfio_iommu_type1_dma_map, {
        flags: V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: buf[1],
        iova: 0x100000n,
        size: 0x1000n,
      }).rc,
      "MAP_DMA",
    );
    expect(m.debug.counters().pinnedPages).toBe(8);
    expect(m.debug.checkInvariants()).toEqual([]);
    // Everything but the process goes: container 1's release cannot free its region (mapped), then
    // container 0 clears its TCE. As in the kernel the region stays registered, pinned and charged.
    for (const fd of [c[1], grps[1], c[0], grps[0]]) must(p, p.close(fd), "close");
    expect(m.debug.counters().vfioContainers).toBe(0);
    expect(m.debug.counters().pinnedPages).toBe(4);
    expect(m.debug.checkInvariants()).toEqual([]);
    // The mm dies: the model frees what the kernel would only WARN about.
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
    expect(m.debug.counters().pinnedPages).toBe(baseline.pinnedPages);
    expect(m.debug.dmesg().some((l) => l.includes("still registered when its mm died"))).toBe(true);
  });

  it("sPAPR: re-registering a region orphaned by UNREGISTER counts its pins once", () => {
    const { m, p, c, buf } = spaprTwoContainers();
    const reg = (req: number) =>
      vioctl(p, c[0], req, V.vfio_iommu_spapr_register_memory, { vaddr: buf[0], size: 0x4000n }).rc;
    must(
      p,
      vioctl(p, c[0], V.VFIO_IOMMU_MAP_DMA, V.vfio_iommu_type1_dma_map, {
        flags: V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: buf[0],
        iova: 0x100000n,
        size: 0x1000n,
      }).rc,
      "MAP_DMA",
    );
    // UNREGISTER while a TCE points into the region succeeds and orphans it; REGISTER adopts it again.
    expect(reg(V.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)).toBe(0);
    expect(reg(V.VFIO_IOMMU_SPAPR_REGISTER_MEMORY)).toBe(0);
    expect(m.debug.counters().pinnedPages).toBe(8);
    expect(m.debug.counters().vfioType1PinnedPages).toBe(8);
    expect(m.debug.checkInvariants()).toEqual([]);
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  for (const iommu of ["amd", "intel", "mock"] as const) {
    it(`${iommu}: GET_DIRTY_BITMAP with dirty tracking off succeeds with nothing reported (the driver's EINVAL is not returned)`, () => {
      // iommu_read_and_clear_dirty() ignores iova_bitmap_for_each()'s result: the
      // driver's "tracking disabled" stops the walk but the ioctl returns 0.
      const { m, p, fd, hwpt, iova } = dirtyRig(iommu);
      const data = argArea(p) + 4096n;
      expect(p.writeMemory(data, new Uint8Array([0xa0]))).toBe(0);
      const r = sioctl(p, fd, I.IOMMU_HWPT_GET_DIRTY_BITMAP, I.iommu_hwpt_get_dirty_bitmap, {
        hwpt_id: hwpt,
        iova,
        length: 0x4000n,
        page_size: 4096n,
        data,
      });
      expect(r.rc).toBe(0);
      // The kernel only ever sets bits: what the user had there stays.
      expect((p.readMemory(data, 1) as Uint8Array)[0]).toBe(0xa0);
      expect(m.debug.checkInvariants()).toEqual([]);
    });
  }
});
