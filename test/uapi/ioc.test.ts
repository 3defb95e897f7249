import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { _IO, _IOC, _IOR, _IOW, _IOWR, iocDecode, iocFormat } from "../../src/uapi/ioc.js";

describe("ioctl encoding (asm-generic/ioctl.h)", () => {
  it("_IO puts type in bits 8-15 and nr in 0-7", () => {
    expect(_IO(";", 0x85)).toBe(0x3b85);
    expect(_IO(0x3b, 0x64)).toBe(0x3b64);
  });

  it("direction bits 30-31 and size bits 16-29", () => {
    // Known x86-64 values: KVM_GET_API_VERSION _IO(0xAE, 0) and
    // KVM_CREATE_VCPU-like shapes; VFIO/iommufd use none of the sized forms.
    expect(_IOR("T", 0x13, 8)).toBe(0x80085413);
    expect(_IOW("T", 0x14, 8)).toBe(0x40085414);
    expect(_IOWR("V", 0x01, 24)).toBe(0xc0185601);
    expect(_IOC(3, 0xff, 0xff, 0x3fff)).toBe(0xffffffff);
  });

  it("returns unsigned numbers", () => {
    expect(_IOR(0xff, 0xff, 0x3fff)).toBeGreaterThan(0);
    expect(_IOWR("a", 1, 1)).toBe(0xc0016101);
  });

  it("rejects out-of-range parts", () => {
    expect(() => _IOC(4, 0, 0, 0)).toThrow(RangeError);
    expect(() => _IOC(0, 256, 0, 0)).toThrow(RangeError);
    expect(() => _IOC(0, 0, 256, 0)).toThrow(RangeError);
    expect(() => _IOC(0, 0, 0, 1 << 14)).toThrow(RangeError);
    expect(() => _IO("ab", 0)).toThrow(RangeError);
  });

  it("iocDecode inverts _IOC", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0x3fff }),
        (dir, type, nr, size) => {
          expect(iocDecode(_IOC(dir, type, nr, size))).toEqual({ dir, type, nr, size });
        },
      ),
    );
  });

  it("iocDecode truncates to 32 bits like the kernel's unsigned int cmd", () => {
    expect(iocDecode(0x1_0000_3b85n)).toEqual({ dir: 0, type: 0x3b, nr: 0x85, size: 0 });
    expect(iocDecode(0xc0185601)).toEqual({ dir: 3, type: 0x56, nr: 1, size: 24 });
  });

  it("iocFormat reads like C", () => {
    expect(iocFormat(0x3b85)).toBe("_IO(';', 0x85)");
    expect(iocFormat(0xc0185601)).toBe("_IOWR('V', 0x1, 24)");
    expect(iocFormat(0x80085413)).toBe("_IOR('T', 0x13, 8)");
  });
});
