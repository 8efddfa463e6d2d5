/* x86-64 only. */
#include "arch.h"
#include "protocol.h"

#include <errno.h>
#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <elf.h> /* NT_PRSTATUS */

#ifndef __x86_64__
#error "arch_x86_64.c is for x86-64; write arch_<your arch>.c"
#endif

/* clone3(2): struct clone_args (linux/sched.h), flags at 0, tls at 56. */
struct clone_args_head {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void read_clone3_args(pid_t tid, uint64_t args, struct stop_regs *r)
{
	struct clone_args_head head = { 0 };
	struct iovec local = { &head, sizeof head };
	struct iovec remote = { (void *)args, sizeof head };
	if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != sizeof head)
		return;
	r->clone_flags = head.flags;
	r->clone_tls = head.tls;
}

int arch_get_regs(pid_t tid, arch_regs *r)
{
	struct iovec v = { r, sizeof *r };
	return ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &v) < 0 ? -1 : 0;
}

int arch_set_regs(pid_t tid, const arch_regs *r)
{
	struct iovec v = { (void *)r, sizeof *r };
	return ptrace(PTRACE_SETREGSET, tid, (void *)NT_PRSTATUS, &v) < 0 ? -1 : 0;
}

int arch_read_regs(pid_t tid, struct stop_regs *r)
{
	arch_regs regs;
	if (arch_get_regs(tid, &regs) < 0)
		return -1;
	r->fs_base = regs.fs_base;
	r->exit_call = regs.orig_rax == SYS_exit ? TLSD_EXIT_CALL_EXIT
		       : regs.orig_rax == SYS_exit_group ? TLSD_EXIT_CALL_EXIT_GROUP
							  : TLSD_EXIT_CALL_NONE;
	r->arg0 = regs.rdi;
	r->clone_flags = r->clone_tls = 0;
	/* docs/ptrace.md: at a clone event stop the parent's registers still hold
	 * the arguments: clone(flags = rdi, ..., tls = r8), clone3(&args = rdi). */
	if (regs.orig_rax == SYS_clone) {
		r->clone_flags = regs.rdi;
		r->clone_tls = regs.r8;
	} else if (regs.orig_rax == SYS_clone3) {
		read_clone3_args(tid, regs.rdi, r);
	}
	return 0;
}

int arch_read_fs_base(pid_t tid, uint64_t *fs_base)
{
	errno = 0;
	long v = ptrace(PTRACE_PEEKUSER, tid,
			(void *)offsetof(struct user_regs_struct, fs_base), 0);
	if (errno)
		return -1;
	*fs_base = (uint64_t)v;
	return 0;
}

/* The calls a stop makes fail with EINTR even without a signal handler
 * (signal(7), "Interruption of system calls and library functions by stop
 * signals"), with where their timeout is: restarted only when they have
 * none, for a restart cannot know how much of one is left. Arguments are
 * in rdi, rsi, rdx, r10, r8, r9 (asm/unistd_64.h numbers). */
enum timeout_kind { NO_TIMEOUT, NEGATIVE_MS_IS_NONE, NULL_POINTER_IS_NONE };
static const struct { long nr; int arg; enum timeout_kind kind; } stop_interrupted_waits[] = {
	{ SYS_epoll_wait, 3, NEGATIVE_MS_IS_NONE },
	{ SYS_epoll_pwait, 3, NEGATIVE_MS_IS_NONE },
	{ SYS_epoll_pwait2, 3, NULL_POINTER_IS_NONE },
	{ SYS_rt_sigtimedwait, 2, NULL_POINTER_IS_NONE },
	{ SYS_semop, 0, NO_TIMEOUT },
	{ SYS_semtimedop, 3, NULL_POINTER_IS_NONE },
};

static unsigned long long syscall_arg(const struct user_regs_struct *r, int i)
{
	const unsigned long long args[] = { r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9 };
	return args[i];
}

static int waits_without_timeout(const struct user_regs_struct *r)
{
	for (size_t i = 0; i < sizeof stop_interrupted_waits / sizeof stop_interrupted_waits[0]; i++) {
		if ((long long)r->orig_rax != stop_interrupted_waits[i].nr)
			continue;
		unsigned long long timeout = syscall_arg(r, stop_interrupted_waits[i].arg);
		switch (stop_interrupted_waits[i].kind) {
		case NO_TIMEOUT: return 1;
		case NEGATIVE_MS_IS_NONE: return (int)timeout < 0;
		case NULL_POINTER_IS_NONE: return timeout == 0;
		}
	}
	return 0;
}

int arch_restart_interrupted_wait(pid_t tid, int sig, int (*may_restart)(pid_t tid, int sig))
{
	arch_regs r;
	if (arch_get_regs(tid, &r) < 0)
		return 0;
	/* The call has returned: rax holds -EINTR, orig_rax the call. */
	if ((long long)r.rax != -EINTR || !waits_without_timeout(&r) || !may_restart(tid, sig))
		return 0;
	/* What the kernel does for a call it restarts by itself: the call
	 * number back in rax, and rip back onto the 2-byte `syscall`. */
	errno = 0;
	long code = ptrace(PTRACE_PEEKTEXT, tid, (void *)(r.rip - 2), 0);
	if (errno || (code & 0xffff) != 0x050f)
		return 0;
	r.rax = r.orig_rax;
	r.rip -= 2;
	return arch_set_regs(tid, &r) == 0;
}
