/**
 * What an errno usually means on these interfaces (uapi.md §7). The model's
 * own reason, printed above it, names the exact rule that fired.
 */
export const ERRNO_MEANING: Record<string, string> = {
  EPERM: "the caller lacks a capability the operation needs (CAP_SYS_RAWIO, CAP_SYS_RESOURCE, ...)",
  ENOENT:
    "no such path, object ID or mapping (iommufd UNMAP: nothing mapped in the range, or an area only partly covered)",
  EBADF: "the fd is not open",
  EBADFD: "the fd is open but is the wrong kind of file (e.g. not an iommufd)",
  EFAULT: "a user pointer does not point at mapped memory",
  EBUSY: "the object or device is in use (open elsewhere, still referenced, or pinned)",
  EEXIST: "the IOVA range overlaps an existing mapping; existing IOVA is never replaced",
  EINVAL:
    "an argument breaks a rule of the call (size below the minimum, misaligned IOVA, no READ/WRITE, call made in the wrong state)",
  ENOTTY: "no such ioctl on this kind of file or kernel (or the request's size/direction bits are wrong)",
  EOPNOTSUPP: "unknown flags, non-zero reserved fields, or an unsupported op",
  E2BIG: "the user struct is longer than the kernel's and the extra bytes are not zero",
  EOVERFLOW: "an IOVA or length at or above ULONG_MAX, or start + length wraps",
  ENOSPC: "no free IOVA hole large enough in the allowed ranges",
  ENOMEM: "out of memory, or RLIMIT_MEMLOCK would be exceeded by pinning",
  ENODEV: "the thing the call needs is not there (no compat IOAS, no IOMMU for the device)",
  EMSGSIZE: "the user array is too small; the needed count was written back",
  ESRCH: "the process has exited",
  EIO: "an internal model error (a bug in the simulator, counted in counters().internalErrors)",
};
