/*
 * The bridge benchmark's client: a failing ioctl forwarded by the shim to
 * the model (IOMMU_IOAS_ALLOC with a short size: EINVAL) against a failing
 * ioctl of the real kernel (ENOTTY on /dev/null, made with syscall(2) so the
 * shim does not see it), and the floors a bridge pays on this machine: a
 * 16-byte request and reply between two C processes over a Unix socket
 * (each side sleeps, so each direction is a wake-up), and a request and
 * reply between two C processes spinning on shared memory (the bridge's
 * channel when both sides are spinning; on a loaded machine, where the two
 * share a CPU, it is a time slice instead). Prints one JSON line of ns per
 * call: the forwarded ioctl's mean (the loop's time over its calls) and
 * its 50th, 90th and 99th percentiles (each call timed on its own), after
 * as many calls again to warm up (the server's JIT compiles its hot path
 * over the first few thousand calls), whose mean is reported too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	int iommufd = open("/dev/iommu", O_RDWR);
	int null = open("/dev/null", O_RDWR);
	if (iommufd < 0 || null < 0)
		return 2;
	struct { uint32_t size, flags, out_ioas_id; } bad = {8, 0, 0};
	unsigned long req = _IO(';', 0x81);
	double w0 = now_ns();
	for (long i = 0; i < n; i++)
		ioctl(iommufd, req, &bad);
	double warmup = (now_ns() - w0) / (double)n;
	uint64_t *each = malloc((size_t)n * sizeof(*each));
	if (!each)
		return 2;
	double t0 = now_ns(), t = t0;
	for (long i = 0; i < n; i++) {
		if (ioctl(iommufd, req, &bad) != -1)
			return 3;
		double u = now_ns();
		each[i] = (uint64_t)(u - t);
		t = u;
	}
	double bridge = (t - t0) / (double)n;
	qsort(each, (size_t)n, sizeof(*each), cmp_u64);
	long hn = n * 10;
	t0 = now_ns();
	for (long i = 0; i < hn; i++)
		syscall(SYS_ioctl, null, req, &bad);
	double host = (now_ns() - t0) / (double)hn;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 4;
	char msg[16] = {0};
	pid_t pid = fork();
	if (pid == 0) {
		for (long i = 0; i < n + 100; i++) {
			if (read(sv[1], msg, sizeof(msg)) != sizeof(msg) || write(sv[1], msg, sizeof(msg)) != sizeof(msg))
				_exit(1);
		}
		_exit(0);
	}
	for (long i = 0; i < 100; i++)
		if (write(sv[0], msg, sizeof(msg)) != sizeof(msg) || read(sv[0], msg, sizeof(msg)) != sizeof(msg))
			return 5;
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (write(sv[0], msg, sizeof(msg)) != sizeof(msg) || read(sv[0], msg, sizeof(msg)) != sizeof(msg))
			return 5;
	double pingpong = (now_ns() - t0) / (double)n;
	waitpid(pid, NULL, 0);
	volatile uint32_t *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 6;
	pid = fork();
	if (pid == 0) {
		for (uint32_t i = 1; i <= (uint32_t)n + 100; i++) {
			while (__atomic_load_n(&sh[0], __ATOMIC_ACQUIRE) != i)
				__builtin_ia32_pause();
			__atomic_store_n(&sh[16], i, __ATOMIC_RELEASE);
		}
		_exit(0);
	}
	uint32_t seq = 0;
	for (long i = 0; i < n + 100; i++) {
		if (i == 100)
			t0 = now_ns();
		__atomic_store_n(&sh[0], ++seq, __ATOMIC_RELEASE);
		while (__atomic_load_n(&sh[16], __ATOMIC_ACQUIRE) != seq)
			__builtin_ia32_pause();
	}
	double spin = (now_ns() - t0) / (double)n;
	waitpid(pid, NULL, 0);
	printf("{\"bridge_ioctl_roundtrip_ns\":%.1f,\"bridge_ioctl_warmup_ns\":%.1f,\"bridge_ioctl_p50_ns\":%lu,\"bridge_ioctl_p90_ns\":%lu,"
	       "\"bridge_ioctl_p99_ns\":%lu,\"host_ioctl_fail_ns\":%.1f,\"unix_pingpong_ns\":%.1f,"
	       "\"spin_pingpong_ns\":%.1f}\n",
	       bridge, warmup, (unsigned long)each[n / 2], (unsigned long)each[n * 9 / 10],
	       (unsigned long)each[n * 99 / 100], host, pingpong, spin);
	return 0;
}
