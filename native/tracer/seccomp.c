/* Running a tracee's seccomp filters on a call (seccomp.h): classic BPF
 * as seccomp accepts it (kernel/seccomp.c seccomp_check_filter), over
 * struct seccomp_data. */
#include "seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
#define MAX_FILTER_INSNS BPF_MAXINSNS
#define MAX_FILTERS 512 /* MAX_INSNS_PER_PATH allows no more of any use */

static uint32_t load_word(const struct seccomp_data *d, uint32_t k, int *bad)
{
	if (k > sizeof *d - 4 || (k & 3)) {
		*bad = 1;
		return 0;
	}
	uint32_t v;
	memcpy(&v, (const char *)d + k, 4);
	return v;
}

/* One filter's action; SECCOMP_RET_KILL_PROCESS for a program that would
 * not load (the kernel never runs such a one). */
static uint32_t run_filter(const struct sock_filter *p, int n, const struct seccomp_data *d)
{
	uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = { 0 };
	int bad = 0;
	for (int pc = 0; pc >= 0 && pc < n && !bad; pc++) {
		const struct sock_filter *i = &p[pc];
		uint32_t k = i->k, src = BPF_SRC(i->code) == BPF_X ? x : k;
		switch (BPF_CLASS(i->code)) {
		case BPF_LD:
			if (BPF_MODE(i->code) == BPF_ABS) a = load_word(d, k, &bad);
			else if (BPF_MODE(i->code) == BPF_LEN) a = sizeof *d;
			else if (BPF_MODE(i->code) == BPF_IMM) a = k;
			else if (BPF_MODE(i->code) == BPF_MEM && k < BPF_MEMWORDS) a = mem[k];
			else bad = 1;
			break;
		case BPF_LDX:
			if (BPF_MODE(i->code) == BPF_LEN) x = sizeof *d;
			else if (BPF_MODE(i->code) == BPF_IMM) x = k;
			else if (BPF_MODE(i->code) == BPF_MEM && k < BPF_MEMWORDS) x = mem[k];
			else bad = 1;
			break;
		case BPF_ST:
			if (k < BPF_MEMWORDS) mem[k] = a; else bad = 1;
			break;
		case BPF_STX:
			if (k < BPF_MEMWORDS) mem[k] = x; else bad = 1;
			break;
		case BPF_ALU:
			switch (BPF_OP(i->code)) {
			case BPF_ADD: a += src; break;
			case BPF_SUB: a -= src; break;
			case BPF_MUL: a *= src; break;
			case BPF_DIV: if (!src) return SECCOMP_RET_KILL_PROCESS; a /= src; break;
			case BPF_MOD: if (!src) return SECCOMP_RET_KILL_PROCESS; a %= src; break;
			case BPF_OR: a |= src; break;
			case BPF_AND: a &= src; break;
			case BPF_XOR: a ^= src; break;
			case BPF_LSH: a = src < 32 ? a << src : 0; break;
			case BPF_RSH: a = src < 32 ? a >> src : 0; break;
			case BPF_NEG: a = -a; break;
			default: bad = 1;
			}
			break;
		case BPF_JMP:
			if (BPF_OP(i->code) == BPF_JA) {
				pc += (int)k;
				break;
			}
			int taken;
			switch (BPF_OP(i->code)) {
			case BPF_JEQ: taken = a == src; break;
			case BPF_JGT: taken = a > src; break;
			case BPF_JGE: taken = a >= src; break;
			case BPF_JSET: taken = (a & src) != 0; break;
			default: bad = 1; taken = 0;
			}
			pc += taken ? i->jt : i->jf;
			break;
		case BPF_RET:
			return BPF_RVAL(i->code) == BPF_A ? a : k;
		case BPF_MISC:
			if (BPF_MISCOP(i->code) == BPF_TAX) x = a; else a = x;
			break;
		default:
			bad = 1;
		}
	}
	return SECCOMP_RET_KILL_PROCESS;
}

/* Lower is more restrictive (seccomp(2) "Filter return values"); KILL_PROCESS
 * is the most of all, though as a signed value it is the lowest. */
static int64_t priority(uint32_t action)
{
	uint32_t a = action & SECCOMP_RET_ACTION_FULL;
	return a == SECCOMP_RET_KILL_PROCESS ? -1 : (int64_t)a;
}

static void name_action(uint32_t action, char *out, size_t len)
{
	uint32_t a = action & SECCOMP_RET_ACTION_FULL, data = action & SECCOMP_RET_DATA;
	switch (a) {
	case SECCOMP_RET_KILL_PROCESS: snprintf(out, len, "KILL_PROCESS"); break;
	case SECCOMP_RET_KILL_THREAD: snprintf(out, len, "KILL_THREAD"); break;
	case SECCOMP_RET_TRAP: snprintf(out, len, "TRAP"); break;
	case SECCOMP_RET_ERRNO: snprintf(out, len, "ERRNO(%u)", data); break;
	case SECCOMP_RET_USER_NOTIF: snprintf(out, len, "USER_NOTIF"); break;
	case SECCOMP_RET_TRACE: snprintf(out, len, "TRACE"); break;
	default: snprintf(out, len, "action 0x%x", a);
	}
}

enum seccomp_verdict seccomp_check(pid_t tid, long nr, const uint64_t args[6], uint64_t ip,
				   char *action, size_t action_len)
{
	static struct sock_filter prog[MAX_FILTER_INSNS];
	struct seccomp_data d = { .nr = (int)nr, .arch = AUDIT_ARCH_X86_64, .instruction_pointer = ip };
	memcpy(d.args, args, sizeof d.args);
	uint32_t verdict = SECCOMP_RET_ALLOW;
	for (unsigned long i = 0; i < MAX_FILTERS; i++) {
		long n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)i, prog);
		if (n < 0 && errno == ENOENT)
			break; /* no more filters (or none: ENOENT at 0, or EINVAL without seccomp) */
		if (n < 0 && errno == EINVAL && i == 0)
			break;
		if (n < 0 || n > MAX_FILTER_INSNS)
			return SECCOMP_UNKNOWN; /* EACCES without CAP_SYS_ADMIN, EMEDIUMTYPE in strict mode */
		uint32_t a = run_filter(prog, (int)n, &d);
		if (priority(a) < priority(verdict))
			verdict = a;
	}
	uint32_t a = verdict & SECCOMP_RET_ACTION_FULL;
	if (a == SECCOMP_RET_ALLOW || a == SECCOMP_RET_LOG)
		return SECCOMP_ALLOWS;
	name_action(verdict, action, action_len);
	return SECCOMP_FORBIDS;
}

int seccomp_has_filter(pid_t tid, const struct sock_filter *filter, uint32_t n)
{
	static struct sock_filter prog[MAX_FILTER_INSNS];
	for (unsigned long i = 0; i < MAX_FILTERS; i++) {
		long got = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)i, prog);
		if (got < 0 && (errno == ENOENT || (errno == EINVAL && i == 0)))
			return 0;
		if (got < 0 || got > MAX_FILTER_INSNS)
			return -1;
		if ((uint32_t)got == n && !memcmp(prog, filter, n * sizeof *filter))
			return 1;
	}
	return 0;
}
