// Kernel UAPI profiles: which commands, flags and layouts a kernel offers.
//
// "latest": newest upstream uapi available to us (include/uapi/linux/iommufd.h
//   at b4d90dbc, commands up to HW_QUEUE_ALLOC 0x94; 6.17+ era) plus the
//   proposed noiommu cdev series (IOMMU_IOAS_NOIOMMU_GET_PA, nr 0x95).
// "6.12": the 6.12 long-term kernel.
//
// The "since" versions below are kernel release history. Verified ones cite
// what checked them; the rest are from kernel history as we know it and are
// marked UNVERIFIED. The 6.12 boundary itself is confirmed by a generated copy
// of iommufd.h whose command enum ends at FAULT_QUEUE_ALLOC (0x8e) with
// HWPT_ALLOC flags NEST_PARENT|DIRTY_TRACKING|FAULT_ID_VALID and no PASID
// fields (docs/kernel-accuracy.md); exact releases of later additions stay
// UNVERIFIED but none of them changes the "6.12" profile.

import { restrictFlags, type StructDef } from "./struct.js";

export type KernelProfile = "latest" | "6.12";

export const KERNEL_PROFILES: readonly KernelProfile[] = ["latest", "6.12"];
export const DEFAULT_KERNEL_PROFILE: KernelProfile = "latest";

export function isKernelProfile(x: unknown): x is KernelProfile {
  return x === "latest" || x === "6.12";
}

/**
 * When a piece of UAPI appeared: a mainline release "6.13", or "noiommu" for
 * the proposed noiommu cdev series (present only in "latest").
 */
export type Since = `${number}.${number}` | "noiommu";

function versionNumber(v: `${number}.${number}`): number {
  const [maj, min] = v.split(".").map(Number);
  return maj * 1000 + min;
}

const PROFILE_VERSION: Record<KernelProfile, number> = {
  latest: Number.POSITIVE_INFINITY,
  "6.12": versionNumber("6.12"),
};

/** Does a kernel of this profile have UAPI that appeared in `since`? */
export function profileHas(profile: KernelProfile, since: Since): boolean {
  if (since === "noiommu") return profile === "latest";
  return versionNumber(since) <= PROFILE_VERSION[profile];
}

/** The profiles that have UAPI that appeared in `since`. */
export function profilesSince(since: Since): ReadonlySet<KernelProfile> {
  return new Set(KERNEL_PROFILES.filter((p) => profileHas(p, since)));
}

/**
 * Release in which each iommufd command appeared (by the name of its
 * IOMMU_* request macro).
 * - 6.2: iommufd merged with the first nine commands (DESTROY..VFIO_IOAS).
 * - HWPT_ALLOC, GET_HW_INFO 6.6; dirty tracking 6.7; HWPT_INVALIDATE 6.8;
 *   FAULT_QUEUE_ALLOC 6.11 — all before 6.12, so the exact release does not
 *   change any profile. UNVERIFIED exact releases.
 * - IOAS_MAP_FILE 6.13: the patch (Steve Sistare, "iommufd: Add
 *   IOMMU_IOAS_MAP_FILE") was posted 2024-10-25, after the 6.12 merge window
 *   closed; merged for 6.13. VIOMMU_ALLOC and VDEVICE_ALLOC 6.13 (vIOMMU
 *   infrastructure series). UNVERIFIED against a 6.12 header, but all three
 *   sit after FAULT_QUEUE_ALLOC in the command enum, consistent with it.
 * - IOAS_CHANGE_PROCESS 6.14, VEVENTQ_ALLOC 6.15, HW_QUEUE_ALLOC 6.17.
 *   UNVERIFIED exact releases; all after 6.12 in any case (uapi.md: the
 *   header with HW_QUEUE_ALLOC is 6.17+).
 * - IOAS_NOIOMMU_GET_PA: proposed series only, not mainline (uapi.md §0, §6).
 */
export const IOMMUFD_CMD_SINCE: Readonly<Record<string, Since>> = {
  IOMMU_DESTROY: "6.2",
  IOMMU_IOAS_ALLOC: "6.2",
  IOMMU_IOAS_ALLOW_IOVAS: "6.2",
  IOMMU_IOAS_COPY: "6.2",
  IOMMU_IOAS_IOVA_RANGES: "6.2",
  IOMMU_IOAS_MAP: "6.2",
  IOMMU_IOAS_UNMAP: "6.2",
  IOMMU_OPTION: "6.2",
  IOMMU_VFIO_IOAS: "6.2",
  IOMMU_HWPT_ALLOC: "6.6",
  IOMMU_GET_HW_INFO: "6.6",
  IOMMU_HWPT_SET_DIRTY_TRACKING: "6.7",
  IOMMU_HWPT_GET_DIRTY_BITMAP: "6.7",
  IOMMU_HWPT_INVALIDATE: "6.8",
  IOMMU_FAULT_QUEUE_ALLOC: "6.11",
  IOMMU_IOAS_MAP_FILE: "6.13",
  IOMMU_VIOMMU_ALLOC: "6.13",
  IOMMU_VDEVICE_ALLOC: "6.13",
  IOMMU_IOAS_CHANGE_PROCESS: "6.14",
  IOMMU_VEVENTQ_ALLOC: "6.15",
  IOMMU_HW_QUEUE_ALLOC: "6.17",
  IOMMU_IOAS_NOIOMMU_GET_PA: "noiommu",
};

/**
 * Flag bits that appeared after the command that carries them. A profile
 * without the bit treats it as unknown (EOPNOTSUPP for iommufd, EINVAL for VFIO).
 * All UNVERIFIED release numbers (kernel history from memory), except that
 * every one of them is absent from the 6.7-era header (03476e68) and present
 * in the newest one (b4d90dbc).
 */
export interface FlagSince {
  struct: string;
  field: string;
  flag: string;
  since: Since;
}

export const FLAG_SINCE: readonly FlagSince[] = [
  { struct: "iommu_hwpt_alloc", field: "flags", flag: "FAULT_ID_VALID", since: "6.11" },
  { struct: "iommu_hwpt_alloc", field: "flags", flag: "PASID", since: "6.14" },
  { struct: "iommu_hw_info", field: "flags", flag: "INPUT_TYPE", since: "6.17" },
  { struct: "iommu_hw_info", field: "out_capabilities", flag: "PCI_PASID_EXEC", since: "6.14" },
  { struct: "iommu_hw_info", field: "out_capabilities", flag: "PCI_PASID_PRIV", since: "6.14" },
  // Newer than b4d90dbc: seen in a Rust binding of a later mainline header.
  { struct: "iommu_hw_info", field: "out_capabilities", flag: "PCI_ATS_NOT_SUPPORTED", since: "6.19" },
  { struct: "vfio_device_bind_iommufd", field: "flags", flag: "TOKEN", since: "6.17" },
  { struct: "vfio_device_attach_iommufd_pt", field: "flags", flag: "PASID", since: "6.14" },
  { struct: "vfio_device_detach_iommufd_pt", field: "flags", flag: "PASID", since: "6.14" },
];

const profiledStructs = new Map<KernelProfile, WeakMap<StructDef, StructDef>>();

/**
 * `def` as a kernel of this profile knows it: flag bits from FLAG_SINCE that
 * the profile predates are dropped from the flag tables (so they count as
 * unknown). Returns `def` itself when nothing changes.
 */
export function structForProfile<D extends StructDef>(def: D, profile: KernelProfile): D {
  let cache = profiledStructs.get(profile);
  if (!cache) {
    cache = new WeakMap();
    profiledStructs.set(profile, cache);
  }
  const hit = cache.get(def);
  if (hit) return hit as D;
  let out: StructDef = def;
  for (const f of FLAG_SINCE) {
    if (f.struct !== def.name || profileHas(profile, f.since)) continue;
    const field = out.fields.find((x) => x.name === f.field);
    if (!field?.flags || !(f.flag in field.flags)) continue;
    out = restrictFlags(out, f.field, (k) => k !== f.flag);
  }
  cache.set(def, out);
  return out as D;
}

/** The noiommu GET_PA revisions of the proposed series (uapi.md §6, DESIGN.md). */
export type NoiommuRevision = "v4" | "v7" | "v9";
export const NOIOMMU_REVISIONS: readonly NoiommuRevision[] = ["v4", "v7", "v9"];
export const DEFAULT_NOIOMMU_REVISION: NoiommuRevision = "v9";

export interface GetPaRevision {
  /** Request macro name in that revision's header. */
  requestName: "IOMMU_IOAS_GET_PA" | "IOMMU_IOAS_NOIOMMU_GET_PA";
  /** Does the kernel read `length` as an input bound? */
  lengthIsInput: boolean;
  /** What an input length of 0 means (when lengthIsInput). */
  zeroLength: "ignored" | "no-limit" | "EINVAL";
}

export const GET_PA_REVISIONS: Readonly<Record<NoiommuRevision, GetPaRevision>> = {
  // The seed: length is output only.
  v4: { requestName: "IOMMU_IOAS_GET_PA", lengthIsInput: false, zeroLength: "ignored" },
  // Renamed in v5; v7 documents 0 as "no limit".
  v7: { requestName: "IOMMU_IOAS_NOIOMMU_GET_PA", lengthIsInput: true, zeroLength: "no-limit" },
  // v9: length is a required upper bound; 0 is EINVAL.
  v9: { requestName: "IOMMU_IOAS_NOIOMMU_GET_PA", lengthIsInput: true, zeroLength: "EINVAL" },
};

export function isNoiommuRevision(x: unknown): x is NoiommuRevision {
  return x === "v4" || x === "v7" || x === "v9";
}
