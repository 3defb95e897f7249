/*
 * The x86-64 instructions a load or store to a BAR compiles to: the `mov`
 * forms of readb/w/l/q and writeb/w/l/q (88, 89, 8A, 8B with the 66 and
 * REX prefixes), the immediate stores (C6 /0, C7 /0), and the widening
 * loads compilers emit for narrow reads (movzx 0F B6/B7, movsx 0F BE/BF,
 * movsxd 63). Memory operands are decoded in full (ModRM, SIB, disp8/32,
 * RIP-relative, the 67 address-size prefix), so the instruction's length
 * and effective address are exact. Anything else is refused (-1).
 */
#include "shim.h"

#include <ucontext.h>

/* register number (ModRM order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15) -> gregs index */
static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
				REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
				REG_R12, REG_R13, REG_R14, REG_R15};

static int32_t rd32(const uint8_t *p)
{
	uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	return (int32_t)v;
}

int x86_decode_mmio(const uint8_t *p, struct mmio_insn *in)
{
	const uint8_t *start = p;
	int opsize = 0, rex = 0;
	memset(in, 0, sizeof(*in));
	in->index = -1;
	in->base = -1;
	for (int n = 0;; n++, p++) {
		if (n >= 14)
			return -1;
		uint8_t b = *p;
		if (b == 0x66)
			opsize = 1;
		else if (b == 0x67)
			in->addr32 = 1;
		else if (b == 0x64 || b == 0x65)
			in->seg = 1; /* fs/gs: the base is not in the ucontext */
		else if (b == 0x2e || b == 0x36 || b == 0x3e || b == 0x26)
			; /* cs/ss/ds/es: no effect in 64-bit mode */
		else
			break;
	}
	if ((*p & 0xf0) == 0x40)
		rex = *p++;
	int w = (rex & 8) != 0, r = (rex & 4) != 0, x = (rex & 2) != 0, bb = (rex & 1) != 0;
	int wide = w ? 8 : opsize ? 2 : 4;
	uint8_t op = *p++;
	int imm_size = 0;
	switch (op) {
	case 0x88: /* mov r/m8, r8 */
		in->store = 1, in->size = 1;
		break;
	case 0x89: /* mov r/m, r */
		in->store = 1, in->size = wide;
		break;
	case 0x8a: /* mov r8, r/m8 */
		in->size = 1, in->dest_size = 1;
		break;
	case 0x8b: /* mov r, r/m */
		in->size = wide, in->dest_size = wide;
		break;
	case 0x63: /* movsxd r64, r/m32 (without REX.W: a plain 32-bit load) */
		in->size = w ? 4 : wide, in->dest_size = wide, in->sign = w;
		break;
	case 0xc6: /* mov r/m8, imm8 */
		in->store = 1, in->size = 1, in->has_imm = 1, imm_size = 1;
		break;
	case 0xc7: /* mov r/m, imm16/imm32 (sign-extended with REX.W) */
		in->store = 1, in->size = wide, in->has_imm = 1, imm_size = wide == 2 ? 2 : 4;
		break;
	case 0x0f: {
		uint8_t op2 = *p++;
		if (op2 != 0xb6 && op2 != 0xb7 && op2 != 0xbe && op2 != 0xbf)
			return -1;
		in->size = (op2 & 1) ? 2 : 1; /* movzx/movsx r, r/m8 or r/m16 */
		in->dest_size = wide;
		in->sign = op2 >= 0xbe;
		break;
	}
	default:
		return -1;
	}
	uint8_t modrm = *p++;
	int mod = modrm >> 6, reg = ((modrm >> 3) & 7) | (r << 3), rm = modrm & 7;
	if (mod == 3)
		return -1; /* a register operand: no memory access, so no fault */
	if (in->has_imm) {
		if ((modrm >> 3) & 7)
			return -1; /* C6/C7 with /reg != 0 are other instructions */
		in->reg = -1;
	} else {
		in->reg = reg;
		/* without REX, byte registers 4-7 are AH CH DH BH */
		in->high8 = (in->size == 1 && (in->store || in->dest_size == 1) && !rex && reg >= 4 && reg < 8);
	}
	if (rm == 4) {
		uint8_t sib = *p++;
		int idx = ((sib >> 3) & 7) | (x << 3);
		in->scale = sib >> 6;
		in->index = idx == 4 ? -1 : idx;
		if ((sib & 7) == 5 && mod == 0) {
			in->disp = rd32(p), p += 4; /* no base, disp32 */
		} else {
			in->base = (sib & 7) | (bb << 3);
		}
	} else if (rm == 5 && mod == 0) {
		in->rip_rel = 1;
		in->disp = rd32(p), p += 4;
	} else {
		in->base = rm | (bb << 3);
	}
	if (mod == 1)
		in->disp = (int8_t)*p++;
	else if (mod == 2)
		in->disp = rd32(p), p += 4;
	if (imm_size == 1) {
		in->imm = *p++;
	} else if (imm_size == 2) {
		in->imm = (uint16_t)(p[0] | p[1] << 8), p += 2;
	} else if (imm_size == 4) {
		int32_t v = rd32(p);
		p += 4;
		in->imm = in->size == 8 ? (uint64_t)(int64_t)v : (uint32_t)v;
	}
	in->len = (int)(p - start);
	if (in->len > 15)
		return -1;
	return 0;
}

uint64_t x86_effective_address(const struct mmio_insn *in, const greg_t *g)
{
	uint64_t ea;
	if (in->rip_rel)
		ea = (uint64_t)g[REG_RIP] + (uint64_t)in->len;
	else
		ea = in->base >= 0 ? (uint64_t)g[greg_of[in->base]] : 0;
	if (in->index >= 0)
		ea += (uint64_t)g[greg_of[in->index]] << in->scale;
	ea += (uint64_t)(int64_t)in->disp;
	return in->addr32 ? (uint32_t)ea : ea;
}

/* The value a store writes (access-size bits). */
uint64_t x86_store_value(const struct mmio_insn *in, const greg_t *g)
{
	uint64_t v;
	if (in->has_imm)
		v = in->imm;
	else if (in->high8)
		v = (uint64_t)g[greg_of[in->reg - 4]] >> 8;
	else
		v = (uint64_t)g[greg_of[in->reg]];
	return in->size == 8 ? v : v & ((1ull << (8 * in->size)) - 1);
}

/* A load's destination register gets `v` (access-size bits), as the CPU writes it. */
void x86_load_result(const struct mmio_insn *in, greg_t *g, uint64_t v)
{
	if (in->size < 8) {
		uint64_t m = (1ull << (8 * in->size)) - 1;
		v &= m;
		if (in->sign && (v >> (8 * in->size - 1)) & 1)
			v |= ~m;
	}
	if (in->high8) {
		greg_t *d = &g[greg_of[in->reg - 4]];
		*d = (greg_t)(((uint64_t)*d & ~0xff00ull) | ((v & 0xff) << 8));
		return;
	}
	greg_t *d = &g[greg_of[in->reg]];
	switch (in->dest_size) {
	case 8:
		*d = (greg_t)v;
		break;
	case 4: /* a 32-bit destination clears the upper half */
		*d = (greg_t)(uint32_t)v;
		break;
	case 2:
		*d = (greg_t)(((uint64_t)*d & ~0xffffull) | (v & 0xffff));
		break;
	default:
		*d = (greg_t)(((uint64_t)*d & ~0xffull) | (v & 0xff));
	}
}
