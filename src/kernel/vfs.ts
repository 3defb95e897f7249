import { EACCES, EISDIR, ENOENT, ENOTDIR, fail } from "../uapi/errno.js";
import type { FileOps } from "./file.js";
import type { Task } from "./task.js";

/**
 * The model's file namespace: device nodes under /dev, attributes and links
 * under /sys. Directories exist while something is inside them.
 */
export type VfsNode =
  | { type: "chr"; open(task: Task, flags: number, path: string): { ops: FileOps; priv: unknown } }
  | { type: "attr"; read(): string; write?(value: string): void }
  | { type: "link"; target: string };

export class Vfs {
  private readonly nodes = new Map<string, VfsNode>();
  private readonly dirs = new Map<string, Map<string, number>>();

  add(path: string, node: VfsNode): void {
    if (this.nodes.has(path)) throw new Error(`vfs: ${path} exists`);
    this.nodes.set(path, node);
    let p = path;
    while (p !== "/") {
      const parent = dirname(p);
      const name = p.slice(parent === "/" ? 1 : parent.length + 1);
      let d = this.dirs.get(parent);
      if (d === undefined) {
        d = new Map();
        this.dirs.set(parent, d);
      }
      d.set(name, (d.get(name) ?? 0) + 1);
      p = parent;
    }
  }

  remove(path: string): void {
    if (!this.nodes.delete(path)) return;
    let p = path;
    while (p !== "/") {
      const parent = dirname(p);
      const name = p.slice(parent === "/" ? 1 : parent.length + 1);
      const d = this.dirs.get(parent)!;
      const n = d.get(name)! - 1;
      if (n === 0) d.delete(name);
      else d.set(name, n);
      if (d.size === 0) this.dirs.delete(parent);
      p = parent;
    }
  }

  lookup(path: string): VfsNode | undefined {
    return this.nodes.get(normalize(path));
  }

  exists(path: string): boolean {
    const p = normalize(path);
    return this.nodes.has(p) || this.dirs.has(p);
  }

  /** Sorted entries of a directory; throws ENOENT / ENOTDIR. */
  listDir(path: string): string[] {
    const p = normalize(path);
    const d = this.dirs.get(p);
    if (d === undefined) {
      if (this.nodes.has(p)) fail(ENOTDIR, `${p} is not a directory`);
      fail(ENOENT, `${p} does not exist`);
    }
    return [...d.keys()].sort(naturalCompare);
  }

  /** An attribute's text or a link's target; throws ENOENT / EISDIR / EACCES. */
  readFile(path: string): string {
    const p = normalize(path);
    const n = this.nodes.get(p);
    if (n === undefined) {
      if (this.dirs.has(p)) fail(EISDIR, `${p} is a directory`);
      fail(ENOENT, `${p} does not exist`);
    }
    if (n.type === "attr") return n.read();
    if (n.type === "link") return n.target;
    return fail(EACCES, `${p} is a device node; open it instead`);
  }
}

export function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

export function normalize(p: string): string {
  const parts: string[] = [];
  for (const s of p.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") parts.pop();
    else parts.push(s);
  }
  return `/${parts.join("/")}`;
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}
