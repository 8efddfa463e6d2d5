/* Register facts of the one architecture tlsd-tracer supports. An aarch64
 * port replaces arch_x86_64.c (docs/tls-layout.md: tpidr_el0 via NT_ARM_TLS). */
#ifndef TLSD_ARCH_H
#define TLSD_ARCH_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

/* A thread's whole general-purpose register set, as PTRACE_GETREGSET
 * NT_PRSTATUS gives it (struct user_regs_struct on x86-64 and aarch64
 * alike). Saved before the tracer changes it, and written back after. */
typedef struct user_regs_struct arch_regs;

struct stop_regs {
	uint64_t fs_base;     /* the thread pointer */
	uint8_t exit_call;    /* enum tlsd_exit_call: the thread is in its own
	                         exit or exit_group (at an exit event) */
	uint64_t arg0;        /* the call's first argument (the exit code) */
	uint64_t clone_flags; /* at a clone event stop: the flags of the call */
	uint64_t clone_tls;   /* and its tls argument (used with CLONE_SETTLS) */
};

/* Reads the registers of a thread in a ptrace-stop. Returns -1 with errno
 * (ESRCH: it is gone, or not stopped). */
int arch_read_regs(pid_t tid, struct stop_regs *r);
int arch_read_fs_base(pid_t tid, uint64_t *fs_base);

/* The whole register set of a thread in a ptrace-stop. -1 with errno. */
int arch_get_regs(pid_t tid, arch_regs *r);
int arch_set_regs(pid_t tid, const arch_regs *r);

/* At a stop that made a thread's call fail with EINTR: if the call was a
 * wait with no timeout that any stop makes fail (signal(7): epoll_wait,
 * sigtimedwait, semop, ...), makes the thread enter it again when it
 * resumes, as if it had never been stopped. `may_restart(tid, sig)` is
 * asked first (sig: the signal of a signal-delivery stop, or 0). Returns
 * 1 when it did. */
int arch_restart_interrupted_wait(pid_t tid, int sig, int (*may_restart)(pid_t tid, int sig));

#endif
