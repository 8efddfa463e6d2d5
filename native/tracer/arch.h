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

/* At a syscall-entry stop: the call the thread makes instead (-1: none,
 * it fails with ENOSYS). At a syscall-exit stop: what the call returns. */
int arch_set_syscall_nr(pid_t tid, long nr);
int arch_set_syscall_result(pid_t tid, int64_t value);

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

/* --- Running code in a tracee (remote.c, inject.c) --- */

/* A thread's extended register state (x87, SSE, AVX...), as
 * PTRACE_GETREGSET NT_X86_XSTATE gives it: `len` is what the kernel
 * returned (it differs between machines). */
struct arch_xstate {
	uint8_t *bytes;
	size_t len;
};
int arch_get_xstate(pid_t tid, struct arch_xstate *x); /* bytes malloc'd */
int arch_set_xstate(pid_t tid, const struct arch_xstate *x);

/* Whether a stop found the thread inside a syscall (interrupted, or at
 * its entry or exit), so that the kernel may restart it. */
int arch_in_syscall(const arch_regs *r);

/* The registers with which the thread, if it ran from them, would do
 * what the kernel does on its own to resume the call it was stopped in
 * (restart it, or go on with a restart block): the interrupted call's
 * number back in the result register and the program counter back on its
 * `syscall`. Unchanged when it was in no call that restarts. */
arch_regs arch_restart_form(const arch_regs *r);

/* The thread will execute the syscall instruction at `at` as call `nr`
 * with `args`, its stack pointer at `sp`. */
void arch_set_syscall(arch_regs *r, uint64_t at, uint64_t sp, long nr, const uint64_t args[6]);
/* The thread will call `fn(arg)` with `sp` as the stack pointer at the
 * function's entry (the return address already at *sp). */
void arch_set_call(arch_regs *r, uint64_t fn, uint64_t sp, uint64_t arg);
long arch_syscall_result(const arch_regs *r);
uint64_t arch_program_counter(const arch_regs *r);

/* The machine code `syscall`, and its length: the tracer looks for it in
 * the target's code to run its first remote call. */
#define ARCH_SYSCALL_INSN "\x0f\x05"
#define ARCH_SYSCALL_INSN_LEN 2
/* `syscall; mov $15, %eax; syscall; ud2`: a remote syscall, then
 * rt_sigreturn (__NR_rt_sigreturn is 15), as the shim's
 * tlsshim_inject_gadget, for the page the tracer maps before the shim. */
#define ARCH_SIGRETURN_STUB "\x0f\x05\xb8\x0f\x00\x00\x00\x0f\x05\x0f\x0b"
#define ARCH_SIGRETURN_STUB_LEN 11

/* A signal frame that rt_sigreturn restores a thread's state from: its
 * registers `r` (in restart form), extended state and signal mask.
 * arch_sigframe_size() bytes, built in `buf`, which lies at `at` in the
 * tracee (64-byte aligned). `return_to` is the frame's return address,
 * where a function called with *sp == frame returns (an rt_sigreturn).
 * Gives the stack pointer a function is called with (the frame's
 * address) and the one at which rt_sigreturn restores it (after the
 * return address). -1 with errno when the extended state is not one the
 * frame can hold. */
struct arch_sigframe_sp {
	uint64_t call_sp;
	uint64_t sigreturn_sp;
};
size_t arch_sigframe_size(const struct arch_xstate *x);
int arch_build_sigframe(uint8_t *buf, uint64_t at, const arch_regs *r, const struct arch_xstate *x,
			uint64_t sigmask, uint64_t return_to, struct arch_sigframe_sp *sp);

/* A 64-bit thread (not a 32-bit or x32 program's). */
int arch_is_native(const arch_regs *r);

#endif
