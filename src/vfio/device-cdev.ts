import type { Task } from "../kernel/task.js";
import { E2BIG, EFAULT, EINVAL, fail, KernelError, rethrowWith } from "../uapi/errno.js";
import { offsetOf, offsetOfEnd, structView } from "../uapi/struct.js";
import {
  VFIO_DEVICE_ATTACH_PASID,
  VFIO_DEVICE_BIND_FLAG_TOKEN,
  VFIO_DEVICE_DETACH_PASID,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
} from "../uapi/vfio.js";
import type { VfioDeviceFile } from "./device.js";
import { vfioDfClose, vfioDfOpen } from "./device-open.js";
import {
  vfioIommufdCtxFromFile,
  vfioIommufdPhysicalAttach,
  vfioIommufdPhysicalDetach,
  vfioIommufdPhysicalPasidAttach,
  vfioIommufdPhysicalPasidDetach,
} from "./iommufd.js";
import { u32Bytes } from "./uaccess.js";

const BIND_MINSZ = offsetOfEnd(vfio_device_bind_iommufd, "out_devid");
const BIND_SIZE = vfio_device_bind_iommufd.size;

/**
 * VFIO_DEVICE_BIND_IOMMUFD (drivers/vfio/device_cdev.c), in the kernel's
 * check order: argsz; a non-zero tail past the struct (E2BIG,
 * copy_struct_from_user); iommufd < 0 or unknown flags; a group-obtained
 * fd; the group held open (EBUSY); already bound; the token; the iommufd
 * lookup (EBADF/EBADFD); the device open (one cdev opener) and iommufd
 * bind. Only out_devid is written back.
 */
export function vfioDfIoctlBindIommufd(df: VfioDeviceFile, task: Task, arg: bigint): number {
  // argsz alone first: the copy that follows is argsz bytes long
  const head = new Uint8Array(BIND_SIZE);
  head.set(task.copyFromUser(arg, offsetOfEnd(vfio_device_bind_iommufd, "argsz")));
  const argsz = structView(vfio_device_bind_iommufd, head).argsz;
  if (argsz < BIND_MINSZ)
    fail(EINVAL, `VFIO_DEVICE_BIND_IOMMUFD: argsz ${argsz} is below minsz ${BIND_MINSZ}`);
  const user = task.copyFromUser(arg, argsz);
  for (let i = BIND_SIZE; i < argsz; i++) {
    if (user[i] !== 0) fail(E2BIG, `VFIO_DEVICE_BIND_IOMMUFD: byte ${i} past the 24-byte struct is non-zero`);
  }
  const buf = new Uint8Array(BIND_SIZE);
  buf.set(user.subarray(0, Math.min(argsz, BIND_SIZE)));
  const { flags, iommufd } = structView(vfio_device_bind_iommufd, buf);
  if (iommufd < 0) fail(EINVAL, `VFIO_DEVICE_BIND_IOMMUFD: iommufd ${iommufd} is negative`);
  if ((flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN) !== 0)
    fail(EINVAL, `VFIO_DEVICE_BIND_IOMMUFD: unknown flags 0x${flags.toString(16)}`);
  if (df.group !== null)
    fail(EINVAL, "VFIO_DEVICE_BIND_IOMMUFD is for cdev fds; this fd came from VFIO_GROUP_GET_DEVICE_FD");
  const device = df.device;
  device.group.blockGroup();
  try {
    if (df.accessGranted) fail(EINVAL, "VFIO_DEVICE_BIND_IOMMUFD: this device fd is already bound");
    vfioDfCheckToken(df, task, flags, structView(vfio_device_bind_iommufd, buf).token_uuid_ptr);
    const f = task.fdget(iommufd);
    const ictx = vfioIommufdCtxFromFile(f);
    ictx.get();
    df.iommufd = ictx;
    try {
      vfioDfOpen(df);
    } catch (e) {
      df.iommufd = null;
      ictx.put();
      throw e;
    }
    try {
      task.copyToUser(arg + BigInt(offsetOf(vfio_device_bind_iommufd, "out_devid")), u32Bytes(df.devid));
    } catch (e) {
      vfioDfClose(df);
      df.iommufd = null;
      ictx.put();
      throw e;
    }
    device.cdevOpened = true;
    df.accessGranted = true;
    return 0;
  } catch (e) {
    device.group.unblockGroup();
    throw e;
  }
}

/**
 * vfio_df_check_token(): a driver without match_token_uuid takes no token
 * (EINVAL with the flag); otherwise the 16-byte UUID at token_uuid_ptr
 * (EFAULT when unreadable), or none without the flag, goes to its check
 * (vfio-pci: the VF token rules, EACCES / EINVAL).
 */
function vfioDfCheckToken(df: VfioDeviceFile, task: Task, flags: number, ptr: bigint): void {
  const ops = df.device.ops;
  const given = (flags & VFIO_DEVICE_BIND_FLAG_TOKEN) !== 0;
  if (ops.matchTokenUuid === undefined) {
    if (given) fail(EINVAL, `VFIO_DEVICE_BIND_IOMMUFD: ${ops.name} takes no VF token`);
    return;
  }
  const what = "VFIO_DEVICE_BIND_IOMMUFD: ";
  let uuid: Uint8Array | null = null;
  if (given) {
    try {
      uuid = task.copyFromUser(ptr, 16).slice();
    } catch (e) {
      rethrowWith(e, `${what}token_uuid_ptr 0x${ptr.toString(16)}: `, EFAULT);
    }
  }
  try {
    ops.matchTokenUuid(uuid);
  } catch (e) {
    rethrowWith(e, what);
  }
}

/**
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT (vfio_df_ioctl_attach_pt): minsz 12; only
 * the PASID flag, which extends the struct to `pasid` (argsz >= 16) and
 * goes to vfio-pci's pasid_attach_ioas (attach, or replace when VFIO
 * attached that PASID); pt_id is written back, the attach undone if it
 * cannot be.
 */
export function vfioDfIoctlAttachPt(df: VfioDeviceFile, task: Task, arg: bigint): number {
  const { buf, pasid } = ptArgs(
    task,
    arg,
    vfio_device_attach_iommufd_pt,
    offsetOfEnd(vfio_device_attach_iommufd_pt, "pt_id"),
    VFIO_DEVICE_ATTACH_PASID,
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
  );
  const withPasid = pasid !== undefined;
  const ptId = structView(vfio_device_attach_iommufd_pt, buf).pt_id;
  const hwptId = withPasid
    ? vfioIommufdPhysicalPasidAttach(df.device, pasid, ptId)
    : vfioIommufdPhysicalAttach(df.device, ptId);
  try {
    task.copyToUser(arg + BigInt(offsetOf(vfio_device_attach_iommufd_pt, "pt_id")), u32Bytes(hwptId));
  } catch (e) {
    if (e instanceof KernelError) {
      if (withPasid) vfioIommufdPhysicalPasidDetach(df.device, pasid);
      else vfioIommufdPhysicalDetach(df.device);
      fail(EFAULT, "VFIO_DEVICE_ATTACH_IOMMUFD_PT: cannot write pt_id back; the attach was undone");
    }
    throw e;
  }
  return 0;
}

/** VFIO_DEVICE_DETACH_IOMMUFD_PT: minsz 8 (12 with the PASID flag); nothing attached is a success. */
export function vfioDfIoctlDetachPt(df: VfioDeviceFile, task: Task, arg: bigint): number {
  const { pasid } = ptArgs(
    task,
    arg,
    vfio_device_detach_iommufd_pt,
    offsetOfEnd(vfio_device_detach_iommufd_pt, "flags"),
    VFIO_DEVICE_DETACH_PASID,
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
  );
  if (pasid !== undefined) vfioIommufdPhysicalPasidDetach(df.device, pasid);
  else vfioIommufdPhysicalDetach(df.device);
  return 0;
}

/**
 * The argsz/flags header ATTACH and DETACH_IOMMUFD_PT share: EINVAL below
 * minsz or with a flag other than the PASID one; with it, argsz must also
 * cover the u32 pasid that follows minsz. Returns the struct's bytes
 * (sizeof, zero where not copied) and the pasid when flagged.
 */
function ptArgs(
  task: Task,
  arg: bigint,
  def: typeof vfio_device_attach_iommufd_pt | typeof vfio_device_detach_iommufd_pt,
  minsz: number,
  pasidFlag: number,
  what: string,
): { buf: Uint8Array; pasid: number | undefined } {
  const buf = new Uint8Array(def.size);
  buf.set(task.copyFromUser(arg, minsz));
  const { argsz, flags } = structView(def, buf);
  if (argsz < minsz || (flags & ~pasidFlag) !== 0) {
    fail(EINVAL, argsz < minsz ? `${what}: argsz ${argsz} is below ${minsz}` : `${what}: unknown flags`);
  }
  if ((flags & pasidFlag) === 0) return { buf, pasid: undefined };
  const end = offsetOfEnd(def, "pasid");
  if (argsz < end) fail(EINVAL, `${what}: argsz ${argsz} is below ${end} with the PASID flag`);
  const at = offsetOf(def, "pasid");
  buf.set(task.copyFromUser(arg + BigInt(at), end - at), at);
  return { buf, pasid: structView(def, buf).pasid };
}

/** vfio_df_unbind_iommufd(): close of a cdev fd; nothing to do if it never bound. */
export function vfioDfUnbindIommufd(df: VfioDeviceFile): void {
  if (!df.accessGranted) return;
  const device = df.device;
  vfioDfClose(df);
  df.iommufd?.put();
  df.iommufd = null;
  device.cdevOpened = false;
  df.accessGranted = false;
  device.group.unblockGroup();
}
