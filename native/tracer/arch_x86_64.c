/* x86-64 only. */
#include "arch.h"

#include <errno.h>
#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>

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

int arch_read_regs(pid_t tid, struct stop_regs *r)
{
	struct user_regs_struct regs;
	if (ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0)
		return -1;
	r->fs_base = regs.fs_base;
	r->syscall = (int64_t)regs.orig_rax;
	r->arg0 = regs.rdi;
	r->clone_flags = r->clone_tls = 0;
	/* PTRACE.md: at a clone event stop the parent's registers still hold
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
