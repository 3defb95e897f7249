import { EINVAL, EPERM, fail } from "../uapi/errno.js";
import { type FileOps, KFile } from "./file.js";
import type { Vfs } from "./vfs.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** An open sysfs attribute: reads give its text, writes (where allowed) set it. */
export function sysfsAttrFile(vfs: Vfs, path: string, flags: number): KFile {
  const ops: FileOps = {
    kind: "sysfs",
    read(_f, _t, len) {
      return enc.encode(vfs.readFile(path)).subarray(0, len);
    },
    pread(_f, _t, len, off) {
      const b = enc.encode(vfs.readFile(path));
      const o = Number(off > BigInt(b.length) ? BigInt(b.length) : off);
      return b.subarray(o, o + len);
    },
    write(_f, task, bytes) {
      const node = vfs.lookup(path);
      if (node?.type !== "attr" || node.write === undefined) fail(EINVAL, `${path} is read-only`);
      if (task.cred.uid !== 0) fail(EPERM, `${path} is writable by root only (mode 0644)`);
      node.write(dec.decode(bytes));
      return bytes.length;
    },
  };
  return new KFile(ops, undefined, path, flags);
}
