import { iommufdIoctlByName, iommufdIoctlByRequest } from "../uapi/iommufd.js";
import type { KernelProfile } from "../uapi/profiles.js";
import { decode, encode, type FieldDef, type StructDef, type StructValues } from "../uapi/struct.js";
import {
  type VfioArg,
  type VfioFdKind,
  vfioIoctlByName,
  vfioIoctlFor,
  vfioIoctlsByRequest,
} from "../uapi/vfio.js";
import { ScenarioError } from "./error.js";
import { toBig, toBytes, toEnum, toFlags, toStr, type Vars } from "./values.js";

/** What a scenario needs to issue an ioctl by name. */
export interface IoctlTarget {
  name: string;
  request: number;
  arg: VfioArg;
  struct?: StructDef;
}

/**
 * An ioctl by its macro name, from the uapi tables. A command the machine's
 * profile lacks is still found (in the newest table) so the scenario can
 * show that the kernel answers ENOTTY.
 */
export function ioctlTarget(name: string, profile: KernelProfile, where: string): IoctlTarget {
  const i = iommufdIoctlByName(name, profile) ?? iommufdIoctlByName(name, "latest");
  if (i !== undefined) return { name: i.name, request: i.request, arg: "struct", struct: i.struct };
  const v = vfioIoctlByName(name, profile) ?? vfioIoctlByName(name, "latest");
  if (v !== undefined) {
    const t: IoctlTarget = { name: v.name, request: v.request, arg: v.arg };
    if (v.struct) t.struct = v.struct;
    return t;
  }
  throw new ScenarioError(`${where}: unknown ioctl ${name} (use the uapi macro name, e.g. IOMMU_IOAS_MAP)`);
}

/** One field's value as written in the scenario: flags and enums by name, numbers as expressions. */
export function fieldValue(f: FieldDef, v: unknown, vars: Vars, where: string): bigint {
  if (f.kind === "flags") return toFlags(v, f.flags ?? {}, vars, where);
  if (f.kind === "enum") return toEnum(v, f.enumNames ?? {}, vars, where);
  return toBig(v, vars, where);
}

/**
 * The struct bytes for `arg` (fields by name). The leading size/argsz field
 * defaults to the length of the buffer passed (sizeof the struct unless
 * `argsz` says otherwise), as a C caller writing `.size = sizeof(cmd)` does.
 */
export function encodeStructArg(
  def: StructDef,
  arg: unknown,
  userSize: number,
  vars: Vars,
  where: string,
): Uint8Array {
  if (arg !== undefined && arg !== null && (typeof arg !== "object" || Array.isArray(arg))) {
    throw new ScenarioError(`${where}: ${def.name} is given as a mapping of its fields`);
  }
  const given = (arg ?? {}) as Record<string, unknown>;
  const values: Record<string, bigint> = {};
  for (const [k, v] of Object.entries(given)) {
    const f = def.fields.find((x) => x.name === k);
    if (f === undefined) {
      throw new ScenarioError(
        `${where}: ${def.name} has no field "${k}" (fields: ${def.fields.map((x) => x.name).join(", ")})`,
      );
    }
    if (f.count !== undefined) {
      if (!Array.isArray(v)) throw new ScenarioError(`${where}.${k}: an array of ${f.count}`);
      v.forEach((x, i) => {
        values[`${k}[${i}]`] = fieldValue(f, x, vars, `${where}.${k}[${i}]`);
      });
    } else values[k] = fieldValue(f, v, vars, `${where}.${k}`);
  }
  const head = def.fields[0];
  if (head && (head.name === "size" || head.name === "argsz") && values[head.name] === undefined) {
    values[head.name] = BigInt(userSize);
  }
  try {
    const bytes = encode(def, values, Math.max(userSize, 0));
    return bytes;
  } catch (e) {
    throw new ScenarioError(`${where}: ${(e as Error).message}`);
  }
}

export function decodeStruct(def: StructDef, bytes: Uint8Array): StructValues {
  return decode(def, bytes);
}

/**
 * The argument for a non-struct ioctl: a value (CHECK_EXTENSION), a pointer
 * to an s32/u32 (GROUP_SET_CONTAINER), a device name (GROUP_GET_DEVICE_FD).
 */
export function otherArg(
  t: IoctlTarget,
  arg: unknown,
  vars: Vars,
  where: string,
): bigint | Uint8Array | undefined {
  switch (t.arg) {
    case "none":
      return arg === undefined ? undefined : toBig(arg, vars, where);
    case "value":
      return BigInt.asUintN(64, toBig(arg ?? 0, vars, where));
    case "s32ptr":
    case "u32ptr": {
      const v = toBig(arg ?? 0, vars, where);
      return toBytes({ u32: v }, vars, where);
    }
    case "string": {
      const s = toStr(arg, vars, where);
      const b = new Uint8Array(s.length + 1);
      b.set(new TextEncoder().encode(s));
      return b;
    }
    default:
      return undefined;
  }
}

/** The uapi row behind an ioctl on a kind of file, for naming and decoding. */
export function describeIoctl(
  fdKind: string | undefined,
  request: number,
  profile: KernelProfile = "latest",
): { name: string; struct?: StructDef; arg?: string } | undefined {
  if (fdKind === "iommufd") {
    const d = iommufdIoctlByRequest(request, profile);
    if (d !== undefined) return { name: d.name, struct: d.struct };
    // the iommufd fd also serves the type1 container ioctls (vfio_compat.c)
    const v = vfioIoctlFor(request, "container", "type1", profile);
    return v && { name: v.name, struct: v.struct, arg: v.arg };
  }
  const vk = vfioKind(fdKind);
  if (vk !== undefined) {
    const backend = fdKind === "vfio-container-spapr" ? "spapr" : "type1";
    const v = vfioIoctlFor(request, vk, backend, profile);
    return v && { name: v.name, struct: v.struct, arg: v.arg };
  }
  const any = vfioIoctlsByRequest(request, profile)[0] ?? undefined;
  if (any) return { name: any.name, struct: any.struct, arg: any.arg };
  const i = iommufdIoctlByRequest(request, profile);
  return i && { name: i.name, struct: i.struct };
}

function vfioKind(fdKind: string | undefined): VfioFdKind | undefined {
  switch (fdKind) {
    case "vfio-container":
    case "vfio-container-spapr":
      return "container";
    case "vfio-group":
      return "group";
    case "vfio-device":
      return "device";
    default:
      return undefined;
  }
}
