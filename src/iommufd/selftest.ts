import type { IommuDevice } from "../iommu/device.js";
import { MOCK_NESTED_DOMAIN_IOTLB_ID_MAX } from "../iommu/drivers/mock.js";
import {
  IOMMU_VEVENTQ_TYPE_SELFTEST,
  MOCK_DEV_CACHE_ID_MAX,
  mockDevState,
} from "../iommu/drivers/mock-viommu.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import { KFile } from "../kernel/file.js";
import { EBADF, EBADFD, EINVAL, EIO, ENODEV, ENOENT, ENOMEM, EOPNOTSUPP, fail } from "../uapi/errno.js";
import { IOMMU_PGFAULT_FLAGS_LAST_PAGE, IOMMU_PGFAULT_FLAGS_PASID_VALID } from "../uapi/iommufd.js";
import { defineStruct, type FieldDef, fld, structView } from "../uapi/struct.js";
import {
  IOMMUFD_ACCESS_RW_KTHREAD,
  IOMMUFD_ACCESS_RW_WRITE,
  type IommufdAccess,
  iommufdAccessAttach,
  iommufdAccessCreate,
  iommufdAccessDestroy,
  iommufdAccessPinPages,
  iommufdAccessReplace,
  iommufdAccessRw,
  iommufdAccessUnpinPages,
} from "./access.js";
import type { IommufdGlobals } from "./ctx.js";
import {
  getDevice,
  type IommufdDevice,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
} from "./device.js";
import { DMABUF_KIND, type DmaBuf, testDmabufGet } from "./dmabuf.js";
import { reportDeviceFault } from "./eventq.js";
import { getHwptPaging, type Hwpt } from "./hw-pagetable.js";
import { getIoas, taskMm } from "./ioas.js";
import { IommufdObject } from "./object.js";
import {
  IOMMU_NO_PASID,
  iommufdDevicePasidAttach,
  iommufdDevicePasidDetach,
  iommufdDevicePasidReplace,
  pasidHwpt,
} from "./pasid.js";
import type { Ucmd } from "./ucmd.js";

// Layout of struct iommu_test_cmd (drivers/iommu/iommufd/iommufd_test.h):
// size, op, id, __reserved, then a 48-byte union at 16, then `last` at 64; sizeof 72.
export const iommu_test_cmd = defineStruct({
  name: "iommu_test_cmd",
  size: 72,
  fields: [
    fld("size", 0, 4, "in"),
    fld("op", 4, 4, "in"),
    fld("id", 8, 4, "in", { kind: "id" }),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("u16", 16, 8, "inout", { fmt: "hex" }),
    fld("u24", 24, 8, "inout", { fmt: "hex" }),
    fld("u32", 32, 8, "inout", { fmt: "hex" }),
    fld("u40", 40, 8, "inout", { fmt: "hex" }),
    fld("u48", 48, 8, "inout", { fmt: "hex" }),
    fld("u56", 56, 8, "inout", { fmt: "hex" }),
    fld("last", 64, 4, "in"),
  ],
});

/**
 * The members of iommu_test_cmd's union, one struct table each, at their
 * offsets in the whole command (the union starts at 16), with the kernel's
 * member and field names: a handler reads `structView(test_check_map, kbuf).uptr`
 * rather than a byte offset.
 */
function testMember<const F extends readonly FieldDef[]>(member: string, fields: F) {
  return defineStruct({ name: `iommu_test_cmd.${member}`, size: iommu_test_cmd.size, fields });
}
const U = 16;
export const test_add_reserved = testMember("add_reserved", [
  fld("start", U, 8, "in"),
  fld("length", U + 8, 8, "in"),
]);
export const test_mock_domain_flags = testMember("mock_domain_flags", [
  fld("out_stdev_id", U, 4, "out"),
  fld("out_hwpt_id", U + 4, 4, "out"),
  fld("out_idev_id", U + 8, 4, "out"),
  fld("dev_flags", U + 12, 4, "in"),
]);
export const test_mock_domain_replace = testMember("mock_domain_replace", [fld("pt_id", U, 4, "inout")]);
export const test_check_map = testMember("check_map", [
  fld("iova", U, 8, "in"),
  fld("length", U + 8, 8, "in"),
  fld("uptr", U + 16, 8, "in"),
]);
export const test_check_refs = testMember("check_refs", [
  fld("length", U, 8, "in"),
  fld("uptr", U + 8, 8, "in"),
  fld("refs", U + 16, 4, "in"),
]);
export const test_create_access = testMember("create_access", [
  fld("out_access_fd", U, 4, "out"),
  fld("flags", U + 4, 4, "in"),
]);
export const test_destroy_access_pages = testMember("destroy_access_pages", [
  fld("access_pages_id", U, 4, "in"),
]);
export const test_access_pages = testMember("access_pages", [
  fld("flags", U, 4, "in"),
  fld("out_access_pages_id", U + 4, 4, "out"),
  fld("iova", U + 8, 8, "in"),
  fld("length", U + 16, 8, "in"),
  fld("uptr", U + 24, 8, "in"),
]);
export const test_access_rw = testMember("access_rw", [
  fld("iova", U, 8, "in"),
  fld("length", U + 8, 8, "in"),
  fld("uptr", U + 16, 8, "in"),
  fld("flags", U + 24, 4, "in"),
]);
export const test_access_replace_ioas = testMember("access_replace_ioas", [fld("ioas_id", U, 4, "in")]);
export const test_dirty = testMember("dirty", [
  fld("flags", U, 4, "in"),
  fld("iova", U + 8, 8, "in"),
  fld("length", U + 16, 8, "in"),
  fld("page_size", U + 24, 8, "in"),
  fld("uptr", U + 32, 8, "in"),
  fld("out_nr_dirty", U + 40, 8, "out"),
]);
export const test_check_iotlb = testMember("check_iotlb", [
  fld("id", U, 4, "in"),
  fld("iotlb", U + 4, 4, "in"),
]);
export const test_trigger_iopf = testMember("trigger_iopf", [
  fld("dev_id", U, 4, "in"),
  fld("pasid", U + 4, 4, "in"),
  fld("grpid", U + 8, 4, "in"),
  fld("perm", U + 12, 4, "in"),
  fld("addr", U + 16, 8, "in"),
]);
export const test_check_dev_cache = testMember("check_dev_cache", [
  fld("id", U, 4, "in"),
  fld("cache", U + 4, 4, "in"),
]);
export const test_trigger_vevent = testMember("trigger_vevent", [fld("dev_id", U, 4, "in")]);
/** The vEVENT payload of IOMMU_VEVENTQ_TYPE_SELFTEST (iommufd_test.h). */
export const iommu_viommu_event_selftest = defineStruct({
  name: "iommu_viommu_event_selftest",
  size: 4,
  fields: [fld("virt_id", 0, 4, "out")],
});
/** pasid_attach, pasid_replace (pt_id written back) and pasid_check (hwpt_id at the same place). */
export const test_pasid_attach = testMember("pasid_attach", [
  fld("pasid", U, 4, "in"),
  fld("pt_id", U + 4, 4, "inout"),
]);
export const test_pasid_detach = testMember("pasid_detach", [fld("pasid", U, 4, "in")]);
export const test_pasid_check = testMember("pasid_check", [
  fld("pasid", U, 4, "in"),
  fld("hwpt_id", U + 4, 4, "in"),
]);
export const test_dmabuf_get = testMember("dmabuf_get", [
  fld("length", U, 4, "in"),
  fld("open_flags", U + 4, 4, "in"),
]);
export const test_dmabuf_revoke = testMember("dmabuf_revoke", [
  fld("dmabuf_fd", U, 4, "in", { kind: "fd" }),
  fld("revoked", U + 4, 4, "in"),
]);

/** The ucmd of IOMMU_TEST_CMD (header fields typed; union members through the tables above). */
type TestUcmd = Ucmd<typeof iommu_test_cmd>;

export const IOMMU_TEST_OP_ADD_RESERVED = 1;
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
export const IOMMU_TEST_OP_MD_CHECK_MAP = 3;
export const IOMMU_TEST_OP_MD_CHECK_REFS = 4;
export const IOMMU_TEST_OP_CREATE_ACCESS = 5;
export const IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6;
export const IOMMU_TEST_OP_ACCESS_PAGES = 7;
export const IOMMU_TEST_OP_ACCESS_RW = 8;
export const IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9;
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
export const IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11;
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
export const IOMMU_TEST_OP_DIRTY = 13;
export const IOMMU_TEST_OP_MD_CHECK_IOTLB = 14;
export const IOMMU_TEST_OP_TRIGGER_IOPF = 15;
export const IOMMU_TEST_OP_DEV_CHECK_CACHE = 16;
export const IOMMU_TEST_OP_TRIGGER_VEVENT = 17;
export const IOMMU_TEST_OP_PASID_ATTACH = 18;
export const IOMMU_TEST_OP_PASID_REPLACE = 19;
export const IOMMU_TEST_OP_PASID_DETACH = 20;
export const IOMMU_TEST_OP_PASID_CHECK_HWPT = 21;
export const IOMMU_TEST_OP_DMABUF_GET = 22;
export const IOMMU_TEST_OP_DMABUF_REVOKE = 23;

export const MOCK_FLAGS_ACCESS_WRITE = 1 << 0;
export const MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
export const MOCK_ACCESS_RW_WRITE = 1 << 0;
export const MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
export const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0;
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1;
export const MOCK_FLAGS_DEVICE_PASID = 1 << 2;
const MOCK_IO_PAGE = 2048n;

/** The selftest "stdev" object: a mock device bound and attached, destroyable by IOMMU_DESTROY. */
export class SelftestDev extends IommufdObject {
  readonly type = "SELFTEST" as const;
  idev: IommufdDevice | undefined;
  constructor(
    readonly iommu: IommuSubsystem,
    readonly dev: IommuDevice,
  ) {
    super();
  }
  destroy(): void {
    if (this.idev !== undefined) iommufdDeviceUnbind(this.idev);
    this.idev = undefined;
    this.iommu.removeDevice(this.dev);
  }
}

/** IOMMU_TEST_CMD: the hooks the kernel selftests drive (CONFIG_IOMMUFD_TEST). */
export function testCmd(u: TestUcmd): number {
  const op = u.cmd.op;
  switch (op) {
    case IOMMU_TEST_OP_ADD_RESERVED: {
      const ioas = getIoas(u.ictx, u.cmd.id);
      const c = structView(test_add_reserved, u.kbuf);
      ioas.iopt.reserve(c.start, c.start + c.length - 1n, { kind: "test" });
      return 0;
    }
    case IOMMU_TEST_OP_MOCK_DOMAIN:
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return mockDomain(
        u,
        op === IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? structView(test_mock_domain_flags, u.kbuf).dev_flags : 0,
      );
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: {
      const s = u.ictx.objects.get(u.cmd.id, "SELFTEST", "mock device");
      const c = structView(test_mock_domain_replace, u.kbuf);
      c.pt_id = iommufdDeviceReplace(s.idev!, c.pt_id);
      u.respond();
      return 0;
    }
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return checkMap(u);
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      return checkRefs(u);
    case IOMMU_TEST_OP_CREATE_ACCESS:
      return createAccess(u);
    case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: {
      const sa = testAccess(u);
      const id = structView(test_destroy_access_pages, u.kbuf).access_pages_id;
      const item = sa.items.get(id);
      if (item === undefined) fail(ENOENT, `access pages item ${id} does not exist`);
      iommufdAccessUnpinPages(sa.access, item.iova, item.length);
      sa.items.delete(id);
      return 0;
    }
    case IOMMU_TEST_OP_ACCESS_PAGES:
      return accessPages(u);
    case IOMMU_TEST_OP_ACCESS_RW:
      return accessRw(u);
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      // The kernel's temporary pin-batch limit changes only internal batching; nothing to model.
      return 0;
    case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: {
      const sa = testAccess(u);
      iommufdAccessReplace(sa.access, structView(test_access_replace_ioas, u.kbuf).ioas_id);
      return 0;
    }
    case IOMMU_TEST_OP_DIRTY:
      return dirty(u);
    case IOMMU_TEST_OP_MD_CHECK_IOTLB:
      return checkIotlb(u);
    case IOMMU_TEST_OP_TRIGGER_IOPF:
      return triggerIopf(u);
    case IOMMU_TEST_OP_DEV_CHECK_CACHE:
      return checkDevCache(u);
    case IOMMU_TEST_OP_TRIGGER_VEVENT:
      return triggerVevent(u);
    case IOMMU_TEST_OP_PASID_ATTACH:
    case IOMMU_TEST_OP_PASID_REPLACE: {
      const sd = selftestDev(u);
      const c = structView(test_pasid_attach, u.kbuf);
      const pasid = c.pasid;
      const attach = op === IOMMU_TEST_OP_PASID_ATTACH;
      c.pt_id = attach
        ? iommufdDevicePasidAttach(sd.idev!, pasid, c.pt_id)
        : iommufdDevicePasidReplace(sd.idev!, pasid, c.pt_id);
      try {
        u.respond();
      } catch (e) {
        // The attach is undone when its result cannot be reported; a replace stays.
        if (attach) iommufdDevicePasidDetach(sd.idev!, pasid);
        throw e;
      }
      return 0;
    }
    case IOMMU_TEST_OP_PASID_DETACH:
      iommufdDevicePasidDetach(selftestDev(u).idev!, structView(test_pasid_detach, u.kbuf).pasid);
      return 0;
    case IOMMU_TEST_OP_PASID_CHECK_HWPT:
      return pasidCheckHwpt(u);
    case IOMMU_TEST_OP_DMABUF_GET: {
      // dma_buf_fd(): the new fd is the ioctl's return value
      const file = testDmabufGet(u.ictx.k, structView(test_dmabuf_get, u.kbuf).length);
      return u.task.fdInstall(file);
    }
    case IOMMU_TEST_OP_DMABUF_REVOKE:
      return dmabufRevoke(u);
    default:
      return fail(EOPNOTSUPP, `IOMMU_TEST_CMD op ${op} is not modelled`);
  }
}

function mockDomain(u: TestUcmd, devFlags: number): number {
  const known = MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA | MOCK_FLAGS_DEVICE_PASID;
  if ((devFlags & ~known) !== 0) fail(EINVAL, `unknown mock device flags 0x${devFlags.toString(16)}`);
  const iommu = u.ictx.globals.iommu;
  if (iommu === undefined || iommu.driver?.name !== "mock") {
    fail(ENODEV, 'mock devices need a machine with iommu: "mock"');
  }
  const dev = iommu.createMockDevice({
    noDirty: (devFlags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0,
    hugeIova: (devFlags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0,
    pasid: (devFlags & MOCK_FLAGS_DEVICE_PASID) !== 0,
  });
  const s = new SelftestDev(iommu, dev);
  u.createObject(s, () => {
    s.idev = iommufdDeviceBind(u.ictx, dev, { mock: true });
    // The mock_domain member's ioas_id is the command's id.
    const hwptId = iommufdDeviceAttach(s.idev, u.cmd.id);
    const c = structView(test_mock_domain_flags, u.kbuf);
    c.out_stdev_id = s.id;
    c.out_hwpt_id = hwptId;
    c.out_idev_id = s.idev.id;
    u.respond();
  });
  return 0;
}

/** MD_CHECK_MAP: every mock page of [iova, iova+length) translates to the user's memory. */
function checkMap(u: TestUcmd): number {
  const { iova, length, uptr } = structView(test_check_map, u.kbuf);
  if (iova % MOCK_IO_PAGE !== 0n || length % MOCK_IO_PAGE !== 0n || uptr % MOCK_IO_PAGE !== 0n) {
    fail(EINVAL, "CHECK_MAP arguments must be MOCK_IO_PAGE_SIZE aligned");
  }
  const hwpt = getHwptPaging(u.ictx, u.cmd.id);
  const mm = taskMm(u.task) as unknown as { translate(va: bigint): bigint | null };
  for (let off = 0n; off < length; off += MOCK_IO_PAGE) {
    const pa = hwpt.domain.iovaToPhys(iova + off);
    const want = mm.translate(uptr + off);
    if (want === null || pa !== want) {
      fail(
        EINVAL,
        `IOVA 0x${(iova + off).toString(16)} maps to 0x${pa.toString(16)}, user memory is at ${want === null ? "nothing" : `0x${want.toString(16)}`}`,
      );
    }
  }
  return 0;
}

/** How many iommufd pins (pages objects of every context) hold this pfn. */
function iommufdPins(g: IommufdGlobals, pfn: number): number {
  let n = 0;
  // A pages object shared by COPY between IOASes pins its pages once.
  const seen = new Set<unknown>();
  for (const ictx of g.contexts) {
    for (const o of ictx.objects.values()) {
      const iopt = (o as { iopt?: { areas: { all(): Iterable<{ value: { pages: unknown } }> } } }).iopt;
      if (iopt === undefined) continue;
      for (const a of iopt.areas.all()) {
        const p = a.value.pages as { forEachPinned(fn: (pfn: number, n: number) => void): void };
        if (seen.has(p)) continue;
        seen.add(p);
        p.forEachPinned((start, len) => {
          if (pfn >= start && pfn < start + len) n++;
        });
      }
    }
  }
  return n;
}

/** MD_CHECK_REFS: each page of the user buffer is pinned `refs` times by iommufd. */
function checkRefs(u: TestUcmd): number {
  const { length, uptr, refs } = structView(test_check_refs, u.kbuf);
  if (length % 4096n !== 0n || uptr % 4096n !== 0n) fail(EINVAL, "CHECK_REFS arguments must be page aligned");
  const mm = taskMm(u.task) as unknown as { translate(va: bigint): bigint | null };
  const pinsSeen = new Map<number, number>();
  for (let off = 0n; off < length; off += 4096n) {
    const pa = mm.translate(uptr + off);
    if (pa === null) {
      if (refs !== 0)
        fail(EIO, `page 0x${(uptr + off).toString(16)} is not populated, expected ${refs} pin(s)`);
      continue;
    }
    const pfn = Number(pa / 4096n);
    const have = pinsSeen.get(pfn) ?? iommufdPins(u.ictx.globals, pfn);
    pinsSeen.set(pfn, have);
    if (have !== refs)
      fail(EIO, `page 0x${(uptr + off).toString(16)} has ${have} iommufd pin(s), expected ${refs}`);
  }
  return 0;
}

/** iommufd_test_dmabuf_revoke(): dma_buf_get() (EBADF, EINVAL), then only the selftest's own. */
function dmabufRevoke(u: TestUcmd): number {
  const c = structView(test_dmabuf_revoke, u.kbuf);
  const fd = c.dmabuf_fd;
  const f = u.task.fds[fd];
  if (f === undefined) fail(EBADF, `fd ${fd} is not open`);
  if (f.kind !== DMABUF_KIND) fail(EINVAL, `fd ${fd} is not a dma-buf`);
  (f.priv as DmaBuf).setRevoked(c.revoked !== 0);
  return 0;
}

/** The test access behind an fd (IOMMU_TEST_OP_CREATE_ACCESS). */
interface TestAccess {
  access: IommufdAccess;
  items: Map<number, { iova: bigint; length: bigint }>;
  nextItem: number;
}

const TEST_ACCESS_KIND = "iommufd-test-access";

function testAccess(u: TestUcmd): TestAccess {
  // The access ops name the access by its fd in the command's id.
  const fd = u.cmd.id | 0;
  const f = u.task.fds[fd];
  if (f === undefined || f.kind !== TEST_ACCESS_KIND) fail(EBADFD, `fd ${fd} is not a selftest access`);
  return f.priv as TestAccess;
}

function createAccess(u: TestUcmd): number {
  const c = structView(test_create_access, u.kbuf);
  const flags = c.flags;
  if ((flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0) fail(EOPNOTSUPP, "unknown access flags");
  const sa = { items: new Map(), nextItem: 1 } as unknown as TestAccess;
  const access = iommufdAccessCreate(u.ictx, {
    needsPinPages: (flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0,
    unmap: (iova, length) => {
      const last = iova + length - 1n;
      for (const [id, it] of [...sa.items]) {
        if (it.iova > last || it.iova + it.length - 1n < iova) continue;
        iommufdAccessUnpinPages(sa.access, it.iova, it.length);
        sa.items.delete(id);
      }
    },
  });
  sa.access = access;
  try {
    iommufdAccessAttach(access, u.cmd.id);
  } catch (e) {
    iommufdAccessDestroy(access);
    throw e;
  }
  const file = new KFile(
    {
      kind: TEST_ACCESS_KIND,
      release: () => {
        for (const it of sa.items.values()) iommufdAccessUnpinPages(access, it.iova, it.length);
        sa.items.clear();
        iommufdAccessDestroy(access);
      },
    },
    sa,
    "anon_inode:[iommufd_test_staccess]",
    2,
  );
  const fd = u.task.fdInstall(file);
  c.out_access_fd = fd;
  try {
    u.respond();
  } catch (e) {
    u.task.fdClose(fd);
    throw e;
  }
  return 0;
}

function accessPages(u: TestUcmd): number {
  const sa = testAccess(u);
  const c = structView(test_access_pages, u.kbuf);
  const flags = c.flags;
  if ((flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ)) !== 0) fail(EOPNOTSUPP, "unknown flags");
  if (!sa.access.ops.needsPinPages) fail(EOPNOTSUPP, "this access was created without NEEDS_PIN_PAGES");
  const { iova, length } = c;
  if (length > 16n << 20n) fail(ENOMEM, "ACCESS_PAGES is limited to 16 MiB");
  iommufdAccessPinPages(
    sa.access,
    iova,
    length,
    flags & MOCK_FLAGS_ACCESS_WRITE ? IOMMUFD_ACCESS_RW_WRITE : 0,
  );
  const id = sa.nextItem++;
  sa.items.set(id, { iova, length });
  c.out_access_pages_id = id;
  u.respond();
  return 0;
}

function accessRw(u: TestUcmd): number {
  const sa = testAccess(u);
  const { iova, length, uptr, flags } = structView(test_access_rw, u.kbuf);
  if ((flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH)) !== 0) fail(EOPNOTSUPP, "unknown flags");
  if (length > 16n << 20n) fail(ENOMEM, "ACCESS_RW is limited to 16 MiB");
  const write = (flags & MOCK_ACCESS_RW_WRITE) !== 0;
  const rwFlags =
    (write ? IOMMUFD_ACCESS_RW_WRITE : 0) |
    (flags & MOCK_ACCESS_RW_SLOW_PATH ? IOMMUFD_ACCESS_RW_KTHREAD : 0);
  if (write) {
    const buf = u.task.copyFromUser(uptr, Number(length));
    iommufdAccessRw(sa.access, iova, buf, rwFlags);
  } else {
    const buf = new Uint8Array(Number(length));
    iommufdAccessRw(sa.access, iova, buf, rwFlags);
    u.task.copyToUser(uptr, buf);
  }
  return 0;
}

/** IOMMU_TEST_OP_DIRTY: mark the IOPTEs behind each set bit of the user's bitmap dirty. */
function dirty(u: TestUcmd): number {
  const c = structView(test_dirty, u.kbuf);
  const { iova, length, uptr } = c;
  const pageSize = c.page_size;
  if (pageSize === 0n || length === 0n || iova % pageSize !== 0n || length % pageSize !== 0n || uptr === 0n) {
    fail(EINVAL, "DIRTY: page_size, length, iova or uptr is invalid");
  }
  const hwpt = getHwptPaging(u.ictx, u.cmd.id);
  const d = hwpt.domain;
  if (!d.dirtyTracking || d.pt === undefined) fail(EINVAL, "DIRTY: dirty tracking is off on this HWPT");
  const nbits = Number(length / pageSize);
  const bm = u.task.copyFromUser(uptr, Math.ceil(nbits / 8));
  const unit = BigInt(d.pt.unitLg2);
  let count = 0n;
  for (let i = 0; i < nbits; i++) {
    if ((bm[i >> 3] & (1 << (i & 7))) === 0) continue;
    const at = iova + BigInt(i) * pageSize;
    if (d.pt.setDirty(Number(at >> unit)) === 0) count++;
  }
  c.out_nr_dirty = count;
  u.respond();
  return 0;
}

function selftestDev(u: TestUcmd): SelftestDev {
  return u.ictx.objects.get(u.cmd.id, "SELFTEST", "mock device");
}

/** MD_CHECK_IOTLB: a mock nested domain's IOTLB entry has the value (EINVAL otherwise). */
function checkIotlb(u: TestUcmd): number {
  const h = u.ictx.objects.get(u.cmd.id, "HWPT_NESTED", "nested HWPT");
  const iotlb = h.domain.priv.iotlb as number[] | undefined;
  if (iotlb === undefined) fail(EINVAL, `HWPT ${h.id} is not a mock nested domain`);
  const { id, iotlb: want } = structView(test_check_iotlb, u.kbuf);
  if (id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX || iotlb[id] !== want) {
    fail(
      EINVAL,
      `mock IOTLB entry ${id} is 0x${(iotlb[id] ?? 0).toString(16)}, expected 0x${want.toString(16)}`,
    );
  }
  return 0;
}

/** DEV_CHECK_CACHE: a mock device's cache entry (cleared by vIOMMU invalidation) has the value. */
function checkDevCache(u: TestUcmd): number {
  const idev = getDevice(u.ictx, u.cmd.id);
  if (idev.dev === undefined) fail(EINVAL, `${idev.name} is not a mock device`);
  const cache = mockDevState(idev.dev).cache;
  const { id, cache: want } = structView(test_check_dev_cache, u.kbuf);
  if (id > MOCK_DEV_CACHE_ID_MAX || cache[id] !== want) {
    fail(
      EINVAL,
      `mock device cache entry ${id} is 0x${(cache[id] ?? 0).toString(16)}, expected 0x${want.toString(16)}`,
    );
  }
  return 0;
}

/**
 * TRIGGER_IOPF: the device raises one page request (LAST_PAGE; PASID_VALID
 * for a non-zero PASID). Always 0: a request nobody handles is answered by
 * the IOMMU core.
 */
function triggerIopf(u: TestUcmd): number {
  const c = structView(test_trigger_iopf, u.kbuf);
  const idev = getDevice(u.ictx, c.dev_id);
  const pasid = c.pasid;
  let flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
  if (pasid !== IOMMU_NO_PASID) flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
  // The mock sets user_pasid_table: PASID requests may go to a nested domain on the RID.
  const userPasidTable = idev.dev?.driver.name === "mock";
  reportDeviceFault(idev, { flags, pasid, grpid: c.grpid, perm: c.perm, addr: c.addr }, userPasidTable);
  return 0;
}

/**
 * TRIGGER_VEVENT: the device, attached to a nested domain of a vIOMMU,
 * reports one IOMMU_VEVENTQ_TYPE_SELFTEST event carrying its virtual ID
 * (ENOENT when it is not; EOPNOTSUPP with no such vEVENTQ).
 */
function triggerVevent(u: TestUcmd): number {
  const idev = getDevice(u.ictx, structView(test_trigger_vevent, u.kbuf).dev_id);
  const dev = idev.dev;
  const s = dev === undefined ? undefined : mockDevState(dev);
  if (dev === undefined || s?.viommu === undefined || s.domain !== dev.domain || s.vdevId === 0n) {
    fail(ENOENT, `${idev.name} is not attached to a nested domain of a vIOMMU`);
  }
  const data = new Uint8Array(iommu_viommu_event_selftest.size);
  structView(iommu_viommu_event_selftest, data).virt_id = Number(s.vdevId & 0xffffffffn);
  const rc = s.viommu.reportEvent(IOMMU_VEVENTQ_TYPE_SELFTEST, data);
  if (rc < 0) fail(-rc, `vIOMMU has no vEVENTQ of type IOMMU_VEVENTQ_TYPE_SELFTEST`);
  return 0;
}

/** PASID_CHECK_HWPT: the PASID is attached to hwpt_id (0: attached to nothing), else EINVAL. */
function pasidCheckHwpt(u: TestUcmd): number {
  const sd = selftestDev(u);
  const { pasid, hwpt_id: want } = structView(test_pasid_check, u.kbuf);
  const have: Hwpt | undefined = pasidHwpt(sd.idev!, pasid);
  if (want === 0) {
    if (have !== undefined) fail(EINVAL, `PASID ${pasid} is attached to HWPT ${have.id}`);
    return 0;
  }
  const h = u.ictx.objects.get(want, undefined, "HWPT");
  if (h.type !== "HWPT_PAGING" && h.type !== "HWPT_NESTED")
    fail(EINVAL, `id ${want} is a ${h.type}, not a HWPT`);
  if (have !== h)
    fail(
      EINVAL,
      `PASID ${pasid} is attached to ${have === undefined ? "nothing" : `HWPT ${have.id}`}, not ${h.id}`,
    );
  return 0;
}
