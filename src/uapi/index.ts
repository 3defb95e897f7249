// The user API layer: what user space (and the trace) knows about the kernel's
// binary interface. Request numbers, struct layouts and codecs, flag and enum
// values, errno values, and the UAPI differences between kernel profiles.
// Nothing here has behaviour beyond encoding rules; the kernel layers import it.

export * from "./errno.js";
export * from "./ioc.js";
export * from "./iommufd.js";
export * from "./linux.js";
export * from "./profiles.js";
export * from "./struct.js";
export * from "./vfio.js";
