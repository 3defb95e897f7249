import type { TraceEvent } from "../index.js";
import type { KernelProfile } from "../uapi/profiles.js";
import { decode, type StructValues } from "../uapi/struct.js";
import { describeIoctl } from "./trace-format.js";

export interface AreaView {
  iova: bigint;
  length: bigint;
  flags: bigint;
  /** Where the pages come from: "user_va 0x...", "memfd fd 5 + 0x0", "copy of IOAS 2 @ 0x...". */
  source: string;
}

export interface IommufdView {
  pid: number;
  fd: number;
  open: boolean;
  ioas: Map<number, AreaView[]>;
  hwpts: Map<number, { ptId: number; auto: boolean; devId?: number }>;
  devices: Map<number, { deviceFd: number; attachedTo?: number; requestedPt?: number }>;
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * The iommufd objects a run created, rebuilt from its successful ioctls
 * (the trace holds each struct as the kernel left it). This is the user's
 * view of the state: object IDs, mapped areas and attachments as the kernel
 * reported them; the page tables themselves come from m.debug.hwpt().
 */
export function iommufdViews(events: readonly TraceEvent[], profile: KernelProfile): IommufdView[] {
  const views = new Map<string, IommufdView>();
  const key = (pid: number, fd: number) => `${pid}:${fd}`;
  const get = (pid: number, fd: number) => views.get(key(pid, fd));
  const ensure = (pid: number, fd: number): IommufdView => {
    let v = get(pid, fd);
    if (v === undefined) {
      v = { pid, fd, open: true, ioas: new Map(), hwpts: new Map(), devices: new Map() };
      views.set(key(pid, fd), v);
    }
    return v;
  };
  for (const ev of events) {
    if (ev.errno !== undefined) continue;
    if (ev.call === "close") {
      const v = get(ev.pid, Number(ev.args[0]));
      if (v) {
        v.open = false;
        views.delete(key(ev.pid, v.fd));
        views.set(`${key(ev.pid, v.fd)}#${ev.seq}`, v);
      }
      continue;
    }
    if (ev.call === "exit") {
      for (const v of views.values()) if (v.pid === ev.pid) v.open = false;
      continue;
    }
    if (ev.call !== "ioctl" || ev.argOut === undefined || ev.argIn === undefined) continue;
    const [fd, req] = [Number(ev.args[0]), Number(ev.args[1])];
    const d = describeIoctl(ev.fdKind, req, profile);
    if (d?.struct === undefined) continue;
    const vin = decode(d.struct, ev.argIn);
    const vout = decode(d.struct, ev.argOut);
    if (ev.fdKind === "iommufd") {
      applyIommufd(ensure(ev.pid, fd), d.name, vin, vout);
    } else if (ev.fdKind === "vfio-device") {
      if (d.name === "VFIO_DEVICE_BIND_IOMMUFD") ensure(ev.pid, Number(vin.iommufd));
      applyDevice(views, ev.pid, fd, d.name, vin, vout);
    }
  }
  return [...views.values()];
}

function applyIommufd(v: IommufdView, name: string, vin: StructValues, vout: StructValues): void {
  const n = (x: bigint | undefined) => Number(x ?? 0n);
  // MAP, MAP_FILE and COPY add one area of the request's length and flags.
  const addArea = (ioasId: bigint, iova: bigint, source: string) =>
    v.ioas.get(n(ioasId))?.push({ iova, length: vin.length, flags: vin.flags, source });
  switch (name) {
    case "IOMMU_IOAS_ALLOC":
      v.ioas.set(n(vout.out_ioas_id), []);
      break;
    case "IOMMU_IOAS_MAP":
      addArea(vin.ioas_id, vout.iova, `user_va 0x${vin.user_va.toString(16)}`);
      break;
    case "IOMMU_IOAS_MAP_FILE":
      addArea(vin.ioas_id, vout.iova, `file fd ${vin.fd} + 0x${vin.start.toString(16)}`);
      break;
    case "IOMMU_IOAS_COPY":
      addArea(
        vin.dst_ioas_id,
        vout.dst_iova,
        `copy of IOAS ${vin.src_ioas_id} @ 0x${vin.src_iova.toString(16)}`,
      );
      break;
    case "IOMMU_IOAS_UNMAP": {
      const areas = v.ioas.get(n(vin.ioas_id));
      if (areas === undefined) break;
      const all = vin.iova === 0n && vin.length === U64_MAX;
      const end = vin.iova + vin.length;
      const keep = areas.filter((a) => !(all || (a.iova >= vin.iova && a.iova + a.length <= end)));
      v.ioas.set(n(vin.ioas_id), keep);
      break;
    }
    case "IOMMU_HWPT_ALLOC":
      v.hwpts.set(n(vout.out_hwpt_id), { ptId: n(vin.pt_id), auto: false, devId: n(vin.dev_id) });
      break;
    case "IOMMU_DESTROY": {
      const id = n(vin.id);
      v.ioas.delete(id);
      v.hwpts.delete(id);
      break;
    }
  }
}

function applyDevice(
  views: Map<string, IommufdView>,
  pid: number,
  deviceFd: number,
  name: string,
  vin: StructValues,
  vout: StructValues,
): void {
  const owner = () => [...views.values()].find((v) => v.pid === pid && v.open && hasDevice(v, deviceFd));
  switch (name) {
    case "VFIO_DEVICE_BIND_IOMMUFD": {
      const v = views.get(`${pid}:${Number(vin.iommufd)}`);
      v?.devices.set(Number(vout.out_devid), { deviceFd });
      break;
    }
    case "VFIO_DEVICE_ATTACH_IOMMUFD_PT": {
      const v = owner();
      if (v === undefined) break;
      for (const [id, dev] of v.devices) {
        if (dev.deviceFd !== deviceFd) continue;
        const hwptId = Number(vout.pt_id);
        dev.attachedTo = hwptId;
        dev.requestedPt = Number(vin.pt_id);
        if (!v.hwpts.has(hwptId) && !v.ioas.has(hwptId))
          v.hwpts.set(hwptId, { ptId: Number(vin.pt_id), auto: true, devId: id });
      }
      break;
    }
    case "VFIO_DEVICE_DETACH_IOMMUFD_PT": {
      const v = owner();
      for (const dev of v?.devices.values() ?? []) if (dev.deviceFd === deviceFd) dev.attachedTo = undefined;
      break;
    }
  }
}

function hasDevice(v: IommufdView, deviceFd: number): boolean {
  for (const d of v.devices.values()) if (d.deviceFd === deviceFd) return true;
  return false;
}
