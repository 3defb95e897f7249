import { EACCES, EINVAL, fail } from "../../uapi/errno.js";

/** UUID_STRING_LEN: "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
export const UUID_STRING_LEN = 36;
const VF_TOKEN_ARG = "vf_token=";

/**
 * struct vfio_pci_vf_token: the UUID a PF's user shares with its VFs'
 * users, and how many VFs are open (users). Lives as long as the PF is
 * bound to vfio-pci, not as long as it is open: closing the PF keeps it.
 */
export interface VfToken {
  uuid: Uint8Array;
  users: number;
}

/**
 * The SR-IOV side of one vfio-pci device: a PF bound to vfio-pci has a
 * token (vfio_pci_vf_init, a random UUID at bind); a VF created by a
 * vfio-pci PF's sriov_configure knows that PF (sriov_pf_core_dev).
 */
export interface VfioPciSriov {
  readonly bdf: string;
  /** vdev->vf_token: set for a PF (the function has SR-IOV). */
  vfToken: VfToken | null;
  /** vdev->sriov_pf_core_dev: the vfio-pci PF of a VF, found when the VF registered. */
  sriovPf: VfioPciSriov | null;
  /** pdev->is_virtfn. */
  readonly isVirtfn: boolean;
}

/**
 * uuid_parse(): 36 characters, hyphens at 8, 13, 18 and 23, hex digits
 * elsewhere (either case); bytes in string order. Undefined when malformed.
 */
export function uuidParse(s: string): Uint8Array | undefined {
  if (s.length < UUID_STRING_LEN) return undefined;
  const out = new Uint8Array(16);
  let b = 0;
  for (let i = 0; i < UUID_STRING_LEN; ) {
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (s[i] !== "-") return undefined;
      i++;
      continue;
    }
    const hi = hexDigit(s.charCodeAt(i));
    const lo = hexDigit(s.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) return undefined;
    out[b++] = hi * 16 + lo;
    i += 2;
  }
  return out;
}

export function uuidString(u: Uint8Array): string {
  const h = [...u].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function uuidEqual(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * vfio_pci_core_match_token_uuid(): whether `uuid` (null: none given)
 * opens the device; throws with the kernel's errno otherwise.
 * - a VF whose PF is a vfio-pci PF needs that PF's current token
 *   (EACCES when missing or different); a VF of a PF bound elsewhere
 *   takes no token (EINVAL when one is given);
 * - a PF with VFs open needs the current token too (EACCES); with none
 *   open, a given token becomes the token;
 * - any other device takes no token (EINVAL).
 */
export function matchTokenUuid(dev: VfioPciSriov, uuid: Uint8Array | null): void {
  if (dev.isVirtfn) {
    const pf = dev.sriovPf;
    if (pf === null || pf.vfToken === null) {
      if (uuid === null) return;
      fail(EINVAL, `${dev.bdf}: VF token incorrectly provided, PF not bound to vfio-pci`);
    }
    if (uuid === null)
      fail(EACCES, `${dev.bdf}: VF token required to access device (its PF ${pf.bdf} is bound to vfio-pci)`);
    if (!uuidEqual(uuid, pf.vfToken.uuid))
      fail(EACCES, `${dev.bdf}: Incorrect VF token provided for device (not the token of PF ${pf.bdf})`);
    return;
  }
  const tok = dev.vfToken;
  if (tok !== null) {
    if (tok.users > 0) {
      if (uuid === null)
        fail(EACCES, `${dev.bdf}: VF token required to access device (${tok.users} of its VFs are open)`);
      if (!uuidEqual(uuid, tok.uuid))
        fail(EACCES, `${dev.bdf}: Incorrect VF token provided for device (${tok.users} of its VFs are open)`);
    } else if (uuid !== null) {
      tok.uuid = uuid.slice();
    }
    return;
  }
  if (uuid !== null) fail(EINVAL, `${dev.bdf}: VF token incorrectly provided, not a PF or VF`);
}

/**
 * vfio_pci_core_match(): does `buf` name this device? "BDF" or "BDF"
 * followed by spaces and at most one "vf_token=<uuid>" (EINVAL for any
 * other option, a repeated one or a short UUID; uuid_parse's EINVAL for a
 * malformed one); then the token rule. Returns false when the name is not
 * this device's.
 */
export function vfioPciMatch(dev: VfioPciSriov, buf: string): boolean {
  const name = dev.bdf;
  if (!buf.startsWith(name)) return false;
  let uuid: Uint8Array | null = null;
  if (buf.length > name.length) {
    let i = name.length;
    if (buf[i] !== " ") return false;
    while (i < buf.length) {
      if (buf[i] === " ") {
        i++;
        continue;
      }
      if (uuid === null && buf.startsWith(VF_TOKEN_ARG, i)) {
        i += VF_TOKEN_ARG.length;
        if (buf.length - i < UUID_STRING_LEN)
          fail(EINVAL, `"${buf}": the vf_token is shorter than a UUID (${UUID_STRING_LEN} characters)`);
        const u = uuidParse(buf.slice(i, i + UUID_STRING_LEN));
        if (u === undefined) fail(EINVAL, `"${buf}": the vf_token is not a UUID`);
        uuid = u;
        i += UUID_STRING_LEN;
      } else {
        fail(EINVAL, `"${buf}": unknown or repeated option after the device name (only one vf_token=)`);
      }
    }
  }
  matchTokenUuid(dev, uuid);
  return true;
}
