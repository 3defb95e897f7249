import type { PhysMem } from "./phys-mem.js";

/**
 * The IOMMU hardware's own page walk: translate a DMA address by reading the
 * table bytes from PhysMem, starting from what the device's context holds
 * (AMD DTE root + mode, VT-d SSPTPTR + AW, iosatp, GCR3, the TVE of a TCE
 * window). It knows nothing of the software page-table objects.
 *
 * What is modelled:
 * - AMDv1: PR, NextLevel (tables, NL=0 natural leaves, NL=7 encoded sizes,
 *   level skipping with the skipped VA bits required to be 0), IR/IW AND'ed
 *   down the walk. VA bits above the mode's reach must be 0. With
 *   dirtyTracking (DTE HAD) the leaf item used gets A on every access and D
 *   on writes.
 * - amdv1_mock (the iommufd selftest's AMDv1 variant, generic_pt
 *   iommu_mock.c): the AMDv1 walk over a 2 KiB granule. Addresses are
 *   counted in 2 KiB units (ctx.unitLg2 = 11), a level-L table indexes
 *   address bits 11+9L..19+9L, and every OA field (bits 51:12) holds
 *   address >> 11, table pointers included. The mock has no real hardware:
 *   this is what an AMD-style walker reading that format would do.
 * - VT-d second stage: R|W = present, permissions AND'ed, PS leaves at levels
 *   1-2 (PS above is reserved: a fault). With dirtyTracking (SSADE) the leaf
 *   gets A, and D on writes.
 * - x86-64 first stage: P, R/W AND'ed for writes (reads always allowed), PS
 *   at 1-2, canonical check; A is set on each entry used and D on a leaf
 *   written (the format pre-sets both, so bytes rarely change). DMA here
 *   carries no PASID, so VT-d and AMD treat it as a user-mode request: U/S
 *   must be 1 at every level (the format sets it on tables and leaves).
 * - RISC-V: V, W without R reserved, leaves at any level, misaligned
 *   superpages fault, Svnapot 64 KiB; Svade rule: A clear, or D clear on a
 *   write, is a fault (the format pre-sets A and D).
 * - sPAPR TCE: index = (iova >> page_shift) - it_offset must be < it_size;
 *   indirect entries need READ|WRITE; leaves need READ for reads and WRITE
 *   for writes.
 * Not modelled: IOTLB caching, interrupt remapping, PASID, nested stages.
 */
export type WalkFormat = "amdv1" | "amdv1_mock" | "vtdss" | "x86_64" | "riscv" | "spapr_tce";

export interface IommuWalkCtx {
  format: WalkFormat;
  rootPfn: number;
  /** generic_pt level of the root (AMD mode - 1, VT-d aw + 1, ...). */
  topLevel: number;
  /**
   * log2 bytes of the unit translatePfn's IOVA and result count in: the
   * table's granule (11 for amdv1_mock); 12 when absent.
   */
  unitLg2?: number;
  /** VA width the context is programmed for (x86 / RISC-V canonical checks). */
  vaLg2?: number;
  signExtend?: boolean;
  /** SME C-bit mask to strip from addresses read from entries. */
  smeMask?: bigint;
  /** AMD DTE HAD / VT-d SSADE: the walker sets A/D bits. */
  dirtyTracking?: boolean;
  tce?: { pageShift: number; levelBits: number; itOffset: number; itSize: number };
}

export type FaultReason = "not_present" | "permission" | "out_of_range" | "reserved";

export interface WalkFault {
  reason: FaultReason;
  /** generic level where the walk stopped */
  level: number;
}

const ZERO = new Uint32Array(1024);
const P32 = 4294967296;

/**
 * A walker bound to memory. translatePfn is the allocation-free hot path;
 * translate gives bigints and a fault object.
 */
export class IommuWalker {
  /** Set when translatePfn returns -1. */
  readonly fault: WalkFault = { reason: "not_present", level: 0 };
  private smeLo = 0;
  private smeHi = 0;

  constructor(private readonly mem: PhysMem) {}

  translate(
    ctx: IommuWalkCtx,
    iova: bigint,
    access: "read" | "write",
  ): { pa: bigint } | { fault: WalkFault } {
    if (iova < 0n || iova > 0xffffffffffffffffn)
      return { fault: { reason: "out_of_range", level: ctx.topLevel } };
    const u = BigInt(ctx.unitLg2 ?? 12);
    const r = this.translatePfn(ctx, Number(iova >> u), access === "write");
    if (r < 0) return { fault: { ...this.fault } };
    return { pa: (BigInt(r) << u) | (iova & ((1n << u) - 1n)) };
  }

  /**
   * PA pfn for the page of the IOVA pfn, or -1 with `fault` filled in. Both
   * pfns count the context's unit (4 KiB; 2 KiB for amdv1_mock).
   */
  translatePfn(ctx: IommuWalkCtx, iovaPfn: number, write: boolean): number {
    const m = ctx.smeMask ?? 0n;
    this.smeLo = Number(m & 0xffffffffn);
    this.smeHi = Number((m >> 32n) & 0xffffffffn);
    switch (ctx.format) {
      case "amdv1":
        return this.amdv1(ctx, iovaPfn, write, 1);
      case "amdv1_mock":
        // OA fields count 2 KiB units; a table (a 4 KiB frame) is field / 2
        return this.amdv1(ctx, iovaPfn, write, 2);
      case "vtdss":
        return this.vtdss(ctx, iovaPfn, write);
      case "x86_64":
        return this.x86(ctx, iovaPfn, write);
      case "riscv":
        return this.riscv(ctx, iovaPfn, write);
      case "spapr_tce":
        return this.tce(ctx, iovaPfn, write);
    }
  }

  private f(reason: FaultReason, level: number): number {
    this.fault.reason = reason;
    this.fault.level = level;
    return -1;
  }

  private words(pfn: number): Uint32Array {
    return this.mem.peekU32(pfn) ?? ZERO;
  }

  /** 9-bit index of a pfn at a 4 KiB-granule level. */
  private static idx9(pfn: number, level: number): number {
    const s = 9 * level;
    if (s + 9 <= 32) return (pfn >>> s) & 511;
    return Math.floor(pfn / 2 ** s) % 512;
  }

  private static pfn12(lo: number, hi: number): number {
    return (hi & 0xfffff) * 1048576 + (lo >>> 12);
  }

  /**
   * `perFrame`: OA-field units per 4 KiB frame (1 for AMDv1, 2 for the 2 KiB
   * mock granule); `pfn` and the result are in OA-field units.
   */
  private amdv1(ctx: IommuWalkCtx, pfn: number, write: boolean, perFrame: number): number {
    let level = ctx.topLevel;
    const reach = 9 * (level + 1);
    if (reach < 52 && pfn >= 2 ** reach) return this.f("out_of_range", level);
    let tpfn = ctx.rootPfn;
    let r = true;
    let w = true;
    for (;;) {
      const i = IommuWalker.idx9(pfn, level);
      const u = this.words(tpfn);
      const lo = u[i * 2];
      const hi = u[i * 2 + 1];
      if ((lo & 1) === 0) return this.f("not_present", level);
      r = r && (hi & (1 << 29)) !== 0;
      w = w && (hi & (1 << 30)) !== 0;
      const nl = (lo >>> 9) & 7;
      const alo = lo & ~this.smeLo;
      const ahi = hi & ~this.smeHi;
      if (level === 0 || nl === 0 || nl === 7) {
        if (level === 0 && nl !== 0 && nl !== 7) return this.f("reserved", 0);
        let base = IommuWalker.pfn12(alo, ahi);
        let shift = 9 * level;
        if (nl === 7) {
          const a = (alo >>> 12) & 0xfffff;
          const ones =
            a !== 0xfffff
              ? 31 - Math.clz32(~a & (a + 1))
              : 20 + 31 - Math.clz32(~ahi & ((ahi & 0xfffff) + 1));
          shift = ones + 1;
          base -= 2 ** ones - 1;
          if (shift < 9 * level) return this.f("reserved", level);
        }
        if (write ? !w : !r) return this.f("permission", level);
        if (ctx.dirtyTracking) {
          const wu = this.mem.frameU32(tpfn);
          wu[i * 2] = lo | (1 << 5) | (write ? 1 << 6 : 0);
        }
        return base + (shift === 0 ? 0 : pfn % 2 ** shift);
      }
      // NextLevel = AMD level of the child = generic level + 1
      const child = nl - 1;
      if (child >= level) return this.f("reserved", level);
      for (let l = level - 1; l > child; l--)
        if (IommuWalker.idx9(pfn, l) !== 0) return this.f("not_present", l);
      tpfn = IommuWalker.pfn12(alo, ahi) / perFrame;
      if (!Number.isInteger(tpfn)) return this.f("reserved", level);
      level = child;
    }
  }

  private vtdss(ctx: IommuWalkCtx, pfn: number, write: boolean): number {
    let level = ctx.topLevel;
    const reach = 9 * (level + 1);
    if (reach < 52 && pfn >= 2 ** reach) return this.f("out_of_range", level);
    let tpfn = ctx.rootPfn;
    let r = true;
    let w = true;
    for (;;) {
      const i = IommuWalker.idx9(pfn, level);
      const u = this.words(tpfn);
      const lo = u[i * 2];
      const hi = u[i * 2 + 1];
      if ((lo & 3) === 0) return this.f("not_present", level);
      r = r && (lo & 1) !== 0;
      w = w && (lo & 2) !== 0;
      const ps = (lo & 0x80) !== 0;
      if (ps && level > 2) return this.f("reserved", level);
      if (level === 0 || ps) {
        if (write ? !w : !r) return this.f("permission", level);
        if (ctx.dirtyTracking) this.mem.frameU32(tpfn)[i * 2] = lo | (1 << 8) | (write ? 1 << 9 : 0);
        const shift = 9 * level;
        return IommuWalker.pfn12(lo, hi) + (shift === 0 ? 0 : pfn % 2 ** shift);
      }
      tpfn = IommuWalker.pfn12(lo, hi);
      level--;
    }
  }

  /** Canonical form: fold a sign-extended pfn, or -1. */
  private canonical(ctx: IommuWalkCtx, pfn: number, reachBits: number): number {
    const va = (ctx.vaLg2 ?? reachBits + 12) - 12;
    if (ctx.signExtend) {
      const half = 2 ** (va - 1);
      if (pfn < half) return pfn;
      if (pfn >= 2 ** 52 - half) return pfn - 2 ** 52 + 2 ** va;
      return -1;
    }
    return pfn < 2 ** va ? pfn : -1;
  }

  private x86(ctx: IommuWalkCtx, pfn0: number, write: boolean): number {
    let level = ctx.topLevel;
    const pfn = this.canonical(ctx, pfn0, 9 * (level + 1));
    if (pfn < 0) return this.f("out_of_range", level);
    let tpfn = ctx.rootPfn;
    let w = true;
    let user = true;
    for (;;) {
      const i = IommuWalker.idx9(pfn, level);
      const u = this.words(tpfn);
      const lo = u[i * 2];
      const hi = u[i * 2 + 1];
      if ((lo & 1) === 0) return this.f("not_present", level);
      w = w && (lo & 2) !== 0;
      user = user && (lo & 4) !== 0;
      const ps = (lo & 0x80) !== 0;
      if (ps && level > 2) return this.f("reserved", level);
      const alo = lo & ~this.smeLo;
      const ahi = hi & ~this.smeHi;
      const leaf = level === 0 || ps;
      if (leaf && (!user || (write && !w))) return this.f("permission", level);
      const want = (lo | 0x20 | (leaf && write ? 0x40 : 0)) >>> 0;
      if (want !== lo) this.mem.frameU32(tpfn)[i * 2] = want;
      if (leaf) {
        const shift = 9 * level;
        return IommuWalker.pfn12(alo, ahi) + (shift === 0 ? 0 : pfn % 2 ** shift);
      }
      tpfn = IommuWalker.pfn12(alo, ahi);
      level--;
    }
  }

  private riscv(ctx: IommuWalkCtx, pfn0: number, write: boolean): number {
    let level = ctx.topLevel;
    const pfn = this.canonical(ctx, pfn0, 9 * (level + 1));
    if (pfn < 0) return this.f("out_of_range", level);
    let tpfn = ctx.rootPfn;
    for (;;) {
      const i = IommuWalker.idx9(pfn, level);
      const u = this.words(tpfn);
      const lo = u[i * 2];
      const hi = u[i * 2 + 1];
      if ((lo & 1) === 0 || (lo & 6) === 4) return this.f((lo & 1) === 0 ? "not_present" : "reserved", level);
      const ppn = (hi & 0x3fffff) * P32 * 2 ** -10 + (lo >>> 10);
      if ((lo & 0xe) === 0) {
        if (level === 0) return this.f("reserved", 0);
        tpfn = ppn;
        level--;
        continue;
      }
      const napot = (hi & 0x80000000) !== 0;
      let base = ppn;
      let shift = 9 * level;
      if (napot) {
        if (level !== 0 || (ppn & 15) !== 8) return this.f("reserved", level);
        base = ppn - 8;
        shift = 4;
      } else if (shift > 0 && ppn % 2 ** shift !== 0) return this.f("reserved", level);
      if (write ? (lo & 4) === 0 : (lo & 2) === 0) return this.f("permission", level);
      if ((lo & 0x40) === 0 || (write && (lo & 0x80) === 0)) return this.f("permission", level);
      return base + (shift === 0 ? 0 : pfn % 2 ** shift);
    }
  }

  private tce(ctx: IommuWalkCtx, pfn: number, write: boolean): number {
    const t = ctx.tce;
    if (t === undefined) return this.f("reserved", ctx.topLevel);
    const g = t.pageShift - 12;
    const page = Math.floor(pfn / 2 ** g);
    const idx = page - t.itOffset;
    if (idx < 0 || idx >= t.itSize) return this.f("out_of_range", ctx.topLevel);
    const mask = 2 ** t.levelBits;
    let tpfn = ctx.rootPfn;
    for (let level = ctx.topLevel; ; level--) {
      const i = Math.floor(idx / 2 ** (level * t.levelBits)) % mask;
      const u = this.words(tpfn + Math.floor(i / 512));
      const w = (i % 512) * 2;
      const hi = bswap(u[w]);
      const lo = bswap(u[w + 1]);
      if (level > 0) {
        if ((lo & 3) !== 3) return this.f("not_present", level);
        tpfn = IommuWalker.pfn12(lo, hi);
        continue;
      }
      if ((lo & 3) === 0) return this.f("not_present", 0);
      if (write ? (lo & 2) === 0 : (lo & 1) === 0) return this.f("permission", 0);
      const base = IommuWalker.pfn12(lo, hi);
      return base - (base % 2 ** g) + (pfn % 2 ** g);
    }
  }
}

function bswap(x: number): number {
  return ((x << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}
