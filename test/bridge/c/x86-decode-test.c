/* The MMIO trap's decoder on byte sequences: length, operands, effective address, register write-back. */
#include "shim.h"

#define CHECK(name, cond) printf("%s=%d\n", name, (int)(cond))

static int dec(const char *name, const uint8_t *b, struct mmio_insn *in)
{
	int r = x86_decode_mmio(b, in);
	printf("%s.ok=%d\n", name, r == 0);
	return r;
}

int main(void)
{
	struct mmio_insn in;
	greg_t g[NGREG] = {0};
	g[REG_RIP] = 0x400000;
	g[REG_RAX] = 0x10000;
	g[REG_RCX] = 0x20;
	g[REG_RDX] = 0x1ffff00000004ll;
	g[REG_R12] = 0x300;
	g[REG_R13] = 0x5000;

	static const uint8_t rip[] = {0x8b, 0x05, 0x10, 0x00, 0x00, 0x00}; /* mov 0x10(%rip),%eax */
	dec("rip", rip, &in);
	CHECK("rip.len", in.len == 6);
	CHECK("rip.ea", x86_effective_address(&in, g) == 0x400000 + 6 + 0x10);
	CHECK("rip.size", in.size == 4 && !in.store && in.reg == 0);

	static const uint8_t a32[] = {0x67, 0x8b, 0x02}; /* mov (%edx),%eax */
	dec("a32", a32, &in);
	CHECK("a32.len", in.len == 3);
	CHECK("a32.ea", x86_effective_address(&in, g) == 0x00000004);

	static const uint8_t sib[] = {0x48, 0x8b, 0x84, 0x88, 0x00, 0x01, 0x00, 0x00}; /* mov 0x100(%rax,%rcx,4),%rax */
	dec("sib", sib, &in);
	CHECK("sib.len", in.len == 8);
	CHECK("sib.ea", x86_effective_address(&in, g) == 0x10000 + 0x20 * 4 + 0x100);
	CHECK("sib.size", in.size == 8 && in.dest_size == 8);

	static const uint8_t abs32[] = {0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00}; /* mov 0x1000,%eax */
	dec("abs", abs32, &in);
	CHECK("abs.len", in.len == 7);
	CHECK("abs.ea", x86_effective_address(&in, g) == 0x1000);

	static const uint8_t rexx[] = {0x42, 0x8b, 0x04, 0x20}; /* mov (%rax,%r12,1),%eax */
	dec("rexx", rexx, &in);
	CHECK("rexx.ea", in.len == 4 && x86_effective_address(&in, g) == 0x10300);

	static const uint8_t r12[] = {0x41, 0x8b, 0x04, 0x24}; /* mov (%r12),%eax: SIB, no index */
	dec("r12", r12, &in);
	CHECK("r12.ea", in.len == 4 && x86_effective_address(&in, g) == 0x300);

	static const uint8_t r13[] = {0x41, 0x8b, 0x45, 0xf8}; /* mov -8(%r13),%eax */
	dec("r13", r13, &in);
	CHECK("r13.ea", in.len == 4 && x86_effective_address(&in, g) == 0x5000 - 8);

	static const uint8_t w16[] = {0x66, 0xc7, 0x00, 0x34, 0x12}; /* movw $0x1234,(%rax) */
	dec("w16", w16, &in);
	CHECK("w16.imm", in.len == 5 && in.size == 2 && x86_store_value(&in, g) == 0x1234);

	static const uint8_t q[] = {0x48, 0xc7, 0x40, 0x08, 0xfe, 0xff, 0xff, 0xff}; /* movq $-2,8(%rax) */
	dec("q", q, &in);
	CHECK("q.imm", in.len == 8 && x86_store_value(&in, g) == 0xfffffffffffffffeull);

	static const uint8_t sil[] = {0x40, 0x88, 0x30}; /* mov %sil,(%rax) */
	dec("sil", sil, &in);
	g[REG_RSI] = 0x77;
	CHECK("sil.val", in.reg == 6 && !in.high8 && x86_store_value(&in, g) == 0x77);

	static const uint8_t dh[] = {0x88, 0x30}; /* mov %dh,(%rax) */
	dec("dh", dh, &in);
	CHECK("dh.val", in.high8 && x86_store_value(&in, g) == 0x00);

	static const uint8_t fs[] = {0x64, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00}; /* mov %fs:0x28,%eax */
	dec("fs", fs, &in);
	CHECK("fs.seg", in.len == 8 && in.seg);

	static const uint8_t mzx[] = {0x44, 0x0f, 0xb7, 0x48, 0x02}; /* movzwl 2(%rax),%r9d */
	dec("mzx", mzx, &in);
	g[REG_R9] = -1;
	x86_load_result(&in, g, 0xbeef);
	CHECK("mzx.r9", in.len == 5 && in.size == 2 && (uint64_t)g[REG_R9] == 0xbeef);

	static const uint8_t regop[] = {0x8b, 0xc0};    /* mov %eax,%eax: no memory operand */
	static const uint8_t sse[] = {0x0f, 0x10, 0x00}; /* movups (%rax),%xmm0 */
	static const uint8_t c7r1[] = {0xc7, 0x48, 0x08, 0, 0, 0, 0}; /* C7 /1: not a mov */
	static const uint8_t lockadd[] = {0xf0, 0x01, 0x00}; /* lock add %eax,(%rax) */
	CHECK("refuse.regop", x86_decode_mmio(regop, &in) < 0);
	CHECK("refuse.sse", x86_decode_mmio(sse, &in) < 0);
	CHECK("refuse.c7r1", x86_decode_mmio(c7r1, &in) < 0);
	CHECK("refuse.lock", x86_decode_mmio(lockadd, &in) < 0);
	return 0;
}
