// ioctl request encoding, as include/uapi/asm-generic/ioctl.h lays it out
// (x86-64, arm64, riscv all use the generic layout):
//   bits 0-7 nr, bits 8-15 type, bits 16-29 size, bits 30-31 direction.
// Every IOMMUFD and VFIO command uses plain _IO (dir 0, size 0): the struct
// size travels inside the struct (`size` / `argsz`), never in the request.

export const _IOC_NRBITS = 8;
export const _IOC_TYPEBITS = 8;
export const _IOC_SIZEBITS = 14;
export const _IOC_DIRBITS = 2;

export const _IOC_NRSHIFT = 0;
export const _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS; // 8
export const _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS; // 16
export const _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS; // 30

export const _IOC_NRMASK = (1 << _IOC_NRBITS) - 1;
export const _IOC_TYPEMASK = (1 << _IOC_TYPEBITS) - 1;
export const _IOC_SIZEMASK = (1 << _IOC_SIZEBITS) - 1;
export const _IOC_DIRMASK = (1 << _IOC_DIRBITS) - 1;

export const _IOC_NONE = 0;
export const _IOC_WRITE = 1;
export const _IOC_READ = 2;

/** An ioctl "type" byte: a number 0..255 or a one-character string such as ";". */
export type IocType = number | string;

function typeByte(type: IocType): number {
  if (typeof type === "string") {
    if (type.length !== 1)
      throw new RangeError(`ioctl type must be one character, got ${JSON.stringify(type)}`);
    type = type.charCodeAt(0);
  }
  return type;
}

function checkRange(what: string, v: number, mask: number): void {
  if (!Number.isInteger(v) || v < 0 || v > mask) {
    throw new RangeError(`ioctl ${what} ${v} out of range 0..${mask}`);
  }
}

/** The request number, as an unsigned 32-bit value. Throws RangeError on out-of-range parts. */
export function _IOC(dir: number, type: IocType, nr: number, size: number): number {
  const t = typeByte(type);
  checkRange("dir", dir, _IOC_DIRMASK);
  checkRange("type", t, _IOC_TYPEMASK);
  checkRange("nr", nr, _IOC_NRMASK);
  checkRange("size", size, _IOC_SIZEMASK);
  return (
    ((dir << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (t << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)) >>> 0
  );
}

export function _IO(type: IocType, nr: number): number {
  return _IOC(_IOC_NONE, type, nr, 0);
}

/** `size` is sizeof(the argument type) in bytes. */
export function _IOR(type: IocType, nr: number, size: number): number {
  return _IOC(_IOC_READ, type, nr, size);
}

export function _IOW(type: IocType, nr: number, size: number): number {
  return _IOC(_IOC_WRITE, type, nr, size);
}

export function _IOWR(type: IocType, nr: number, size: number): number {
  return _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);
}

export function _IOC_DIR(req: number): number {
  return (req >>> _IOC_DIRSHIFT) & _IOC_DIRMASK;
}
export function _IOC_TYPE(req: number): number {
  return (req >>> _IOC_TYPESHIFT) & _IOC_TYPEMASK;
}
export function _IOC_NR(req: number): number {
  return (req >>> _IOC_NRSHIFT) & _IOC_NRMASK;
}
export function _IOC_SIZE(req: number): number {
  return (req >>> _IOC_SIZESHIFT) & _IOC_SIZEMASK;
}

export interface IocFields {
  dir: number;
  type: number;
  nr: number;
  size: number;
}

/**
 * Split a request into its parts. The kernel's `cmd` is an `unsigned int`, so
 * a bigint or a number wider than 32 bits is truncated to its low 32 bits first.
 */
export function iocDecode(req: number | bigint): IocFields {
  const r =
    typeof req === "bigint" ? Number(BigInt.asUintN(32, req)) : Number(BigInt.asUintN(32, BigInt(req)));
  return { dir: _IOC_DIR(r), type: _IOC_TYPE(r), nr: _IOC_NR(r), size: _IOC_SIZE(r) };
}

/** "_IO(';', 0x85)" or "_IOWR('V', 0x1, 24)": how a request reads in C. */
export function iocFormat(req: number | bigint): string {
  const { dir, type, nr, size } = iocDecode(req);
  const t = type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : `0x${type.toString(16)}`;
  const n = `0x${nr.toString(16)}`;
  switch (dir) {
    case _IOC_NONE:
      return size === 0 ? `_IO(${t}, ${n})` : `_IOC(0, ${t}, ${n}, ${size})`;
    case _IOC_READ:
      return `_IOR(${t}, ${n}, ${size})`;
    case _IOC_WRITE:
      return `_IOW(${t}, ${n}, ${size})`;
    default:
      return `_IOWR(${t}, ${n}, ${size})`;
  }
}
