/*
 * The MMIO trap. A BAR mapping is a PROT_NONE placeholder, so each load or
 * store the program makes to it faults; the SIGSEGV handler decodes the
 * instruction (x86-decode.c), forwards the access to the model
 * (BR_OP_MMIO: the device's memory behind the model's VMA), writes a
 * load's destination register, and steps RIP past the instruction. Faults
 * anywhere else go to the handler the program installed: while the trap
 * is installed, sigaction/signal for SIGSEGV record the program's handler
 * (the trap calls it) instead of replacing the trap. An instruction the
 * decoder does not know is reported on stderr and SIGSEGV is re-raised.
 */
#include "shim.h"

/*
 * The program's SIGSEGV disposition: two slots and an index, so the
 * handler reads a whole one without a lock while sigaction writes the
 * other under chain_lock.
 */
static struct sigaction chain[2];
static int chain_cur;
static int trap_on;
static pthread_mutex_t chain_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *a, const char *b)
{
	syscall(SYS_write, 2, a, strlen(a));
	if (b)
		syscall(SYS_write, 2, b, strlen(b));
}

static void hex(char *out, uint64_t v)
{
	static const char d[] = "0123456789abcdef";
	char tmp[17];
	int n = 0;
	do
		tmp[n++] = d[v & 15], v >>= 4;
	while (v);
	out[0] = '0', out[1] = 'x';
	for (int i = 0; i < n; i++)
		out[2 + i] = tmp[n - 1 - i];
	out[2 + n] = 0;
}

/* Back to the default action: returning re-runs the access, which faults and kills. */
static void default_segv(void)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigemptyset(&dfl.sa_mask);
	real_sigaction(SIGSEGV, &dfl, NULL);
}

/* A fault that is not the trap's: what the program's own disposition says. */
static void chain_to_program(int sig, siginfo_t *si, void *uc)
{
	struct sigaction c = chain[__atomic_load_n(&chain_cur, __ATOMIC_ACQUIRE)];
	int user_sent = si->si_code <= 0;
	if (!(c.sa_flags & SA_SIGINFO) && (c.sa_handler == SIG_DFL || c.sa_handler == SIG_IGN)) {
		/* the kernel forces the default for a fault; a kill() of SIG_IGN is dropped */
		if (user_sent && c.sa_handler == SIG_IGN)
			return;
		default_segv();
		if (user_sent)
			raise(SIGSEGV);
		return;
	}
	sigset_t old, mask = c.sa_mask;
	if (!(c.sa_flags & SA_NODEFER))
		sigaddset(&mask, SIGSEGV);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	if (c.sa_flags & SA_RESETHAND) {
		/* the handler cannot take chain_lock: it flips to the other slot */
		int n = !__atomic_load_n(&chain_cur, __ATOMIC_ACQUIRE);
		memset(&chain[n], 0, sizeof(chain[n]));
		chain[n].sa_handler = SIG_DFL;
		__atomic_store_n(&chain_cur, n, __ATOMIC_RELEASE);
	}
	if (c.sa_flags & SA_SIGINFO)
		c.sa_sigaction(sig, si, uc);
	else
		c.sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

enum { EMU_DONE, EMU_NOT_OURS, EMU_UNKNOWN, EMU_SIGBUS, EMU_SIGSEGV };

static int emulate(ucontext_t *uc, uintptr_t fault)
{
	greg_t *g = uc->uc_mcontext.gregs;
	struct mmio_insn in;
	if (x86_decode_mmio((const uint8_t *)g[REG_RIP], &in) < 0)
		return EMU_UNKNOWN;
	uint64_t ea = in.seg ? fault : x86_effective_address(&in, g);
	if (!devmap_contains((uintptr_t)ea, (size_t)in.size))
		return EMU_SIGSEGV; /* straddles the end of the mapping */
	struct br_req rq = {.op = BR_OP_MMIO, .a = ea, .b = (uint64_t)in.size};
	uint64_t v = 0;
	size_t got = 0;
	if (in.store) {
		rq.flags = BR_MMIO_WRITE;
		rq.c = x86_store_value(&in, g);
	}
	int64_t r = call(&rq, NULL, 0, &v, sizeof(v), &got);
	if (r == BR_MMIO_SIGBUS)
		return EMU_SIGBUS;
	if (r < 0)
		return EMU_SIGSEGV;
	if (!in.store)
		x86_load_result(&in, g, v);
	g[REG_RIP] += in.len;
	return EMU_DONE;
}

static void trap(int sig, siginfo_t *si, void *ucv)
{
	int saved = errno;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (si->si_code > 0 && devmap_contains(a, 1)) {
		ucontext_t *uc = ucv;
		int r = emulate(uc, a);
		if (r == EMU_DONE) {
			errno = saved;
			return;
		}
		char at[24], ip[24];
		hex(at, a);
		hex(ip, (uint64_t)uc->uc_mcontext.gregs[REG_RIP]);
		if (r == EMU_SIGBUS) {
			/* vfio's fault handler: SIGBUS (memory decode off, device in low power) */
			say("iommufd-sim shim: the device refused the access to its BAR at ", at);
			say(" (SIGBUS)\n", NULL);
			raise(SIGBUS);
			errno = saved;
			return;
		}
		const uint8_t *p = (const uint8_t *)uc->uc_mcontext.gregs[REG_RIP];
		if (r == EMU_UNKNOWN) {
			char bytes[3 * 8 + 1];
			for (int i = 0; i < 8; i++) {
				static const char d[] = "0123456789abcdef";
				bytes[3 * i] = ' ', bytes[3 * i + 1] = d[p[i] >> 4], bytes[3 * i + 2] = d[p[i] & 15];
			}
			bytes[24] = 0;
			say("iommufd-sim shim: cannot emulate the instruction at ", ip);
			say(" touching a device mapping at ", at);
			say("; its bytes:", bytes);
			say("\n(the MMIO trap knows mov 88/89/8A/8B/C6/C7, movzx/movsx 0F B6/B7/BE/BF, movsxd 63); raising SIGSEGV\n",
			    NULL);
		} else {
			say("iommufd-sim shim: the access at ", ip);
			say(" to device memory at ", at);
			say(" is outside the mapping or not permitted by its protection; raising SIGSEGV\n", NULL);
		}
		default_segv();
		errno = saved;
		return;
	}
	chain_to_program(sig, si, ucv);
	errno = saved;
}

void mmio_trap_install(void)
{
	pthread_mutex_lock(&chain_lock);
	if (!trap_on) {
		resolve_sigaction();
		struct sigaction sa = {.sa_sigaction = trap, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER};
		sigemptyset(&sa.sa_mask);
		struct sigaction prev;
		if (real_sigaction(SIGSEGV, &sa, &prev) == 0) {
			chain[0] = prev;
			__atomic_store_n(&chain_cur, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&trap_on, 1, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&chain_lock);
}

/* The program sets its SIGSEGV disposition while the trap is on: the trap keeps it for its faults. */
static void set_chain_locked(const struct sigaction *act, struct sigaction *old)
{
	int cur = __atomic_load_n(&chain_cur, __ATOMIC_ACQUIRE);
	if (old)
		*old = chain[cur];
	if (act) {
		chain[!cur] = *act;
		__atomic_store_n(&chain_cur, !cur, __ATOMIC_RELEASE);
	}
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	resolve_sigaction();
	if (sig != SIGSEGV || !__atomic_load_n(&trap_on, __ATOMIC_ACQUIRE))
		return real_sigaction(sig, act, old);
	pthread_mutex_lock(&chain_lock);
	set_chain_locked(act, old);
	pthread_mutex_unlock(&chain_lock);
	return 0;
}

EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	resolve_signal();
	if (sig != SIGSEGV || !__atomic_load_n(&trap_on, __ATOMIC_ACQUIRE))
		return real_signal(sig, h);
	/* glibc's signal(): BSD semantics */
	struct sigaction act = {.sa_handler = h, .sa_flags = SA_RESTART}, old;
	sigemptyset(&act.sa_mask);
	pthread_mutex_lock(&chain_lock);
	set_chain_locked(&act, &old);
	pthread_mutex_unlock(&chain_lock);
	return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)(void *)old.sa_sigaction : old.sa_handler;
}
