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

/* clone3(2): flags is the first u64 of struct clone_args. */
static uint64_t clone3_flags(pid_t tid, uint64_t args)
{
	uint64_t flags = 0;
	struct iovec local = { &flags, sizeof flags };
	struct iovec remote = { (void *)args, sizeof flags };
	if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != sizeof flags)
		return 0;
	return flags;
}

int arch_read_regs(pid_t tid, struct stop_regs *r)
{
	struct user_regs_struct regs;
	if (ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0)
		return -1;
	r->fs_base = regs.fs_base;
	r->syscall = (int64_t)regs.orig_rax;
	/* PTRACE.md: at a clone event stop the parent's registers still hold
	 * the arguments: clone(flags = rdi, ...), clone3(&clone_args = rdi). */
	if (regs.orig_rax == SYS_clone)
		r->clone_flags = regs.rdi;
	else if (regs.orig_rax == SYS_clone3)
		r->clone_flags = clone3_flags(tid, regs.rdi);
	else
		r->clone_flags = 0;
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
