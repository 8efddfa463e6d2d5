/* Bench workload: the floors of an in-process syscall engine, each a
 * getppid(2) loop that prints "done NS" (as getppid.c).
 *
 *   none N    no filter: the same loop natively
 *   trap N    a seccomp filter traps getppid (SECCOMP_RET_TRAP) and a
 *             SIGSYS handler returns a constant: the bare SIGSYS round
 *             trip, the least a call the engine selects can cost
 *   allow N   a seccomp filter that allows every call: the least any
 *             filter costs the calls it does not trap
 *   sud-trap N   Syscall User Dispatch on, selector BLOCK: every call
 *             outside the C library's text raises SIGSYS, whose handler
 *             returns a constant (SUD selects no call by number)
 *   sud-allow N  Syscall User Dispatch on, selector ALLOW: what it costs
 *             the calls it lets through
 *
 * The loop makes its call with its own syscall instruction, outside the
 * C library, whose text SUD must let through: the handler returns
 * through its rt_sigreturn. */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif
#define SELECTOR_ALLOW 0
#define SELECTOR_BLOCK 1

static volatile char selector = SELECTOR_ALLOW;

static inline long raw_getppid(void)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_getppid) : "rcx", "r11", "memory");
	return r;
}

/* The mapping of the C library's text, where its syscall() is. */
static int libc_text(unsigned long *start, unsigned long *end)
{
	unsigned long at = (unsigned long)(void *)&syscall;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int found = 0;
	while (f && !found && fgets(line, sizeof line, f))
		found = sscanf(line, "%lx-%lx", start, end) == 2 && at >= *start && at < *end;
	if (f)
		fclose(f);
	return found ? 0 : -1;
}

static int start_sud(int block)
{
	unsigned long start, end;
	if (libc_text(&start, &end) ||
	    prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, start, end - start, &selector)) {
		perror("syscall user dispatch");
		return -1;
	}
	selector = block ? SELECTOR_BLOCK : SELECTOR_ALLOW;
	return 0;
}

static int start_filter(int trap)
{
	struct sock_filter trapping[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_filter allowing[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = trap ? (struct sock_fprog){ 4, trapping } : (struct sock_fprog){ 1, allowing };
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog)) {
		perror("seccomp");
		return -1;
	}
	return 0;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	((ucontext_t *)uc)->uc_mcontext.gregs[REG_RAX] = 1;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "trap";
	long n = argc > 2 ? atol(argv[2]) : 200000;
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigaction(SIGSYS, &sa, NULL);
	int sud = !strncmp(mode, "sud-", 4);
	int trap = !strcmp(mode, sud ? "sud-trap" : "trap");
	if (strcmp(mode, "none") && (sud ? start_sud(trap) : start_filter(trap)))
		return 1;
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < n; i++)
		raw_getppid();
	selector = SELECTOR_ALLOW; /* the vDSO is not in the C library's text */
	clock_gettime(CLOCK_MONOTONIC, &end);
	printf("done %lld\n", (long long)(end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec));
	return 0;
}
