/* Running syscalls and code in a tracee through one borrowed thread
 * (docs/shim.md "Injection"). The thread is stopped for
 * the whole of it; the process's other threads keep running.
 *
 * Everything here is synchronous: the tracer waits for that one thread's
 * stops (waitpid on its tid) while the other tracees' stops queue in the
 * kernel, for the millisecond or so an injection takes here
 * (docs/performance.md "Injection"). Stops of
 * the borrowed thread that are the program's own (a clone, a signal) are
 * handled as the event loop would, or held back and given back after. */
#ifndef TLSD_REMOTE_H
#define TLSD_REMOTE_H

#include <stdint.h>
#include <sys/types.h>

#include "arch.h"

#define MAX_HELD_SIGNALS 8

struct borrowed {
	pid_t pid, tid;
	arch_regs saved;        /* exactly as the thread was stopped */
	struct arch_xstate xstate;
	uint64_t sigmask;
	/* Where remote syscalls run: a `syscall` instruction, and the stack
	 * pointer to run them with. Once a signal frame with the thread's own
	 * state is in place, site_sp is its rt_sigreturn stack pointer and
	 * sigreturn_pc an rt_sigreturn right after the site: between two
	 * steps the thread waits there, so that if the tracer dies it puts
	 * itself back. */
	uint64_t site, site_sp, sigreturn_pc;
	int held[MAX_HELD_SIGNALS]; /* signals it was sent meanwhile */
	int nheld;
	int fault;              /* a signal our code raised (SIGSEGV...), or 0 */
	int gone;               /* it died meanwhile (its death is handled) */
	int signals_blocked;    /* by remote_block_signals */
	int released;           /* a signal came before anything was changed:
	                           it was delivered and the thread let go */
	uint64_t stopped_ns;    /* when it stopped for us (now_ns) */
	uint64_t restarted_ns;  /* when it was restarted (give_back) */
	uint32_t interrupted;   /* threads stopped to choose it (it among them) */
	int hold;               /* give_back leaves it in its stop */
};

/* Stops one thread of pid to run code in: one sleeping in a syscall if
 * there is one (not a sleep that only its restart block can resume, nor
 * one a signal waits for, when another will do), and saves its state.
 * 0, or -errno: ESRCH (no thread to borrow), EAGAIN (the process is
 * stopped), ENOEXEC (a 32-bit thread). */
int borrow_thread(pid_t pid, struct borrowed *b);

/* The same for thread tid, whatever it is doing. */
int borrow_tid(pid_t pid, pid_t tid, struct borrowed *b);

/* The same for the one thread of a process at its exec event stop, before
 * the new program's first instruction. */
int borrow_at_exec(pid_t pid, struct borrowed *b);

/* Once a `syscall` instruction is found for it (remote_find_site), runs
 * call nr in the thread. Its result (-errno on failure), or -ESRCH with
 * b->gone set, or -EINTR with b->released set: a signal came first, while
 * signals were not blocked yet, and was delivered (borrow again). */
long remote_syscall(struct borrowed *b, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		    uint64_t a4, uint64_t a5);

/* A `syscall` instruction in the thread's process for the first remote
 * call: the one the thread is stopped in, or one in the vDSO. 0, or
 * -ENOEXEC. */
int remote_find_site(struct borrowed *b);

/* Blocks every signal for the thread, once a frame restores its own mask
 * (a handler must not run on our code: it would find neither its stack
 * nor its registers, and a Go program's would abort on a thread in our
 * code). Signals sent meanwhile wait, as blocked ones do. */
int remote_block_signals(struct borrowed *b);

/* Points the thread at the rt_sigreturn that restores it (sigreturn_pc,
 * site_sp): where it must wait while the tracer works between steps. */
int remote_park(struct borrowed *b);

/* Calls fn(arg) with stack pointer sp in the thread, until it makes the
 * rt_sigreturn it returns to (at `returns_at`), which is not run: the
 * thread is parked. 0, or -EFAULT (it faulted: b->fault), -ESRCH (it
 * died). */
int remote_call(struct borrowed *b, uint64_t fn, uint64_t sp, uint64_t arg, uint64_t returns_at);

/* Puts the thread back exactly as it was, restarts it, and sends the
 * signals held back. Frees what borrow_thread allocated. */
void give_back(struct borrowed *b);

/* A value of the process's auxiliary vector (proc(5) /proc/PID/auxv,
 * AT_* of linux/auxvec.h), or 0. */
uint64_t auxv_value(pid_t pid, uint64_t type);

/* The tracee's memory through /proc/PID/mem, which writes read-only
 * pages too. 0 or -1. */
int remote_write(pid_t pid, uint64_t at, const void *bytes, size_t len);
int remote_read(pid_t pid, uint64_t at, void *bytes, size_t len);

#endif
