/*
 * The wire protocol between the LD_PRELOAD shim and the iommufd-sim server
 * (src/bridge/protocol.ts mirrors these numbers; a test compares them).
 * Little-endian, fixed headers, no text on the hot path.
 *
 * Request: struct br_req, then `len - sizeof(struct br_req)` payload bytes
 * (a path or data). Reply: struct br_rep, then payload bytes.
 */
#ifndef IOMMUFD_SIM_BRIDGE_PROTO_H
#define IOMMUFD_SIM_BRIDGE_PROTO_H
#include <stdint.h>

#define BR_OP_HELLO 1        /* a = pid, b = fork token (0: a new process) -> server pid */
#define BR_OP_OPEN 2         /* fd = reserved fd, a = flags, b = mode, path -> fd */
#define BR_OP_CLOSE 3        /* fd */
#define BR_OP_IOCTL 4        /* fd, fd2 = spare fd, a = request, b = arg */
#define BR_OP_READ 5         /* fd, a = len, c = buffer: the server writes the program's memory */
#define BR_OP_WRITE 6        /* fd, a = len, c = buffer: the server reads it */
#define BR_OP_PREAD 7        /* fd, a = len, b = offset, c = buffer */
#define BR_OP_PWRITE 8       /* fd, a = len, b = offset, c = buffer */
#define BR_OP_STAT 9         /* a = BR_STAT_NOFOLLOW?, path -> struct br_stat */
#define BR_OP_FSTAT 10       /* fd -> struct br_stat */
#define BR_OP_READLINK 11    /* path -> target */
#define BR_OP_READDIR 12     /* path -> entries: u8 d_type, u8 name length, name */
#define BR_OP_REALPATH 13    /* path -> canonical path */
#define BR_OP_DUP 14         /* fd = old, fd2 = new */
#define BR_OP_FORK 15        /* -> token for the child's HELLO */
#define BR_OP_FORK_DONE 16   /* a = token, b = child pid (or -errno: the fork failed) */
#define BR_OP_EXIT 17        /* a = status */
#define BR_OP_DETACH 18      /* a = va, b = len: memory about to leave the process */
#define BR_OP_LSEEK 19       /* fd, a = offset, b = whence -> new offset */
#define BR_OP_MMAP 20        /* fd, a = len, b = offset, c = prot | flags << 32, payload u64 va */
#define BR_OP_PING 21        /* nothing: a round trip (the benchmark) */
#define BR_OP_MUNMAP 22      /* a = va, b = len: a device mapping leaves the process */
#define BR_OP_MMIO 23        /* a = va, b = len, c = value; flags BR_MMIO_WRITE -> payload (a load) */
#define BR_OP_MREMAP 24      /* a = old va, b = len, c = new va: a device mapping moves */
#define BR_OP_HUGETLB 25     /* a = va, b = len, c = page shift | BR_HUGETLB_NORESERVE; flags BR_HUGETLB_UNMAP */
#define BR_OP_HUGETLB_FD 30  /* fd = a real memfd, a = memfd_create flags, name: back it with the model's hugetlb pool */
#define BR_OP_HUGETLB_MMAP 31 /* fd, a = len, b = offset -> 1 (hugetlb: map it), 0 (not), -errno */
#define BR_OP_CRED 32        /* a = CapEff, b = RLIMIT_MEMLOCK (~0: unlimited): the thread's credentials changed */
#define BR_OP_NUDGE 40       /* no reply: look at the channel (a = the seq posted) */

#define BR_STAT_NOFOLLOW 1
#define BR_MMIO_WRITE 1
#define BR_HUGETLB_UNMAP 1
#define BR_HUGETLB_NORESERVE 256

/* ret of BR_OP_MMIO: the kernel would deliver SIGBUS (the device refused) or SIGSEGV */
#define BR_MMIO_SIGBUS (-5)

/* reply flags */
#define BR_REP_SPARE_USED 1  /* the model installed a file at the spare fd */
#define BR_REP_HAS_PINS 2    /* the model holds pins on this process's memory */
#define BR_REP_IRQS 4        /* the payload starts with u32 n, n x i32 eventfd: write 1 to each */
#define BR_REP_CHANNEL 8     /* HELLO: the server polls the channel the request named */
#define BR_REP_WAKE 16       /* not a reply: a wake-up for a shim asleep on the channel */

/* request flags */
#define BR_REQ_PREFETCH 1    /* IOCTL: the payload is the memory at b as the call began */
#define BR_REQ_CHANNEL 2     /* HELLO: c = the fd of this process's channel */

/*
 * The channel: a memfd (named BR_CHAN_NAME) of BR_CHAN_SIZE bytes the shim
 * maps shared and the server reads and writes with pread/pwrite. The shim
 * writes a request (struct br_req at BR_CHAN_REQ, payload at
 * BR_CHAN_REQ_PAYLOAD), then the u32 seq copy at BR_CHAN_REQ_SEQ2, then
 * the u32 seq at 0 (the CPU it posted from at BR_CHAN_CPU, before the
 * seqs: a polling server that finds itself on that CPU moves off it); it nudges over the socket unless the u32 at BR_CHAN_SRV
 * says the server is polling. The server answers at BR_CHAN_REP: u32 seq,
 * u32 0, struct br_rep, u32 seq copy (payload first, at BR_CHAN_REP_PAYLOAD).
 * A shim that sleeps on the socket for its reply sets the u32 at
 * BR_CHAN_SLEEP to the seq first; the server then sends a BR_REP_WAKE
 * reply over the socket once it answered that seq.
 */
#define BR_CHAN_NAME "iommufd-sim-chan"
#define BR_CHAN_SIZE 16384
#define BR_CHAN_SLEEP 4
#define BR_CHAN_REQ 8
#define BR_CHAN_REQ_SEQ2 48
#define BR_CHAN_CPU 52
#define BR_CHAN_REQ_PAYLOAD 64
#define BR_CHAN_REQ_MAX 8128
#define BR_CHAN_SRV 8192
#define BR_CHAN_REP 8256
#define BR_CHAN_REP_PAYLOAD 8320
#define BR_CHAN_REP_MAX 8064

/* ret of a path call whose path the model does not have: do the real call */
#define BR_PASSTHROUGH (-100000)

struct br_req {
	uint32_t len;
	uint16_t op;
	uint16_t flags;
	int32_t fd;
	int32_t fd2;
	uint64_t a;
	uint64_t b;
	uint64_t c;
};

struct br_rep {
	uint32_t len;
	uint32_t flags;
	int64_t ret;
};

struct br_stat {
	uint32_t mode;
	uint32_t nlink;
	uint64_t rdev;
	uint64_t size;
	uint64_t ino;
	uint64_t dev;
};

#define BR_MAX_PAYLOAD (1u << 20)
#endif
