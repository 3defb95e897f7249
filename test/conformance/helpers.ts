import { expect } from "vitest";
import { Machine, type MachineOptions } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { errnoName } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/iommufd.js";
import { decode, encode, type StructDef, type StructInput } from "../../src/uapi/struct.js";

export const P = 4096n;
export const MOCK_PAGE = 2048n;
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
export const U64_MAX = (1n << 64n) - 1n;
export const PROT_RW = 3;
export const MAP_PRIVATE_ANON = 0x22;
export const MAP_HUGETLB = 0x40000;
export const FIXED = 1;
export const WRITE = 2;
export const READ = 4;
export const RW = WRITE | READ;

/** An ioctl with a struct: returns the return code and the struct as the kernel left it. */
export function call<D extends StructDef>(
  p: Process,
  fd: number,
  req: number,
  def: D,
  v: StructInput<D>,
  size = def.size,
) {
  // Every iommufd struct starts with its u32 size.
  const buf = encode(def, { size, ...v } as StructInput<D>, Math.max(size, 4));
  const rc = p.ioctl(fd, req, buf);
  return { rc, out: decode(def, buf), buf };
}

export function expectErrno(p: Process, rc: number | bigint, errno: number): void {
  if (Number(rc) !== -errno) {
    throw new Error(`expected -${errnoName(errno)}, got ${rc} (${JSON.stringify(p.lastError())})`);
  }
}

export function ok(p: Process, rc: number | bigint): void {
  if (Number(rc) < 0)
    throw new Error(`expected success, got ${errnoName(Number(rc))}: ${p.lastError()?.reason}`);
}

export interface Env {
  m: Machine;
  p: Process;
  fd: number;
  /** Counters right after setup (default DMA domains hold table frames on amd/intel). */
  base: ReturnType<typeof state>;
}

export function setup(opts: MachineOptions & { caps?: string[]; rlimitMemlock?: bigint } = {}): Env {
  const { caps, rlimitMemlock, ...mopts } = opts;
  const m = new Machine({ iommu: "mock", kconfig: { IOMMUFD_TEST: true }, ...mopts });
  const p = m.spawn({ caps: caps ?? [], rlimitMemlock: rlimitMemlock ?? 64n << 20n });
  const fd = p.open("/dev/iommu");
  ok(p, fd);
  const e = { m, p, fd } as Env;
  e.base = state(e);
  return e;
}

export function ioasAlloc(e: Env): number {
  const r = call(e.p, e.fd, U.IOMMU_IOAS_ALLOC, U.iommu_ioas_alloc, {});
  ok(e.p, r.rc);
  return Number(r.out.out_ioas_id);
}

export function mmap(e: Env, len: bigint, flags = 0): bigint {
  const va = e.p.mmap(0n, len, PROT_RW, MAP_PRIVATE_ANON | flags);
  if (va < 0n) throw new Error(`mmap failed ${va}`);
  return va;
}

/** Fault every page in (write a byte to each) so translations exist. */
export function touch(e: Env, va: bigint, len: bigint): void {
  for (let o = 0n; o < len; o += P)
    ok(e.p, e.p.writeMemory(va + o, new Uint8Array([Number((o / P) & 0xffn) + 1])));
}

export function map(e: Env, ioas: number, va: bigint, len: bigint, iova?: bigint, flags = RW) {
  const r = call(e.p, e.fd, U.IOMMU_IOAS_MAP, U.iommu_ioas_map, {
    flags: flags | (iova !== undefined ? FIXED : 0),
    ioas_id: ioas,
    user_va: va,
    length: len,
    iova: iova ?? 0n,
  });
  return { rc: r.rc, iova: r.out.iova };
}

export function unmap(e: Env, ioas: number, iova: bigint, len: bigint) {
  const r = call(e.p, e.fd, U.IOMMU_IOAS_UNMAP, U.iommu_ioas_unmap, { ioas_id: ioas, iova, length: len });
  return { rc: r.rc, length: r.out.length };
}

export function destroy(e: Env, id: number): number {
  return call(e.p, e.fd, U.IOMMU_DESTROY, U.iommu_destroy, { id }).rc;
}

// --- IOMMU_TEST_CMD (iommufd_test.h layout, 72 bytes) -------------------------

export function testCmd(e: Env, op: number, id: number, fields: [number, 4 | 8, bigint | number][] = []) {
  const b = new Uint8Array(72);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 72, true);
  dv.setUint32(4, op, true);
  dv.setUint32(8, id, true);
  for (const [off, sz, v] of fields) {
    if (sz === 4) dv.setUint32(off, Number(v), true);
    else dv.setBigUint64(off, BigInt(v), true);
  }
  const rc = e.p.ioctl(e.fd, U.IOMMU_TEST_CMD, b);
  return {
    rc,
    u32: (off: number) => dv.getUint32(off, true),
    u64: (off: number) => dv.getBigUint64(off, true),
  };
}

export function mockDomain(e: Env, ptId: number, devFlags?: number) {
  const r = devFlags === undefined ? testCmd(e, 2, ptId) : testCmd(e, 12, ptId, [[28, 4, devFlags]]);
  return { rc: r.rc, stdev: r.u32(16), hwpt: r.u32(20), idev: r.u32(24) };
}

export function addReserved(e: Env, ioas: number, start: bigint, len: bigint) {
  return testCmd(e, 1, ioas, [
    [16, 8, start],
    [24, 8, len],
  ]).rc;
}

export function checkMap(e: Env, hwpt: number, iova: bigint, len: bigint, uptr: bigint) {
  return testCmd(e, 3, hwpt, [
    [16, 8, iova],
    [24, 8, len],
    [32, 8, uptr],
  ]).rc;
}

export function checkRefs(e: Env, uptr: bigint, len: bigint, refs: number) {
  return testCmd(e, 4, 0, [
    [16, 8, len],
    [24, 8, uptr],
    [32, 4, refs],
  ]).rc;
}

export function createAccess(e: Env, ioas: number, needsPin: boolean) {
  const r = testCmd(e, 5, ioas, [[20, 4, needsPin ? 1 : 0]]);
  return { rc: r.rc, fd: r.u32(16) };
}

export function accessPages(e: Env, accessFd: number, iova: bigint, len: bigint, flags = 0) {
  const r = testCmd(e, 7, accessFd, [
    [16, 4, flags],
    [24, 8, iova],
    [32, 8, len],
  ]);
  return { rc: r.rc, id: r.u32(20) };
}

export function destroyAccessPages(e: Env, accessFd: number, id: number) {
  return testCmd(e, 6, accessFd, [[16, 4, id]]).rc;
}

export function accessRw(e: Env, accessFd: number, iova: bigint, len: bigint, uptr: bigint, flags: number) {
  return testCmd(e, 8, accessFd, [
    [16, 8, iova],
    [24, 8, len],
    [32, 8, uptr],
    [40, 4, flags],
  ]).rc;
}

/** The leak-relevant state: counters and invariants. */
export function state(e: Pick<Env, "m">) {
  const c = e.m.debug.counters();
  return { pinned: c.pinnedPages, objects: c.objects, areas: c.areas, ptFrames: c.ptFrames };
}

export function expectClean(e: Env): void {
  expect(e.m.debug.checkInvariants()).toEqual([]);
}

/** After exit nothing may remain. */
export function expectNoLeaks(e: Env): void {
  e.p.exit();
  const c = e.m.debug.counters();
  expect({ pinned: c.pinnedPages, objects: c.objects, areas: c.areas, ptFrames: c.ptFrames }).toEqual({
    pinned: 0,
    objects: 0,
    areas: 0,
    ptFrames: e.base.ptFrames,
  });
  expect([c.viommus ?? 0, c.pendingEvents ?? 0]).toEqual([0, 0]);
  expect(e.m.debug.checkInvariants()).toEqual([]);
}

/** IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE. */
export function replace(e: Env, stdev: number, pt: number): number {
  return testCmd(e, 10, stdev, [[16, 4, pt]]).rc;
}

export { U };

// --- vIOMMU, event queues, PASID (iommufd_utils.h wrappers) -----------------

export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
export const IOMMU_TEST_DEV_CACHE_DEFAULT = 0xbaddad;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
export const IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xdeadbeef;
export const NEST_PARENT = 1;
export const DIRTY_TRACKING = 2;
export const FAULT_ID_VALID = 4;
export const ALLOC_PASID = 8;
export const MOCK_FLAGS_DEVICE_PASID = 4;

/** Bytes in a fresh page of user memory; returns the user pointer. */
export function userBytes(e: Env, bytes: Uint8Array): bigint {
  const va = mmap(e, P);
  ok(e.p, e.p.writeMemory(va, bytes));
  return va;
}

export function u32s(...v: number[]): Uint8Array {
  const b = new Uint8Array(v.length * 4);
  const dv = new DataView(b.buffer);
  for (const [i, x] of v.entries()) dv.setUint32(i * 4, x >>> 0, true);
  return b;
}

export function hwptAlloc(
  e: Env,
  dev: number,
  pt: number,
  flags = 0,
  o: { dataType?: number; data?: Uint8Array; dataLen?: number; uptr?: bigint; faultId?: number } = {},
) {
  const uptr = o.uptr ?? (o.data !== undefined ? userBytes(e, o.data) : 0n);
  const r = call(e.p, e.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
    flags,
    dev_id: dev,
    pt_id: pt,
    data_type: o.dataType ?? 0,
    data_len: o.dataLen ?? o.data?.length ?? 0,
    data_uptr: uptr,
    fault_id: o.faultId ?? 0,
  });
  return { rc: r.rc, id: Number(r.out.out_hwpt_id) };
}

/** A nested HWPT with struct iommu_hwpt_selftest { iotlb }. */
export function nestedAlloc(e: Env, dev: number, parent: number, flags = 0, faultId = 0) {
  return hwptAlloc(e, dev, parent, flags, {
    dataType: IOMMU_HWPT_DATA_SELFTEST,
    data: u32s(IOMMU_TEST_IOTLB_DEFAULT),
    faultId,
  });
}

export function viommuAlloc(e: Env, dev: number, hwpt: number, type: number, data?: Uint8Array) {
  const uptr = data !== undefined ? userBytes(e, data) : 0n;
  const r = call(e.p, e.fd, U.IOMMU_VIOMMU_ALLOC, U.iommu_viommu_alloc, {
    type,
    dev_id: dev,
    hwpt_id: hwpt,
    data_len: data?.length ?? 0,
    data_uptr: uptr,
  });
  return { rc: r.rc, id: Number(r.out.out_viommu_id), uptr };
}

export function vdeviceAlloc(e: Env, viommu: number, dev: number, virtId: bigint) {
  const r = call(e.p, e.fd, U.IOMMU_VDEVICE_ALLOC, U.iommu_vdevice_alloc, {
    viommu_id: viommu,
    dev_id: dev,
    virt_id: virtId,
  });
  return { rc: r.rc, id: Number(r.out.out_vdevice_id) };
}

export function veventqAlloc(e: Env, viommu: number, type: number, depth = 2) {
  const r = call(e.p, e.fd, U.IOMMU_VEVENTQ_ALLOC, U.iommu_veventq_alloc, {
    viommu_id: viommu,
    type,
    veventq_depth: depth,
  });
  return { rc: r.rc, id: Number(r.out.out_veventq_id), fd: Number(r.out.out_veventq_fd) };
}

export function faultAlloc(e: Env, flags = 0) {
  const r = call(e.p, e.fd, U.IOMMU_FAULT_QUEUE_ALLOC, U.iommu_fault_alloc, { flags });
  return { rc: r.rc, id: Number(r.out.out_fault_id), fd: Number(r.out.out_fault_fd) };
}

export function hwQueueAlloc(
  e: Env,
  viommu: number,
  type: number,
  index: number,
  iova: bigint,
  length: bigint,
) {
  const r = call(e.p, e.fd, U.IOMMU_HW_QUEUE_ALLOC, U.iommu_hw_queue_alloc, {
    viommu_id: viommu,
    type,
    index,
    nesting_parent_iova: iova,
    length,
  });
  return { rc: r.rc, id: Number(r.out.out_hw_queue_id) };
}

/** IOMMU_HWPT_INVALIDATE: returns rc and the entry_num written back. */
export function invalidate(
  e: Env,
  id: number,
  dataType: number,
  entryLen: number,
  num: number,
  data?: Uint8Array,
) {
  const uptr = data !== undefined ? userBytes(e, data) : 0n;
  const r = call(e.p, e.fd, U.IOMMU_HWPT_INVALIDATE, U.iommu_hwpt_invalidate, {
    hwpt_id: id,
    data_uptr: uptr,
    data_type: dataType,
    entry_len: entryLen,
    entry_num: num,
  });
  return { rc: r.rc, num: Number(r.out.entry_num) };
}

export function checkIotlb(e: Env, hwpt: number, id: number, value: number) {
  return testCmd(e, 14, hwpt, [
    [16, 4, id],
    [20, 4, value],
  ]).rc;
}

export function triggerIopf(e: Env, dev: number, pasid = 0, grpid = 0x2, perm = 3, addr = 0xdeadbeefn) {
  return testCmd(e, 15, 0, [
    [16, 4, dev],
    [20, 4, pasid],
    [24, 4, grpid],
    [28, 4, perm],
    [32, 8, addr],
  ]).rc;
}

export function checkDevCache(e: Env, dev: number, id: number, value: number) {
  return testCmd(e, 16, dev, [
    [16, 4, id],
    [20, 4, value],
  ]).rc;
}

export function triggerVevent(e: Env, dev: number) {
  return testCmd(e, 17, 0, [[16, 4, dev]]).rc;
}

export function pasidAttach(e: Env, stdev: number, pasid: number, pt: number) {
  return testCmd(e, 18, stdev, [
    [16, 4, pasid],
    [20, 4, pt],
  ]).rc;
}

export function pasidReplace(e: Env, stdev: number, pasid: number, pt: number) {
  return testCmd(e, 19, stdev, [
    [16, 4, pasid],
    [20, 4, pt],
  ]).rc;
}

export function pasidDetach(e: Env, stdev: number, pasid: number) {
  return testCmd(e, 20, stdev, [[16, 4, pasid]]).rc;
}

export function pasidCheck(e: Env, stdev: number, pasid: number, hwpt: number) {
  return testCmd(e, 21, stdev, [
    [16, 4, pasid],
    [20, 4, hwpt],
  ]).rc;
}

/** Counters plus the process's open files: what a failed call must leave as it was. */
export function snap(e: Env) {
  return { ...state(e), fds: e.p.task.openFileCount(), invariants: e.m.debug.checkInvariants() };
}
