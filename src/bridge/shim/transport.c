/*
 * The socket to the iommufd-sim server: connect once per process (HELLO),
 * one round trip per call under br_lock, the reply flags that update the
 * shim's state.
 */
#include "shim.h"

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
 * One round trip; the caller holds br_lock. Returns the reply's ret;
 * the payload (up to cap bytes) goes to out and its length to *out_len.
 */
int64_t call_locked(struct br_req *rq, const void *payload, size_t plen, void *out,
		    size_t cap, size_t *out_len)
{
	struct br_rep rp;
	rq->len = (uint32_t)(sizeof(*rq) + plen);
	if (write_all(br_sock, rq, sizeof(*rq)) < 0 || (plen && write_all(br_sock, payload, plen) < 0))
		die("lost the connection to the iommufd-sim server");
	if (read_all(br_sock, &rp, sizeof(rp)) < 0)
		die("lost the connection to the iommufd-sim server");
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
	br_has_pins = (rp.flags & BR_REP_HAS_PINS) != 0;
	if (rp.flags & BR_REP_SPARE_USED) {
		set_model_fd(br_spare, 1);
		br_spare = -1;
	}
	return rp.ret;
}

static int hello(uint64_t token)
{
	struct br_req rq = {.op = BR_OP_HELLO, .a = (uint64_t)getpid(), .b = token};
	int64_t r = call_locked(&rq, NULL, 0, NULL, 0, NULL);
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
