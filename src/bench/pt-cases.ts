import { FaultInject } from "../hw/fault-inject.js";
import { FrameAllocator } from "../hw/frame-alloc.js";
import { PhysMem } from "../hw/phys-mem.js";
import { createPageTable, type PageTable } from "../pt/engine.js";
import { NOIOMMU_AMDV1_CONFIG } from "../pt/index.js";
import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import { nowNs, registerSuite } from "./registry.js";

/*
 * The timed loops run in chunks of CHUNK calls through small functions:
 * called hundreds of times per run they get optimized as a whole early, so
 * every run measures compiled code. One long loop inside run() (entered 5
 * times in all) ran on-stack-replaced code from some point that varied from
 * run to run, and map4k came out anywhere between 1x and 4x of C.
 * Every page is still one engine call, as in ptref.c.
 */
const CHUNK = 512;

function map4k(pt: PageTable, iova: number, pa: number, n: number, prot: number): void {
  for (let i = 0; i < n; i++) {
    if (pt.mapPages(iova + i, pa + i, 4096, 1, prot) !== 4096)
      throw new Error(`map4k ${iova + i}: ${pt.lastError}`);
  }
}

function unmap4k(pt: PageTable, iova: number, n: number): void {
  for (let i = 0; i < n; i++) {
    if (pt.unmapPages(iova + i, 4096, 1) !== 4096) throw new Error(`unmap4k ${iova + i}`);
  }
}

function map2m(pt: PageTable, iova: number, pa: number, n: number, prot: number): void {
  for (let i = 0; i < n; i++) {
    if (pt.mapPages(iova + i * 512, pa + i * 512, 2097152, 1, prot) !== 2097152)
      throw new Error(`map2m ${iova + i * 512}: ${pt.lastError}`);
  }
}

/**
 * `n` lookups at random pages of [base, base + n4k) with ptref's xorshift64
 * (state st = [hi, lo]), folding each PA into `sum`; returns the new sum.
 * The halves are int32 (the same bits) so V8 keeps them in registers;
 * uint32 halves (>>> 0) would cost ~10 ns a step as doubles and swamp the
 * lookup being measured.
 */
function lookups(pt: PageTable, base: number, n4k: number, n: number, st: Int32Array, sum: number): number {
  let hi = st[0];
  let lo = st[1];
  const two32modN = 4294967296 % n4k;
  const pow2 = (n4k & (n4k - 1)) === 0;
  for (let i = 0; i < n; i++) {
    let h = (hi << 13) | (lo >>> 19);
    let l = lo << 13;
    hi ^= h;
    lo ^= l;
    l = (lo >>> 7) | (hi << 25);
    h = hi >>> 7;
    hi ^= h;
    lo ^= l;
    h = (hi << 17) | (lo >>> 15);
    l = lo << 17;
    hi ^= h;
    lo ^= l;
    // x % n4k; a mask when n4k is a power of two (the same value; ptref.c divides)
    const page = pow2 ? lo & (n4k - 1) : (((hi >>> 0) % n4k) * two32modN + (lo >>> 0)) % n4k;
    const off = lo & 0xfff;
    const pa = pt.iovaToPhysPfn(base + page);
    sum = (sum + (pa & 15) * 4096 + off) & 0xffff;
  }
  st[0] = hi;
  st[1] = lo;
  return sum;
}

/**
 * The cases of /work/shared/bench/ptref.c on the noiommu AMDv1 table:
 * map 262144 x 4 KiB (one call each) at IOVA 0x1_0000_0000 -> PA
 * 0x40_0000_0000, 1M random iova_to_phys with ptref's xorshift64, unmap the
 * 4 KiB pages one call each, then map 32768 x 2 MiB at IOVA 2^40.
 */
registerSuite({
  name: "amdv1",
  cRef: {
    map4k_ns_per_page: "map4k_ns_per_page",
    lookup_ns: "lookup_ns",
    unmap4k_ns_per_page: "unmap4k_ns_per_page",
    map2m_ns_per_page: "map2m_ns_per_page",
  },
  run({ quick }) {
    const n4k = quick ? 4096 : 262144;
    const m2m = quick ? 512 : 32768;
    const nl = quick ? 10000 : 1000000;
    const mem = new PhysMem(1n << 30n, [[0, (1 << 30) / 4096]]);
    const alloc = new FrameAllocator(mem, 1, new FaultInject());
    const pt = createPageTable({ mem, alloc }, "amdv1", { ...NOIOMMU_AMDV1_CONFIG });
    const base = 0x100000000 / 4096;
    const pbase = 0x4000000000 / 4096;
    const prot = IOMMU_READ | IOMMU_WRITE;

    const t0 = nowNs();
    for (let i = 0; i < n4k; i += CHUNK) map4k(pt, base + i, pbase + i, Math.min(CHUNK, n4k - i), prot);
    const t1 = nowNs();
    const x0 = 88172645463325252n;
    const st = Int32Array.of(Number(x0 >> 32n) | 0, Number(x0 & 0xffffffffn) | 0);
    let sum = 0;
    for (let i = 0; i < nl; i += 8 * CHUNK)
      sum = lookups(pt, base, n4k, Math.min(8 * CHUNK, nl - i), st, sum);
    const t2 = nowNs();
    for (let i = 0; i < n4k; i += CHUNK) unmap4k(pt, base + i, Math.min(CHUNK, n4k - i));
    const t3 = nowNs();
    const base2 = 0x10000000000 / 4096;
    for (let i = 0; i < m2m; i += CHUNK) {
      map2m(pt, base2 + i * 512, pbase + i * 512, Math.min(CHUNK, m2m - i), prot);
    }
    const t4 = nowNs();
    pt.destroy();
    return {
      map4k_ns_per_page: (t1 - t0) / n4k,
      lookup_ns: (t2 - t1) / nl,
      unmap4k_ns_per_page: (t3 - t2) / n4k,
      map2m_ns_per_page: (t4 - t3) / m2m,
      check: sum,
    };
  },
});
