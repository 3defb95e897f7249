import { describe, expect, it } from "vitest";
import { errno, Machine, uapi } from "../../src/index.js";

const { E2BIG, EFAULT, EINVAL, ENOTTY } = errno;

/** Uint8Array arguments live in a scratch page of the process: fault it in before a snapshot. */
function warmScratch(p: ReturnType<Machine["spawn"]>, fd: number): void {
  expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC | (1 << 16), new Uint8Array(256).fill(1))).toBe(-ENOTTY);
}

/** Every iommufd ioctl of a profile, through /dev/iommu: the generic size rules of main.c. */
describe.each(["latest", "6.12"] as const)("iommufd size rules (%s)", (kernel) => {
  const rows = uapi.iommufdIoctls(kernel);

  it.each(rows.map((d) => [d.name, d] as const))("%s: below the minimum size is EINVAL", (_n, d) => {
    const m = new Machine({ kernel });
    const p = m.spawn({ caps: ["CAP_SYS_RAWIO"] });
    const fd = p.open("/dev/iommu");
    warmScratch(p, fd);
    const before = m.debug.counters();
    const buf = new Uint8Array(d.struct.size);
    new DataView(buf.buffer).setUint32(0, d.minSize - 1, true);
    expect(p.ioctl(fd, d.request, buf)).toBe(-EINVAL);
    expect(p.lastError()?.reason).toMatch(/size|minimum/i);
    expect(m.debug.counters()).toEqual(before);
  });

  it.each(rows.map((d) => [d.name, d] as const))("%s: non-zero bytes past the struct are E2BIG", (_n, d) => {
    const m = new Machine({ kernel });
    const p = m.spawn({ caps: ["CAP_SYS_RAWIO"] });
    const fd = p.open("/dev/iommu");
    warmScratch(p, fd);
    const before = m.debug.counters();
    const buf = new Uint8Array(d.struct.size + 8);
    new DataView(buf.buffer).setUint32(0, buf.length, true);
    buf[d.struct.size + 3] = 1;
    expect(p.ioctl(fd, d.request, buf)).toBe(-E2BIG);
    expect(m.debug.counters()).toEqual(before);
  });

  it("a bad pointer is EFAULT, an unknown request ENOTTY", () => {
    const m = new Machine({ kernel });
    const p = m.spawn();
    const fd = p.open("/dev/iommu");
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, 0x10n)).toBe(-EFAULT);
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, 0n)).toBe(-EFAULT);
    // the right nr with size bits set in the request is not the table's request
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC | (12 << 16), new Uint8Array(12))).toBe(-ENOTTY);
    expect(m.debug.counters().objects).toBe(0);
  });
});

describe("profiles", () => {
  it("6.12 has no IOMMU_IOAS_MAP_FILE: ENOTTY; latest has it", () => {
    const old = new Machine({ kernel: "6.12" });
    const p = old.spawn();
    const fd = p.open("/dev/iommu");
    const buf = uapi.encode(uapi.iommu_ioas_map_file, { size: 40 });
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_MAP_FILE, buf)).toBe(-ENOTTY);
    const cur = new Machine();
    const q = cur.spawn();
    const fd2 = q.open("/dev/iommu");
    expect(
      q.ioctl(fd2, uapi.IOMMU_IOAS_MAP_FILE, uapi.encode(uapi.iommu_ioas_map_file, { size: 40 })),
    ).not.toBe(-ENOTTY);
  });

  it("a struct ioctl reads and writes nested user pointers in process memory", () => {
    const m = new Machine();
    const p = m.spawn();
    const fd = p.open("/dev/iommu");
    const alloc = uapi.encode(uapi.iommu_ioas_alloc, { size: 12 });
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_ALLOC, alloc)).toBe(0);
    const ioas = uapi.decode(uapi.iommu_ioas_alloc, alloc).out_ioas_id;
    const arr = p.mmap(0n, 4096n, 3, 0x22);
    const req = uapi.encode(uapi.iommu_ioas_iova_ranges, {
      size: 32,
      ioas_id: ioas,
      num_iovas: 4,
      allowed_iovas: arr,
    });
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_IOVA_RANGES, req)).toBe(0);
    const out = uapi.decode(uapi.iommu_ioas_iova_ranges, req);
    expect(out.num_iovas).toBe(1n);
    const r = p.readMemory(arr, 16) as Uint8Array;
    const dv = new DataView(r.buffer, r.byteOffset);
    expect(dv.getBigUint64(0, true)).toBe(0n);
    expect(dv.getBigUint64(8, true)).toBe((1n << 64n) - 1n);
    // the array behind a bad pointer: EFAULT, and nothing was created
    const bad = uapi.encode(uapi.iommu_ioas_iova_ranges, {
      size: 32,
      ioas_id: ioas,
      num_iovas: 4,
      allowed_iovas: 8n,
    });
    expect(p.ioctl(fd, uapi.IOMMU_IOAS_IOVA_RANGES, bad)).toBe(-EFAULT);
  });
});
