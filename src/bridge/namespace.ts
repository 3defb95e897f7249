import type { Machine } from "../kernel/machine.js";
import { normalize } from "../kernel/vfs.js";
import { EINVAL, ENOENT, ENOTDIR } from "../uapi/errno.js";

const ELOOP = 40;

/**
 * The model's files as real tools see them. The model keeps a PCI
 * function's attributes under /sys/bus/pci/devices/<BDF>/; on Linux that
 * is a symlink to /sys/devices/pci<dom:bus>/<BDF>/, where relative links
 * such as iommu_group (../../../kernel/iommu_groups/N) resolve. This view
 * adds that layer, resolves links component by component (realpath,
 * stat), gives device nodes their numbers, and adds the files the bridge
 * itself serves: /proc/.../fail-nth and the fault-injection knobs under
 * /sys/kernel/debug.
 */
export type NodeKind = "dir" | "file" | "link" | "chr";

export interface Resolved {
  /** The canonical (real-world) path. */
  path: string;
  kind: NodeKind;
  /** The model's path for it (what Process.open takes), or a synthetic file's key. */
  model: string;
  /** Synthetic: served by the bridge, not the model's vfs. */
  synthetic?: "fail-nth" | "debugfs" | "pagemap";
}

export interface StatInfo {
  mode: number;
  nlink: number;
  rdev: bigint;
  size: bigint;
  ino: bigint;
  dev: bigint;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
/** The character-device majors the model's nodes get (vfio cdevs use 511, as the model's uevent says). */
const VFIO_GROUP_MAJOR = 510;
const VFIO_CDEV_MAJOR = 511;
const MISC_MAJOR = 10;
const IOMMUFD_MINOR = 123;
const VFIO_MINOR = 196;

const DEVICE_DIR =
  /^\/sys\/devices\/(pci[0-9a-f]{4}:[0-9a-f]{2})(?:\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])(\/.*)?)?$/;
const BUS_DEVICE = /^\/sys\/bus\/pci\/devices\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])$/;
const FAIL_NTH = /^\/proc\/(?:self|thread-self|\d+)(?:\/task\/\d+)?\/fail-nth$/;
/** /proc/self/pagemap: the bridge serves it with the model's frame numbers (src/bridge/pagemap.ts). */
const PAGEMAP = /^\/proc\/(?:self|\d+)\/pagemap$/;
/** /proc/PID/status: VmLck and VmPin with the model's charges (src/bridge/proc-status.ts). */
export const STATUS = /^\/proc\/(?:self|\d+)\/status$/;
/** The fault-injection directories debugfs shows, with their attributes. */
const DEBUGFS: Record<string, string[]> = {
  failslab: [
    "probability",
    "interval",
    "times",
    "space",
    "verbose",
    "task-filter",
    "ignore-gfp-wait",
    "cache-filter",
  ],
  fail_page_alloc: [
    "probability",
    "interval",
    "times",
    "space",
    "verbose",
    "task-filter",
    "ignore-gfp-wait",
    "ignore-gfp-highmem",
    "min-order",
  ],
  fail_usercopy: ["probability", "interval", "times", "space", "verbose", "task-filter"],
};
/** Paths the model does not have but the real kernel may: the real call answers them. */
const PASSTHROUGH_PREFIXES = ["/sys/kernel/mm/transparent_hugepage"];

export class BridgeNamespace {
  /** Values written to the debugfs fault-injection knobs (they steer nothing: fail-nth does). */
  readonly debugfs = new Map<string, string>();

  constructor(private readonly m: Machine) {}

  /**
   * True when the real kernel should answer for this path (the model does
   * not have it). /proc/PID/status is the real file for everything but
   * open, which the bridge serves for its own processes.
   */
  passthrough(path: string): boolean {
    const p = normalize(path);
    if (STATUS.test(p)) return true;
    return PASSTHROUGH_PREFIXES.some((x) => p === x || p.startsWith(`${x}/`)) && !this.m.vfs.exists(p);
  }

  /** Resolve a path: the node, or -errno. `follow`: follow a final symlink. */
  resolve(path: string, follow: boolean): Resolved | number {
    if (!path.startsWith("/")) return -ENOENT;
    // /proc is the real kernel's but for this file, which the bridge serves
    if (FAIL_NTH.test(normalize(path)) || PAGEMAP.test(normalize(path))) return this.node(normalize(path))!;
    const parts = path.split("/").filter((s) => s !== "" && s !== ".");
    return this.walk("/", parts, follow, 0);
  }

  private walk(cur: string, parts: string[], follow: boolean, depth: number): Resolved | number {
    if (depth > 40) return -ELOOP;
    let here = cur;
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i];
      if (name === "..") {
        here = here === "/" ? "/" : here.slice(0, here.lastIndexOf("/")) || "/";
        continue;
      }
      const next = here === "/" ? `/${name}` : `${here}/${name}`;
      const last = i === parts.length - 1;
      const n = this.node(next);
      if (n === undefined) return -ENOENT;
      if (n.kind === "link" && (!last || follow)) {
        const target = this.linkTarget(next)!;
        const base = target.startsWith("/") ? "/" : here;
        const rest = [...target.split("/").filter((s) => s !== "" && s !== "."), ...parts.slice(i + 1)];
        return this.walk(base, rest, follow, depth + 1);
      }
      if (!last && n.kind !== "dir") return -ENOTDIR;
      if (last) return n;
      here = next;
    }
    return this.node(here) ?? -ENOENT;
  }

  /** The node at a canonical path (no link followed), if any. */
  node(path: string): Resolved | undefined {
    if (FAIL_NTH.test(path)) return { path, kind: "file", model: path, synthetic: "fail-nth" };
    if (PAGEMAP.test(path)) return { path, kind: "file", model: path, synthetic: "pagemap" };
    if (path === "/sys/kernel/debug") return { path, kind: "dir", model: path, synthetic: "debugfs" };
    // the model's own debugfs files (iommu/intel/<bdf>/domain_translation_struct)
    if (path.startsWith("/sys/kernel/debug/iommu") && this.m.vfs.exists(path)) {
      return { path, kind: this.m.vfs.lookup(path) === undefined ? "dir" : "file", model: path };
    }
    if (path.startsWith("/sys/kernel/debug/")) {
      const [dir, attr, more] = path.slice("/sys/kernel/debug/".length).split("/");
      const attrs = DEBUGFS[dir];
      if (attrs === undefined || more !== undefined) return undefined;
      if (attr === undefined) return { path, kind: "dir", model: path, synthetic: "debugfs" };
      return attrs.includes(attr) ? { path, kind: "file", model: path, synthetic: "debugfs" } : undefined;
    }
    if (BUS_DEVICE.test(path) && this.m.vfs.exists(path)) return { path, kind: "link", model: path };
    if (this.subsystemLink(path)) return { path, kind: "link", model: path };
    if (path === "/sys/devices") return { path, kind: "dir", model: "" };
    const model = this.toModel(path);
    if (model === undefined) return undefined;
    if (model === "") return { path, kind: "dir", model: path };
    const n = this.m.vfs.lookup(model);
    if (n !== undefined) {
      const kind: NodeKind = n.type === "chr" ? "chr" : n.type === "link" ? "link" : "file";
      return { path, kind, model };
    }
    return this.m.vfs.exists(model) ? { path, kind: "dir", model } : undefined;
  }

  /** A link's target (readlink), or undefined when path is not a link. */
  linkTarget(path: string): string | undefined {
    const bus = BUS_DEVICE.exec(path);
    if (bus !== null && this.m.vfs.exists(path)) return `../../../devices/pci${bus[1].slice(0, 7)}/${bus[1]}`;
    if (this.subsystemLink(path)) return "../../../bus/pci";
    const model = this.toModel(path);
    if (model === undefined || model === "") return undefined;
    const n = this.m.vfs.lookup(model);
    return n?.type === "link" ? n.target : undefined;
  }

  /**
   * A PCI function's `subsystem` link (to /sys/bus/pci): QEMU's vfio-pci
   * takes realpath() of it to tell an mdev (/sys/bus/mdev) from a PCI device.
   */
  private subsystemLink(path: string): boolean {
    const d = DEVICE_DIR.exec(path);
    return (
      d !== null &&
      d[2] !== undefined &&
      d[3] === "/subsystem" &&
      d[2].slice(0, 7) === d[1].slice(3) &&
      this.m.vfs.exists(`/sys/bus/pci/devices/${d[2]}`)
    );
  }

  /**
   * The model's path for a canonical path: "" for a synthetic directory
   * (/sys/devices/pci0000:00), undefined when there is none.
   */
  private toModel(path: string): string | undefined {
    const d = DEVICE_DIR.exec(path);
    if (d === null) return path;
    const [, bus, bdf, rest] = d;
    if (bdf === undefined) return this.busDevices(bus).length > 0 ? "" : undefined;
    if (bdf.slice(0, 7) !== bus.slice(3)) return undefined;
    return `/sys/bus/pci/devices/${bdf}${rest ?? ""}`;
  }

  /** BDFs of the model's PCI functions on one root bus ("pci0000:00"). */
  private busDevices(bus?: string): string[] {
    let all: string[];
    try {
      all = this.m.vfs.listDir("/sys/bus/pci/devices");
    } catch {
      return [];
    }
    return all.filter((b) => bus === undefined || `pci${b.slice(0, 7)}` === bus);
  }

  /** Directory entries with their kinds, or -errno. */
  readdir(path: string): { name: string; kind: NodeKind }[] | number {
    const r = this.resolve(path, true);
    if (typeof r === "number") return r;
    if (r.kind !== "dir") return -ENOTDIR;
    let names: string[];
    if (r.synthetic === "debugfs") {
      names =
        r.path === "/sys/kernel/debug"
          ? [...Object.keys(DEBUGFS), ...(this.m.vfs.exists("/sys/kernel/debug/iommu") ? ["iommu"] : [])]
          : DEBUGFS[r.path.split("/")[4]];
    } else if (r.path === "/sys/devices") {
      names = [...new Set(this.busDevices().map((b) => `pci${b.slice(0, 7)}`))];
    } else if (DEVICE_DIR.test(r.path) && DEVICE_DIR.exec(r.path)![2] === undefined) {
      names = this.busDevices(r.path.split("/")[3]);
    } else {
      try {
        names = this.m.vfs.listDir(r.model);
      } catch {
        return -ENOENT;
      }
      if (this.subsystemLink(`${r.path}/subsystem`)) names = [...names, "subsystem"];
    }
    return names.map((name) => {
      const child = `${r.path === "/" ? "" : r.path}/${name}`;
      return { name, kind: this.node(child)?.kind ?? "file" };
    });
  }

  /** stat/lstat of a path, or -errno. */
  stat(path: string, follow: boolean): StatInfo | number {
    const r = this.resolve(path, follow);
    if (typeof r === "number") return r;
    return this.statOf(r);
  }

  statOf(r: Resolved): StatInfo {
    const ino = inodeOf(r.path);
    const sysfs = (20n << 8n) | 0n;
    switch (r.kind) {
      case "dir":
        return { mode: S_IFDIR | 0o755, nlink: 2, rdev: 0n, size: 0n, ino, dev: sysfs };
      case "link":
        return { mode: S_IFLNK | 0o777, nlink: 1, rdev: 0n, size: 0n, ino, dev: sysfs };
      case "chr": {
        const [maj, min] = this.devNumbers(r.path);
        return {
          mode: S_IFCHR | (r.path === "/dev/vfio/vfio" ? 0o666 : 0o600),
          nlink: 1,
          rdev: makedev(maj, min),
          size: 0n,
          ino,
          dev: 5n,
        };
      }
      default: {
        const node = r.synthetic === undefined ? this.m.vfs.lookup(r.model) : undefined;
        const writable = r.synthetic !== undefined || (node?.type === "attr" && node.write !== undefined);
        const size = r.model.endsWith("/config") ? 4096n : 4096n;
        return { mode: S_IFREG | (writable ? 0o644 : 0o444), nlink: 1, rdev: 0n, size, ino, dev: sysfs };
      }
    }
  }

  /** MAJOR:MINOR of a device node, as /sys/.../dev and fstat's st_rdev give them. */
  devNumbers(path: string): [number, number] {
    if (path === "/dev/iommu") return [MISC_MAJOR, IOMMUFD_MINOR];
    if (path === "/dev/vfio/vfio") return [MISC_MAJOR, VFIO_MINOR];
    const cdev = /^\/dev\/vfio\/devices\/(?:noiommu-)?vfio(\d+)$/.exec(path);
    if (cdev !== null) return [VFIO_CDEV_MAJOR, Number(cdev[1])];
    const group = /^\/dev\/vfio\/(?:noiommu-)?(\d+)$/.exec(path);
    if (group !== null) return [VFIO_GROUP_MAJOR, Number(group[1])];
    return [0, 0];
  }

  /** realpath: the canonical path of an existing node, or -errno. */
  realpath(path: string): string | number {
    const r = this.resolve(path, true);
    return typeof r === "number" ? r : r.path;
  }

  /** readlink: the target, or -errno (EINVAL when not a link). */
  readlink(path: string): string | number {
    const r = this.resolve(path, false);
    if (typeof r === "number") return r;
    if (r.kind !== "link") return -EINVAL;
    return this.linkTarget(r.path)!;
  }
}

function makedev(maj: number, min: number): bigint {
  const M = BigInt(maj);
  const m = BigInt(min);
  return ((M & 0xfffff000n) << 32n) | ((M & 0xfffn) << 8n) | ((m & 0xffffff00n) << 12n) | (m & 0xffn);
}

/** A stable inode number for a path (FNV-1a). */
function inodeOf(path: string): bigint {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193) >>> 0;
  return BigInt(h) + 1000n;
}
