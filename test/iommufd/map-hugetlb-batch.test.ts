import { describe, expect, it } from "vitest";
import { iommufdCtxFromFile, iommufdDeviceAttach, iommufdDeviceBind } from "../../src/iommufd/index.js";
import { Machine } from "../../src/kernel/machine.js";
import { EFAULT, ENOMEM } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/iommufd.js";
import { decode, encode } from "../../src/uapi/struct.js";
import { snapshot } from "../reliability/snapshot.js";

const MAP_HUGETLB = 0x40000;
const M2 = 2n << 20n;
const IOVA = 1n << 40n;

/** An AMD machine, a process with an IOAS and an attached device, `folios` 2 MiB hugetlb folios mapped private. */
function setup(folios: number, touch: number[]) {
  const m = new Machine({ iommu: "amd", memoryBytes: 2n << 30n });
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], rlimitMemlock: (1n << 64n) - 1n });
  const fd = p.open("/dev/iommu");
  const a = encode(U.iommu_ioas_alloc, { size: 12 });
  expect(p.ioctl(fd, U.IOMMU_IOAS_ALLOC, a)).toBe(0);
  const ioas = Number(decode(U.iommu_ioas_alloc, a).out_ioas_id);
  const dev = m.iommu.device("0000:00:04.0")!;
  iommufdDeviceAttach(iommufdDeviceBind(iommufdCtxFromFile(p.task.fdget(fd)), dev), ioas);
  const len = BigInt(folios) * M2;
  const va = p.mmap(0n, len, 3, 0x22 | MAP_HUGETLB);
  // folios present before the map (their pins are shared, they are never freed by a failure)
  for (const i of touch) expect(p.task.mm.write(va + BigInt(i) * M2 + 8n, Uint8Array.of(i + 1))).toBe(0);
  const buf = encode(U.iommu_ioas_map, {
    size: 40,
    flags: 7,
    ioas_id: ioas,
    user_va: va,
    length: len,
    iova: IOVA,
  });
  return { m, p, fd, buf, dev, va, len };
}

/**
 * IOMMU_IOAS_MAP of a hugetlb area goes through the batched pin (range
 * undo records) and the batched leaf install (mapLeaves). At every fail
 * point: ENOMEM (EFAULT for the user copies), nothing changed (but for the response copy), invariants hold; and once it succeeds the
 * table maps every folio where the process has it.
 */
describe("IOAS_MAP of 2 MiB hugetlb memory (batched pin and leaf install)", () => {
  it("fail_nth at every point leaves nothing behind; success maps each folio at its PA", () => {
    const folios = 530; // more than one 512-folio piece, across two leaf tables
    let fired = 0;
    for (let n = 1; ; n++) {
      const s = setup(folios, [0, 3, 515, 529]);
      const before = snapshot(s.m);
      s.m.debug.failNth(n);
      const rc = s.p.ioctl(s.fd, U.IOMMU_IOAS_MAP, s.buf);
      const site = s.m.debug.failNthFired();
      s.m.debug.failNth(0);
      expect(s.m.debug.checkInvariants()).toEqual([]);
      const mappedAll = () => {
        const d = s.dev.domain;
        for (let i = 0; i < folios; i += 7) {
          const off = BigInt(i) * M2 + 4096n * BigInt(i % 512);
          expect(d.iovaToPhys(IOVA + off)).toBe(s.p.task.mm.translate(s.va + off));
        }
        expect(s.p.task.mm.read(s.va + 515n * M2 + 8n, 1)).toEqual(Uint8Array.of(516));
      };
      if (site === undefined) {
        expect(rc).toBe(0);
        mappedAll();
        break;
      }
      fired++;
      // allocations and pins fail ENOMEM; the user copies EFAULT. A failed response copy
      // (copy_to_user) keeps the mapping, as iommufd_ioas_map does: everything is mapped.
      expect(rc, `fail_nth=${n} at ${site}`).toBe(site.startsWith("copy_") ? -EFAULT : -ENOMEM);
      if (site === "copy_to_user") mappedAll();
      else expect(snapshot(s.m), `fail_nth=${n} at ${site}`).toEqual(before);
    }
    // every fresh folio's allocation plus the object/area/table points
    expect(fired).toBeGreaterThan(folios - 4);
  });
});
