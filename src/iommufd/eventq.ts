import { type FileOps, KFile } from "../kernel/file.js";
import type { Task } from "../kernel/task.js";
import { EEXIST, EFAULT, EINVAL, EOPNOTSUPP, ESPIPE, fail } from "../uapi/errno.js";
import {
  IOMMU_PGFAULT_FLAGS_PASID_VALID,
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMUFD_PAGE_RESP_INVALID,
  IOMMUFD_PAGE_RESP_SUCCESS,
  iommu_hwpt_page_response,
  iommu_hwpt_pgfault,
  iommufd_vevent_header,
} from "../uapi/iommufd.js";
import { structView } from "../uapi/struct.js";
import type { IommufdCtx } from "./ctx.js";
import type { IommufdDevice } from "./device.js";
import type { Hwpt } from "./hw-pagetable.js";
import { IommufdObject } from "./object.js";
import type { AttachHandle } from "./pasid.js";
import type { Ucmd, UcmdOf } from "./ucmd.js";
import type { IommufdViommu } from "./viommu.js";

export const PGFAULT_SIZE = iommu_hwpt_pgfault.size;
export const PAGE_RESPONSE_SIZE = iommu_hwpt_page_response.size;
export const VEVENT_HEADER_SIZE = iommufd_vevent_header.size;
const INT_MAX = 0x7fffffff;
const U32_MAX = 0xffffffff;

/** One page request the device raised (an iopf_group with a single LAST_PAGE fault). */
export interface IopfGroup {
  handle: AttachHandle;
  flags: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
  /** The response cookie, once read() delivered it. */
  cookie: number;
}

/** The anonymous file of an event queue: read/write, pread/pwrite refused (nonseekable_open). */
function eventqFops(kind: string, q: IommufdFault | IommufdVeventq): FileOps {
  const ops: FileOps = {
    kind,
    read: (_f, task, len) => q.read(task, len),
    pread: () => fail(ESPIPE, `${kind} files are not seekable (nonseekable_open)`),
    pwrite: () => fail(ESPIPE, `${kind} files are not seekable (nonseekable_open)`),
    release: () => {
      // iommufd_eventq_fops_release(): the file's reference on the object and the context.
      q.refPut();
      q.ictx.put();
    },
  };
  if (q instanceof IommufdFault) ops.write = (_f, task, bytes) => q.write(task, bytes);
  return ops;
}

/**
 * iommufd_eventq_init() then the ucmd's finalize: the file takes +1 on the
 * object and on the context; the fd is installed and written back. Any
 * failure closes the file (dropping what it took) and the caller aborts.
 */
function installEventqFd(
  u: Ucmd,
  q: IommufdFault | IommufdVeventq,
  name: string,
  /** Writes the new object's id and fd into the command's out fields. */
  report: (id: number, fd: number) => void,
) {
  const file = new KFile(eventqFops(name, q), q, `anon_inode:${name}`, 2);
  q.refGet();
  u.ictx.get();
  q.file = file;
  const fd = u.task.fdInstall(file);
  try {
    report(q.id, fd);
    u.respond();
  } catch (e) {
    u.task.fdClose(fd);
    throw e;
  }
  return fd;
}

/**
 * The ucmd create with an event queue fd: the kernel installs the fd only
 * after finalize, so a failure after the model installed it (the finalize
 * fail point) closes it again — the fd never becomes visible.
 */
function createWithFd(u: Ucmd, q: IommufdFault | IommufdVeventq, build: () => number): void {
  let fd = -1;
  u.createObject(
    q,
    () => {
      fd = build();
    },
    // the file's put drops its reference on the object before the object is aborted
    () => {
      if (fd >= 0 && q.file !== undefined && u.task.fds[fd] === q.file) u.task.fdClose(fd);
    },
  );
}

/**
 * struct iommufd_fault (IOMMUFD_OBJ_FAULT): page requests of the HWPTs
 * allocated with its fault_id, read() as struct iommu_hwpt_pgfault records
 * and answered by write() of struct iommu_hwpt_page_response.
 */
export class IommufdFault extends IommufdObject {
  readonly type = "FAULT" as const;
  readonly deliver: IopfGroup[] = [];
  /** Delivered groups waiting for a response, by cookie (xa_alloc from 1, lowest free). */
  readonly response = new Map<number, IopfGroup>();
  file: KFile | undefined;
  /** Responses userspace wrote, by code (for tests and m.debug). */
  readonly responses: { cookie: number; code: number; devId: number }[] = [];
  constructor(readonly ictx: IommufdCtx) {
    super();
  }

  destroy(): void {
    // Every pending group is answered INVALID and freed.
    this.deliver.length = 0;
    this.response.clear();
  }

  /** iommufd_auto_response_faults(): a detached handle's groups are answered INVALID. */
  autoResponse(handle: AttachHandle): void {
    for (let i = this.deliver.length - 1; i >= 0; i--)
      if (this.deliver[i].handle === handle) this.deliver.splice(i, 1);
    for (const [c, g] of [...this.response]) if (g.handle === handle) this.response.delete(c);
  }

  private allocCookie(): number {
    for (let c = 1; c <= U32_MAX; c++) if (!this.response.has(c)) return c;
    return fail(EFAULT, "no free response cookie");
  }

  /** iommufd_fault_fops_read(): whole records only; a group that does not fit stays queued. */
  read(_task: Task, len: number): Uint8Array {
    if (len % PGFAULT_SIZE !== 0) fail(ESPIPE, `read of ${len} bytes is not a multiple of ${PGFAULT_SIZE}`);
    const out = new Uint8Array(len - (len % PGFAULT_SIZE));
    let done = 0;
    while (this.deliver.length > 0 && done + PGFAULT_SIZE <= len) {
      const g = this.deliver.shift()!;
      g.cookie = this.allocCookie();
      this.response.set(g.cookie, g);
      const rec = structView(iommu_hwpt_pgfault, out.subarray(done, done + PGFAULT_SIZE));
      rec.flags = g.flags;
      rec.dev_id = g.handle.idev.id;
      rec.pasid = g.pasid;
      rec.grpid = g.grpid;
      rec.perm = g.perm;
      rec.addr = g.addr;
      rec.length = 0;
      rec.cookie = g.cookie;
      done += PGFAULT_SIZE;
    }
    return out.subarray(0, done);
  }

  /** iommufd_fault_fops_write(): responses in order; the first bad one stops (an error only if none went). */
  write(_task: Task, bytes: Uint8Array): number {
    if (bytes.length % PAGE_RESPONSE_SIZE !== 0)
      fail(ESPIPE, `write of ${bytes.length} bytes is not a multiple of ${PAGE_RESPONSE_SIZE}`);
    let done = 0;
    let err: [number, string] | undefined;
    while (done < bytes.length) {
      const { cookie, code } = structView(
        iommu_hwpt_page_response,
        bytes.subarray(done, done + PAGE_RESPONSE_SIZE),
      );
      if (code !== IOMMUFD_PAGE_RESP_SUCCESS && code !== IOMMUFD_PAGE_RESP_INVALID) {
        err = [EINVAL, `response code ${code} is neither SUCCESS nor INVALID`];
        break;
      }
      const g = this.response.get(cookie);
      if (g === undefined) {
        err = [EINVAL, `no delivered fault has cookie ${cookie}`];
        break;
      }
      this.response.delete(cookie);
      this.responses.push({ cookie, code, devId: g.handle.idev.id });
      done += PAGE_RESPONSE_SIZE;
    }
    if (done === 0 && err !== undefined) fail(err[0], err[1]);
    return done;
  }
}

/** IOMMU_FAULT_QUEUE_ALLOC (iommufd_fault_alloc). */
export function faultQueueAlloc(u: UcmdOf<"IOMMU_FAULT_QUEUE_ALLOC">): number {
  if (u.cmd.flags !== 0) fail(EOPNOTSUPP, "flags must be 0");
  const f = new IommufdFault(u.ictx);
  createWithFd(u, f, () =>
    installEventqFd(u, f, "[iommufd-pgfault]", (id, fd) => {
      u.cmd.out_fault_id = id;
      u.cmd.out_fault_fd = fd;
    }),
  );
  return 0;
}

export function getFault(ictx: IommufdCtx, id: number): IommufdFault {
  return ictx.objects.get(id, "FAULT", "fault queue");
}

/** A page request as IOMMU_TEST_OP_TRIGGER_IOPF raises it (struct iopf_fault's prm). */
export interface PageRequest {
  flags: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
}

/**
 * iommu_report_device_fault() → iommufd_fault_iopf_handler(): the request
 * goes to the fault queue of the HWPT its PASID (or the RID) is attached
 * to. With a PASID nothing is attached to, a driver with a user-managed
 * PASID table (the mock) routes it to a nested domain on the RID. No
 * handler: the core answers the device itself and nothing is queued.
 */
export function reportDeviceFault(idev: IommufdDevice, req: PageRequest, userPasidTable: boolean): void {
  const ig = idev.igroup;
  let hwpt: Hwpt | undefined;
  let handle: AttachHandle | undefined;
  if (req.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) {
    const a = ig.pasids.get(req.pasid);
    if (a !== undefined) {
      hwpt = a.hwpt;
      handle = a.handle;
    } else if (userPasidTable && ig.hwpt?.type === "HWPT_NESTED") {
      hwpt = ig.hwpt;
      handle = ig.handle;
    }
  } else {
    hwpt = ig.hwpt;
    handle = ig.handle;
  }
  const fault = hwpt?.fault;
  if (fault === undefined || handle === undefined) return;
  fault.deliver.push({ handle, ...req, cookie: 0 });
}

// --- vEVENTQ ------------------------------------------------------------------

export interface Vevent {
  lost: boolean;
  sequence: number;
  data: Uint8Array;
}

/**
 * struct iommufd_veventq (IOMMUFD_OBJ_VEVENTQ): events a vIOMMU reports,
 * read() as struct iommufd_vevent_header + data; at most `depth` events,
 * further ones become one trailing LOST_EVENTS header whose sequence is
 * the next index. Holds +1 on its vIOMMU.
 */
export class IommufdVeventq extends IommufdObject {
  readonly type = "VEVENTQ" as const;
  readonly deliver: Vevent[] = [];
  numEvents = 0;
  sequence = 0;
  file: KFile | undefined;
  private readonly lostHeader: Vevent = { lost: true, sequence: 0, data: new Uint8Array(0) };
  constructor(
    readonly ictx: IommufdCtx,
    readonly viommu: IommufdViommu,
    readonly eventType: number,
    readonly depth: number,
  ) {
    super();
  }

  destroy(): void {
    this.deliver.length = 0;
    this.numEvents = 0;
    const l = this.viommu.veventqs;
    const i = l.indexOf(this);
    if (i >= 0) l.splice(i, 1);
    this.viommu.refPut();
  }

  /** iommufd_viommu_report_event() past the queue lookup; iommufd_vevent_handler(). */
  report(data: Uint8Array): void {
    let ev: Vevent;
    if (this.numEvents === this.depth) ev = this.lostHeader;
    else {
      ev = { lost: false, sequence: 0, data: data.slice() };
      this.numEvents++;
    }
    const last = this.deliver[this.deliver.length - 1];
    if (last === this.lostHeader) this.deliver.pop();
    this.deliver.push(ev);
    ev.sequence = this.sequence;
    this.sequence = (this.sequence + 1) & INT_MAX;
  }

  /** iommufd_veventq_fops_read(): whole events only; a lost-events header carries no data. */
  read(_task: Task, len: number): Uint8Array {
    // a count that cannot hold even a header is refused up front, empty queue or not
    if (len < VEVENT_HEADER_SIZE)
      fail(EINVAL, `read of ${len} bytes cannot hold a ${VEVENT_HEADER_SIZE}-byte vEVENT header`);
    const parts: Uint8Array[] = [];
    let done = 0;
    while (this.deliver.length > 0) {
      const ev = this.deliver[0];
      if (done >= len || VEVENT_HEADER_SIZE > len - done) break;
      if (!ev.lost && VEVENT_HEADER_SIZE + ev.data.length > len - done) break;
      this.deliver.shift();
      const h = new Uint8Array(VEVENT_HEADER_SIZE + ev.data.length);
      const hdr = structView(iommufd_vevent_header, h);
      hdr.flags = ev.lost ? IOMMU_VEVENTQ_FLAG_LOST_EVENTS : 0;
      hdr.sequence = ev.sequence;
      h.set(ev.data, VEVENT_HEADER_SIZE);
      parts.push(h);
      done += h.length;
      if (!ev.lost) this.numEvents--;
    }
    // the first queued event does not fit: nothing delivered is an error, not an empty read
    if (done === 0 && this.deliver.length > 0) {
      fail(EINVAL, `read of ${len} bytes cannot hold the next vEVENT (header and payload)`);
    }
    const out = new Uint8Array(done);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/** The most events a vEVENTQ may queue (iommufd's cap on veventq_depth, 1 << 19). */
export const IOMMU_VEVENTQ_MAX_DEPTH = 1 << 19;

/** IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): one queue per type per vIOMMU (EEXIST). */
export function veventqAlloc(u: UcmdOf<"IOMMU_VEVENTQ_ALLOC">): number {
  if (u.cmd.flags !== 0 || u.cmd.__reserved !== 0 || u.cmd.type === 0) {
    fail(EOPNOTSUPP, "flags/__reserved must be 0 and type must not be IOMMU_VEVENTQ_TYPE_DEFAULT");
  }
  const depth = u.cmd.veventq_depth;
  if (depth === 0 || depth > IOMMU_VEVENTQ_MAX_DEPTH) {
    fail(EINVAL, `veventq_depth ${depth} is 0 or above ${IOMMU_VEVENTQ_MAX_DEPTH}`);
  }
  const viommu = u.ictx.objects.get(u.cmd.viommu_id, "VIOMMU", "vIOMMU");
  const type = u.cmd.type;
  if (viommu.veventqs.some((q) => q.eventType === type)) {
    fail(EEXIST, `vIOMMU ${viommu.id} already has a vEVENTQ of type 0x${type.toString(16)}`);
  }
  const q = new IommufdVeventq(u.ictx, viommu, type, depth);
  createWithFd(u, q, () => {
    viommu.refGet();
    viommu.veventqs.push(q);
    return installEventqFd(u, q, "[iommufd-viommu-event]", (id, fd) => {
      u.cmd.out_veventq_id = id;
      u.cmd.out_veventq_fd = fd;
    });
  });
  return 0;
}

/** iommufd_viommu_report_event(): EOPNOTSUPP with no vEVENTQ of that type. */
export function viommuReportEvent(viommu: IommufdViommu, type: number, data: Uint8Array): number {
  const q = viommu.veventqs.find((x) => x.eventType === type >>> 0);
  if (q === undefined) return -EOPNOTSUPP;
  q.report(data);
  return 0;
}
