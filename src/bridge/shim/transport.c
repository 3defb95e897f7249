/*
 * The way to the iommufd-sim server: connect once per process (HELLO),
 * one round trip per call under br_lock, the reply flags that update the
 * shim's state.
 *
 * A round trip goes through the process's channel when it has one: a
 * shared memfd the server reads and writes with pread/pwrite
 * (bridge-proto.h has the layout). The shim writes the request and spins
 * on the reply; the server polls the channel while it is active. Nothing
 * sleeps on the fast path, so no round trip pays for a cross-CPU wake-up
 * (several µs in a VM, more than the model's own work). The socket stays
 * for HELLO, the calls too big for the channel, and the nudges: the shim
 * nudges when the server is not polling, and before it gives up spinning
 * and sleeps until the server's wake-up (a reply with BR_REP_WAKE).
 */
#include "shim.h"

#include <poll.h>
#include <sched.h>
#include <time.h>

pthread_mutex_t br_lock = PTHREAD_MUTEX_INITIALIZER;
int br_sock = -1;
int br_disabled;
int br_spare = -1;
int br_has_pins;

void die(const char *msg)
{
	resolve_write();
	real_write(2, "iommufd-sim shim: ", 18);
	real_write(2, msg, strlen(msg));
	real_write(2, "\n", 1);
	resolve__exit();
	real__exit(127);
	__builtin_unreachable();
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int hello(uint64_t token);

/* ------------------------------------------------------------ the channel */

static uint8_t *chan;     /* the mapping, NULL: no channel (every call over the socket) */
static int chan_on;       /* the server accepted it */
static uint32_t chan_seq; /* the last request posted */
static pid_t chan_pid;    /* getpid() as of the channel (a fork's child makes its own) */

/*
 * How long the shim spins on a reply before it sleeps. Spinning is what
 * keeps a round trip fast: a sleeping shim pays a wake-up (tens of µs in
 * a VM), and the server's wake-up, a sync one from a thread that keeps
 * running, tends to put the shim on the server's own CPU. It costs
 * little while replies come in time, less than the wake-up it saves, so
 * the shim spins on every call up to SPIN_BUSY_NS and then looks at the
 * machine, again after twice as long each time (up to LOOK_MAX_NS), up
 * to spin_max (SPIN_MAX_NS, or IOMMUFD_SIM_SPIN_NS; 0: never spin),
 * yielding its CPU at each look (were it sharing the server's CPU, the
 * server then runs, and moves to another CPU: server.ts stepAside). When
 * a look, and another right after a second yield (one look sees a
 * passing kernel thread now and then), find more runnable tasks than
 * CPUs (/proc/loadavg's instantaneous count, this thread included), the
 * shim sleeps: spinning then takes a CPU from someone who needs it, the
 * server perhaps. Such a miss halves the next call's budget and a second
 * one makes the shim sleep at once; it then tries a spin again every
 * LOOK_CALLS calls (at most every QUIET_TTL_NS), and spins on while that
 * reply comes in time.
 */
#define SPIN_MAX_NS 10000000
#define SPIN_BUSY_NS 50000
#define LOOK_MAX_NS 1000000
#define QUIET_TTL_NS 1000000
#define LOOK_CALLS 16
static uint64_t spin_max = SPIN_MAX_NS;
/* This call's spin before the first look at the machine (0: sleep at once). */
static uint64_t spin_budget = SPIN_BUSY_NS;
/* When the sleeping shim last tried a spin (ns), and the calls since. */
static uint64_t looked_at;
static unsigned since_look;
static long ncpu;
/* /proc/loadavg, or IOMMUFD_SIM_LOADAVG: a test's machine, quiet or loaded. */
static char loadavg[PATH_MAX] = "/proc/loadavg";
/* A prefetched ioctl struct: at most this many bytes, never past arg's page. */
#define PREFETCH_MAX 256

#define CHAN_U32(off) ((uint32_t *)(chan + (off)))

/* The spin budget while replies come in time. */
static uint64_t full_budget(void)
{
	return spin_max < SPIN_BUSY_NS ? spin_max : SPIN_BUSY_NS;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A fresh channel for this process; its fd (for HELLO), or -1 (the calls use the socket). */
static int chan_create(void)
{
	/* fork's child inherits no mapping (MADV_DONTFORK): it makes its own */
	chan = NULL;
	chan_on = 0;
	chan_seq = 0;
	chan_pid = getpid();
	const char *e = getenv("IOMMUFD_SIM_SPIN_NS");
	if (e && *e)
		spin_max = strtoull(e, NULL, 10);
	spin_budget = full_budget();
	looked_at = 0;
	since_look = 0;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	e = getenv("IOMMUFD_SIM_LOADAVG");
	if (e && *e && strlen(e) < sizeof(loadavg))
		strcpy(loadavg, e);
	int fd = (int)syscall(SYS_memfd_create, BR_CHAN_NAME, 3u /* MFD_CLOEXEC | MFD_ALLOW_SEALING */);
	if (fd < 0)
		return -1;
	void *p = MAP_FAILED;
	/* sealed at its size: the server maps it too, and a file cut short would fault there */
	if (ftruncate(fd, BR_CHAN_SIZE) == 0 &&
	    syscall(SYS_fcntl, fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
		p = (void *)syscall(SYS_mmap, NULL, (size_t)BR_CHAN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || (uintptr_t)p > (uintptr_t)-4096) {
		resolve_close();
		real_close(fd);
		return -1;
	}
	syscall(SYS_madvise, p, (size_t)BR_CHAN_SIZE, MADV_DONTFORK);
	chan = p;
	return fd;
}

static void nudge(uint32_t seq)
{
	struct br_req rq = {.len = sizeof(rq), .op = BR_OP_NUDGE, .a = seq};
	if (write_all(br_sock, &rq, sizeof(rq)) < 0)
		die("lost the connection to the iommufd-sim server");
}

static int replied(uint32_t seq)
{
	return __atomic_load_n(CHAN_U32(BR_CHAN_REP), __ATOMIC_ACQUIRE) == seq &&
	       __atomic_load_n(CHAN_U32(BR_CHAN_REP + 24), __ATOMIC_ACQUIRE) == seq;
}

/*
 * Whether every runnable task has a CPU: /proc/loadavg's running count
 * (this thread included) against the CPUs online. About 3 µs; raw
 * syscalls, since the shim's own open would look at the path.
 */
static int machine_quiet(void)
{
	char b[128];
	int fd = (int)syscall(SYS_openat, AT_FDCWD, loadavg, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = syscall(SYS_read, fd, b, sizeof(b) - 1);
	syscall(SYS_close, fd);
	if (n <= 0)
		return 0;
	b[n] = 0;
	/* "0.06 0.10 0.20 2/190 1234": the fourth field's first number */
	const char *p = b;
	for (int i = 0; i < 3 && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	long r = p ? strtol(p, NULL, 10) : 0;
	return r >= 1 && r <= ncpu;
}

/* This call's spin budget (ns): 0 means sleep at once (and say so before posting). */
static uint64_t spin_for_call(void)
{
	if (spin_budget > 0 || spin_max == 0)
		return spin_budget;
	/* (a program that calls rarely gains little from spinning: it tries only after LOOK_CALLS) */
	if (++since_look < LOOK_CALLS)
		return 0;
	uint64_t t = now_ns();
	if (t - looked_at < QUIET_TTL_NS)
		return 0;
	looked_at = t;
	since_look = 0;
	/* a try: a reply in time gives back the full budget, a miss on a loaded machine takes it again */
	return full_budget();
}

static int server_polling(void)
{
	/* (a full fence first: the server clears the flag, then looks at the channel once more) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(CHAN_U32(BR_CHAN_SRV), __ATOMIC_ACQUIRE) != 0;
}

/*
 * Spin up to budget ns, on to spin_max while the machine is quiet and the
 * server has a CPU of its own, then
 * sleep on the socket until the server wakes us: BR_CHAN_SLEEP = seq asks
 * for the wake-up (set before posting when the budget is 0).
 */
static void wait_reply(uint32_t seq, uint64_t budget)
{
	uint64_t t0 = 0, until = budget, gap = budget;
	int busy = 0;
	for (unsigned i = 0; budget > 0; i++) {
		if (replied(seq)) {
			spin_budget = full_budget();
			return;
		}
		if ((i & 63) != 63) {
			__builtin_ia32_pause();
			continue;
		}
		uint64_t t = now_ns();
		if (t0 == 0)
			t0 = t;
		if (t - t0 <= until)
			continue;
		if (t - t0 >= spin_max)
			break;
		/* (were it sharing the server's CPU, yielding lets the server run, and it moves off) */
		sched_yield();
		/* loaded: yield and look once more (one look sees a passing kernel thread now and then) */
		if (!machine_quiet()) {
			sched_yield();
			if (!machine_quiet()) {
				busy = 1;
				break;
			}
		}
		gap = gap * 2 < LOOK_MAX_NS ? gap * 2 : LOOK_MAX_NS;
		until = t - t0 + gap;
	}
	if (budget > 0) {
		/* a miss on a loaded machine: half the budget once (a pause of the server's: its GC),
		   then sleep at once; a long call on a quiet machine changes nothing */
		if (busy) {
			spin_budget = spin_budget == full_budget() ? spin_budget / 2 : 0;
			looked_at = now_ns();
			since_look = 0;
		}
		__atomic_store_n(CHAN_U32(BR_CHAN_SLEEP), seq, __ATOMIC_SEQ_CST);
		if (replied(seq))
			return;
		/* a polling server sees the flag at its next look; one in its event loop needs the socket */
		if (!server_polling())
			nudge(seq);
	}
	while (!replied(seq)) {
		struct pollfd pf = {.fd = br_sock, .events = POLLIN};
		int n = poll(&pf, 1, 100);
		if (n < 0 && errno != EINTR)
			die("lost the connection to the iommufd-sim server");
		if (n <= 0 || replied(seq))
			continue;
		/* wake-ups (stale ones included): drain them, then look again */
		struct br_rep rp;
		ssize_t k = recv(br_sock, &rp, sizeof(rp), MSG_DONTWAIT);
		if (k == 0 && !replied(seq))
			die("lost the connection to the iommufd-sim server");
		if (k > 0 && (k != sizeof(rp) || !(rp.flags & BR_REP_WAKE)))
			die("malformed wake-up from the iommufd-sim server");
	}
}

/*
 * A round trip through the channel. An ioctl's struct goes with it (as
 * much of arg's page as the kernel could read, up to PREFETCH_MAX), so a
 * call the model answers from the struct alone needs no read of
 * /proc/PID/mem; process_vm_readv on ourselves fails cleanly where arg is
 * no readable address.
 */
static struct br_rep chan_call(struct br_req *rq, const void *payload, size_t plen, void *out,
			       size_t cap, size_t *out_len)
{
	uint8_t *pl = chan + BR_CHAN_REQ_PAYLOAD;
	if (plen)
		memcpy(pl, payload, plen);
	else if (rq->op == BR_OP_IOCTL && rq->b >= 4096) {
		size_t n = 4096 - (size_t)(rq->b & 4095);
		if (n > PREFETCH_MAX)
			n = PREFETCH_MAX;
		struct iovec lo = {pl, n}, re = {(void *)(uintptr_t)rq->b, n};
		ssize_t got = process_vm_readv(chan_pid, &lo, 1, &re, 1, 0);
		if (got > 0) {
			plen = (size_t)got;
			rq->flags |= BR_REQ_PREFETCH;
		}
	}
	rq->len = (uint32_t)(sizeof(*rq) + plen);
	memcpy(chan + BR_CHAN_REQ, rq, sizeof(*rq));
	uint32_t seq = ++chan_seq;
	if (seq == 0)
		seq = ++chan_seq;
	uint64_t budget = spin_for_call();
	if (budget == 0)
		__atomic_store_n(CHAN_U32(BR_CHAN_SLEEP), seq, __ATOMIC_RELEASE);
	__atomic_store_n(CHAN_U32(BR_CHAN_CPU), (uint32_t)sched_getcpu(), __ATOMIC_RELAXED);
	__atomic_store_n(CHAN_U32(BR_CHAN_REQ_SEQ2), seq, __ATOMIC_RELEASE);
	__atomic_store_n(CHAN_U32(0), seq, __ATOMIC_SEQ_CST);
	if (!server_polling())
		nudge(seq);
	wait_reply(seq, budget);
	struct br_rep rp;
	memcpy(&rp, chan + BR_CHAN_REP + 8, sizeof(rp));
	size_t n = rp.len - sizeof(rp);
	if (rp.len < sizeof(rp) || n > BR_CHAN_REP_MAX)
		die("malformed reply from the iommufd-sim server");
	const uint8_t *pl_in = chan + BR_CHAN_REP_PAYLOAD;
	if (rp.flags & BR_REP_IRQS) {
		/* interrupts first, as on the socket (signal_irqs) */
		uint32_t k;
		memcpy(&k, pl_in, 4);
		if (n < 4 || (size_t)k > (n - 4) / 4)
			die("malformed interrupt list from the iommufd-sim server");
		for (uint32_t i = 0; i < k; i++) {
			int32_t fd;
			memcpy(&fd, pl_in + 4 + 4 * i, 4);
			uint64_t one = 1;
			syscall(SYS_write, fd, &one, sizeof(one));
		}
		pl_in += 4 + 4 * (size_t)k;
		n -= 4 + 4 * (size_t)k;
	}
	size_t keep = n < cap ? n : cap;
	if (keep)
		memcpy(out, pl_in, keep);
	if (out_len)
		*out_len = keep;
	return rp;
}

/* Connect (once per process); the caller holds br_lock. 0, or -1 when the bridge is off. */
int connect_locked(uint64_t token)
{
	if (br_sock >= 0)
		return 0;
	if (br_disabled)
		return -1;
	const char *path = getenv("IOMMUFD_SIM_SOCKET");
	if (!path || !*path) {
		br_disabled = 1;
		return -1;
	}
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("cannot create a socket");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		die("IOMMUFD_SIM_SOCKET is too long");
	strcpy(sa.sun_path, path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("cannot connect to the iommufd-sim server (IOMMUFD_SIM_SOCKET)");
	/* keep the socket out of the program's way: a high fd number */
	struct rlimit rl;
	int floor = 900;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024)
		floor = (int)rl.rlim_cur / 2;
	resolve_fcntl();
	int hi = real_fcntl(s, F_DUPFD_CLOEXEC, floor);
	if (hi >= 0) {
		resolve_close();
		real_close(s);
		s = hi;
	}
	br_sock = s;
	if (hello(token) < 0)
		die("the iommufd-sim server refused this process");
	return 0;
}

/* One reply over the socket, past any stale wake-up. */
static struct br_rep sock_reply(void)
{
	struct br_rep rp;
	do {
		if (read_all(br_sock, &rp, sizeof(rp)) < 0)
			die("lost the connection to the iommufd-sim server");
	} while ((rp.flags & BR_REP_WAKE) && rp.len == sizeof(rp));
	return rp;
}

/*
 * Interrupts the model raised during the call: u32 count, then the real
 * eventfds to write 1 to, before the call returns to the program (so the
 * eventfd is readable once the ioctl, pwrite or MMIO store that caused it
 * is done). Returns the payload bytes left.
 */
static size_t signal_irqs(size_t n)
{
	uint32_t k;
	if (n < 4 || read_all(br_sock, &k, 4) < 0 || (size_t)k > (n - 4) / 4)
		die("malformed interrupt list from the iommufd-sim server");
	for (uint32_t i = 0; i < k; i++) {
		int32_t fd;
		if (read_all(br_sock, &fd, 4) < 0)
			die("lost the connection to the iommufd-sim server");
		uint64_t one = 1;
		/* a raw write: this may run in the MMIO trap (a signal handler) */
		syscall(SYS_write, fd, &one, sizeof(one));
	}
	return n - 4 - 4 * (size_t)k;
}

/*
 * The credentials the server has for this process: CapEff and
 * RLIMIT_MEMLOCK as of the last call that could check them. A libcap drop
 * (capset), setrlimit or prctl after the process joined changes them
 * without a call the shim sees, so an open or ioctl looks first (two cheap
 * syscalls) and tells the server when they changed.
 */
static uint64_t cred_caps, cred_memlock;

static void cred_read(uint64_t *caps, uint64_t *memlock)
{
	struct {
		uint32_t version;
		int pid;
	} h = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
	struct {
		uint32_t effective, permitted, inheritable;
	} d[2] = {{0}};
	*caps = syscall(SYS_capget, &h, d) == 0 ? (d[0].effective | (uint64_t)d[1].effective << 32) : cred_caps;
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		*memlock = cred_memlock;
	else
		*memlock = rl.rlim_cur == RLIM_INFINITY ? ~0ull : (uint64_t)rl.rlim_cur;
}

int64_t call_locked(struct br_req *rq, const void *payload, size_t plen, void *out,
		    size_t cap, size_t *out_len);

static void cred_sync_locked(void)
{
	uint64_t caps, memlock;
	cred_read(&caps, &memlock);
	if (caps == cred_caps && memlock == cred_memlock)
		return;
	cred_caps = caps;
	cred_memlock = memlock;
	struct br_req rq = {.op = BR_OP_CRED, .a = caps, .b = memlock};
	call_locked(&rq, NULL, 0, NULL, 0, NULL);
}

/*
 * One round trip; the caller holds br_lock. Returns the reply's ret;
 * the payload (up to cap bytes) goes to out and its length to *out_len.
 */
int64_t call_locked(struct br_req *rq, const void *payload, size_t plen, void *out,
		    size_t cap, size_t *out_len)
{
	struct br_rep rp;
	if (rq->op == BR_OP_IOCTL || rq->op == BR_OP_OPEN)
		cred_sync_locked();
	/* (room beside the payload for up to 1024 interrupts) */
	if (chan_on && plen <= BR_CHAN_REQ_MAX && cap <= BR_CHAN_REP_MAX - 4100) {
		rp = chan_call(rq, payload, plen, out, cap, out_len);
		goto flags;
	}
	rq->len = (uint32_t)(sizeof(*rq) + plen);
	if (write_all(br_sock, rq, sizeof(*rq)) < 0 || (plen && write_all(br_sock, payload, plen) < 0))
		die("lost the connection to the iommufd-sim server");
	rp = sock_reply();
	size_t n = rp.len - sizeof(rp);
	if (rp.len < sizeof(rp) || n > BR_MAX_PAYLOAD)
		die("malformed reply from the iommufd-sim server");
	if (rp.flags & BR_REP_IRQS)
		n = signal_irqs(n);
	size_t keep = n < cap ? n : cap;
	if (keep && read_all(br_sock, out, keep) < 0)
		die("lost the connection to the iommufd-sim server");
	for (size_t left = n - keep; left > 0;) {
		char sink[512];
		size_t k = left < sizeof(sink) ? left : sizeof(sink);
		if (read_all(br_sock, sink, k) < 0)
			die("lost the connection to the iommufd-sim server");
		left -= k;
	}
	if (out_len)
		*out_len = keep;
flags:
	br_has_pins = (rp.flags & BR_REP_HAS_PINS) != 0;
	if (rp.flags & BR_REP_SPARE_USED) {
		set_model_fd(br_spare, 1);
		br_spare = -1;
	}
	return rp.ret;
}

static int hello(uint64_t token)
{
	/* the server reads them from /proc/PID/status as it takes this process in (a fork's child: the parent's) */
	cred_read(&cred_caps, &cred_memlock);
	int cfd = chan_create();
	struct br_req rq = {.op = BR_OP_HELLO, .a = (uint64_t)getpid(), .b = token};
	if (cfd >= 0) {
		rq.flags = BR_REQ_CHANNEL;
		rq.c = (uint64_t)cfd;
	}
	rq.len = sizeof(rq);
	if (write_all(br_sock, &rq, sizeof(rq)) < 0)
		die("lost the connection to the iommufd-sim server");
	struct br_rep rp = sock_reply();
	if (rp.len != sizeof(rp))
		die("malformed reply from the iommufd-sim server");
	/* the server opened the channel through /proc/PID/fd or never will: the mapping keeps it */
	if (cfd >= 0) {
		resolve_close();
		real_close(cfd);
	}
	chan_on = chan != NULL && (rp.flags & BR_REP_CHANNEL) != 0;
	br_has_pins = (rp.flags & BR_REP_HAS_PINS) != 0;
	int64_t r = rp.ret;
	if (r < 0)
		return -1;
	/* serve: the server is not our parent; let it read our memory under Yama */
	prctl(PR_SET_PTRACER, (unsigned long)r, 0, 0, 0);
	return 0;
}

/* A full call: connect if needed, lock, round trip. -errno when the bridge is off. */
int64_t call(struct br_req *rq, const void *payload, size_t plen, void *out, size_t cap,
	     size_t *out_len)
{
	pthread_mutex_lock(&br_lock);
	if (connect_locked(0) < 0) {
		pthread_mutex_unlock(&br_lock);
		return BR_PASSTHROUGH;
	}
	int64_t r = call_locked(rq, payload, plen, out, cap, out_len);
	pthread_mutex_unlock(&br_lock);
	return r;
}

long ret_errno(int64_t r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return (long)r;
}
