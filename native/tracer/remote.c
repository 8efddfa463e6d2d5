/* Remote syscalls and calls through a borrowed thread (remote.h). */
#include "remote.h"

#include <dirent.h>
#include <elf.h>
#include <linux/auxvec.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.h"
#include "tracer.h"

/* How many times a thread may be found at a stop of the program's own
 * before the interrupt of ours: each is handled, and it is asked again. */
#define MAX_OTHER_STOPS 32
/* How many threads are tried before giving up on borrowing one. */
#define MAX_CANDIDATES 16
/* A kernel-internal result (include/linux/errno.h): the call resumes from
 * the thread's restart block, which an rt_sigreturn would clear. */
#define ERESTART_RESTARTBLOCK 516

/* A signal the processor (or seccomp) raised for the instruction that
 * ran, not one somebody sent (si_code > 0: signal(7), siginfo_t): one in
 * our code means our code is wrong, and goes no further than the tracer. */
static int is_fault(pid_t tid, int sig)
{
	siginfo_t si;
	if (sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE && sig != SIGTRAP && sig != SIGSYS)
		return 0;
	return ptrace(PTRACE_GETSIGINFO, tid, 0, &si) == 0 && si.si_code > 0;
}

/* The next stop of the borrowed thread that is ours to act on: a syscall
 * stop, an interrupt stop, or a fault. Stops of the program's own are
 * handled as the event loop would and the thread goes on (PTRACE_SYSCALL,
 * so that our next syscall stop comes). -1 when it died. */
static int next_stop(struct borrowed *b, int *status)
{
	for (;;) {
		pid_t r = waitpid(b->tid, status, __WALL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || !WIFSTOPPED(*status)) {
			if (r > 0)
				handle_wait_status(b->tid, *status);
			b->gone = 1;
			return -1;
		}
		int sig = WSTOPSIG(*status), event = (unsigned)*status >> 16;
		if (sig == (SIGTRAP | 0x80))
			return 0;
		struct thread *t = thread_find(b->tid);
		switch (event) {
		case PTRACE_EVENT_CLONE:
		case PTRACE_EVENT_FORK:
		case PTRACE_EVENT_VFORK:
			if (t) {
				note_new_child(t, event); /* the shim's agent thread */
				unsigned long agent = 0;
				struct thread *a = ptrace(PTRACE_GETEVENTMSG, b->tid, 0, &agent) == 0 ? thread_find((pid_t)agent) : NULL;
				if (a)
					a->flags |= T_AGENT;
			}
			ptrace(PTRACE_SYSCALL, b->tid, 0, 0);
			continue;
		case PTRACE_EVENT_EXIT:
		case PTRACE_EVENT_EXEC:
			/* Killed, or another thread's exec ends this one. */
			handle_wait_status(b->tid, *status);
			b->gone = 1;
			return -1;
		case PTRACE_EVENT_STOP:
			if (!is_group_stop_signal(sig))
				return 0;
			/* The group-stop of a stop signal another thread took: this
			 * thread stops too once it is given back. */
			if (b->nheld < MAX_HELD_SIGNALS)
				b->held[b->nheld++] = SIGSTOP;
			ptrace(PTRACE_SYSCALL, b->tid, 0, 0);
			continue;
		case 0:
			if (is_fault(b->tid, sig)) {
				b->fault = sig;
				return 0;
			}
			if (!b->signals_blocked) {
				/* A signal came before its first remote call ran: it is
				 * delivered as it would have been, from the thread's own
				 * registers, and the thread is let go (remote.h). */
				arch_set_regs(b->tid, &b->saved);
				ptrace(PTRACE_CONT, b->tid, 0, (void *)(long)sig);
				b->released = 1;
				return -1;
			}
			/* Every signal is blocked for it but SIGSTOP (and SIGKILL,
			 * which stops nothing): held, and sent again after. */
			if (b->nheld < MAX_HELD_SIGNALS)
				b->held[b->nheld++] = sig;
			ptrace(PTRACE_SYSCALL, b->tid, 0, 0);
			continue;
		default:
			ptrace(PTRACE_SYSCALL, b->tid, 0, 0);
		}
	}
}

static int syscall_info(pid_t tid, struct __ptrace_syscall_info *info)
{
	return ptrace(PTRACE_GET_SYSCALL_INFO, tid, (void *)sizeof *info, info) > 0 ? 0 : -1;
}

/* Resumes the thread to its next syscall stop of ours. */
static int to_syscall_stop(struct borrowed *b, struct __ptrace_syscall_info *info)
{
	for (;;) {
		int status;
		if (ptrace(PTRACE_SYSCALL, b->tid, 0, 0) < 0 && errno != ESRCH)
			return -errno;
		if (next_stop(b, &status) < 0)
			return b->released ? -EINTR : -ESRCH;
		if (b->fault)
			return -EFAULT;
		/* An interrupt stop: ours that came late (the thread had made
		 * another stop first, a SIGCONT's among them), or another's. */
		if (WSTOPSIG(status) != (SIGTRAP | 0x80))
			continue;
		return syscall_info(b->tid, info) < 0 ? -EPROTO : 0;
	}
}

long remote_syscall(struct borrowed *b, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		    uint64_t a4, uint64_t a5)
{
	const uint64_t args[6] = { a0, a1, a2, a3, a4, a5 };
	arch_regs r = b->saved;
	arch_set_syscall(&r, b->site, b->site_sp ? b->site_sp : b->saved.rsp, nr, args);
	if (arch_set_regs(b->tid, &r) < 0)
		return -ESRCH;
	struct __ptrace_syscall_info info;
	int err = to_syscall_stop(b, &info); /* its entry */
	if (!err && info.op != PTRACE_SYSCALL_INFO_ENTRY)
		err = -EPROTO;
	if (!err)
		err = to_syscall_stop(b, &info); /* its exit */
	if (err)
		return err;
	if (info.op != PTRACE_SYSCALL_INFO_EXIT)
		return -EPROTO;
	return (long)info.exit.rval;
}

int remote_park(struct borrowed *b)
{
	arch_regs r = b->saved;
	arch_set_call(&r, b->sigreturn_pc, b->site_sp, 0);
	return arch_set_regs(b->tid, &r) < 0 ? -ESRCH : 0;
}

int remote_call(struct borrowed *b, uint64_t fn, uint64_t sp, uint64_t arg, uint64_t returns_at)
{
	arch_regs r = b->saved;
	arch_set_call(&r, fn, sp, arg);
	if (arch_set_regs(b->tid, &r) < 0)
		return -ESRCH;
	for (;;) {
		struct __ptrace_syscall_info info;
		int err = to_syscall_stop(b, &info);
		if (err)
			return err;
		if (info.op != PTRACE_SYSCALL_INFO_ENTRY || info.entry.nr != SYS_rt_sigreturn ||
		    info.instruction_pointer - returns_at > 16)
			continue; /* a syscall of the function's own */
		/* The function returned. Its rt_sigreturn is for a tracer that
		 * died: skipped, the thread goes on to the syscall's exit stop.
		 * Should the tracer die before the thread is parked again, the
		 * gadget jumps back to the rt_sigreturn (native/shim/inject.c). */
		if (arch_get_regs(b->tid, &r) < 0)
			return -ESRCH;
		r.orig_rax = (unsigned long long)-1;
		if (arch_set_regs(b->tid, &r) < 0)
			return -ESRCH;
		/* Test hook: the tracer dies right after the n-th skip
		 * (test/engine-attached.test.ts). */
		static int skips;
		die_for_test("TLSD_TRACER_DIE_AFTER_SKIP", ++skips);
		err = to_syscall_stop(b, &info);
		return err ? err : remote_park(b);
	}
}

/* One pread or pwrite of len bytes at `at` in pid's /proc/PID/mem. */
static int proc_mem(pid_t pid, int writing, uint64_t at, void *bytes, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", pid);
	int fd = open(path, (writing ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = writing ? pwrite(fd, bytes, len, (off_t)at) : pread(fd, bytes, len, (off_t)at);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

int remote_read(pid_t pid, uint64_t at, void *bytes, size_t len) { return proc_mem(pid, 0, at, bytes, len); }

int remote_write(pid_t pid, uint64_t at, const void *bytes, size_t len)
{
	return proc_mem(pid, 1, at, (void *)bytes, len);
}

uint64_t auxv_value(pid_t pid, uint64_t type)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/auxv", pid);
	uint64_t aux[512] = { 0 }, value = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, aux, sizeof aux - 16);
	close(fd);
	for (ssize_t i = 0; n > 0 && (i + 2) * 8 <= n && aux[i]; i += 2)
		if (aux[i] == type)
			value = aux[i + 1];
	return value;
}

/* Where a process's vDSO is: AT_SYSINFO_EHDR in /proc/PID/auxv (a few
 * hundred bytes, where /proc/PID/maps takes milliseconds to read in a
 * process of thousands of threads), and its size from its own ELF
 * header. Its code has `syscall` instructions (the fallbacks of its
 * clock functions). 0, or -1 (vdso=0 on the kernel's command line). */
static int vdso_range(pid_t pid, uint64_t *start, uint64_t *end)
{
	*start = auxv_value(pid, AT_SYSINFO_EHDR);
	Elf64_Ehdr eh;
	if (!*start || remote_read(pid, *start, &eh, sizeof eh) < 0 || memcmp(eh.e_ident, ELFMAG, SELFMAG))
		return -1;
	*end = *start;
	for (int i = 0; i < eh.e_phnum && i < 16; i++) {
		Elf64_Phdr ph;
		if (remote_read(pid, *start + eh.e_phoff + (uint64_t)i * sizeof ph, &ph, sizeof ph) < 0)
			return -1;
		if (ph.p_type == PT_LOAD && *start + ph.p_vaddr + ph.p_memsz > *end)
			*end = *start + ph.p_vaddr + ph.p_memsz;
	}
	return *end > *start ? 0 : -1;
}

int remote_find_site(struct borrowed *b)
{
	uint8_t insn[ARCH_SYSCALL_INSN_LEN];
	uint64_t pc = arch_program_counter(&b->saved);
	if (arch_in_syscall(&b->saved) && remote_read(b->pid, pc - sizeof insn, insn, sizeof insn) == 0 &&
	    memcmp(insn, ARCH_SYSCALL_INSN, sizeof insn) == 0) {
		b->site = pc - sizeof insn;
		return 0;
	}
	enum { MAX_VDSO = 64 * 1024 };
	uint64_t start, end;
	if (vdso_range(b->pid, &start, &end) < 0 || end - start > MAX_VDSO)
		return -ENOEXEC;
	uint8_t code[MAX_VDSO];
	size_t len = end - start;
	uint8_t *hit = remote_read(b->pid, start, code, len) == 0
			       ? memmem(code, len, ARCH_SYSCALL_INSN, ARCH_SYSCALL_INSN_LEN) : NULL;
	if (!hit)
		return -ENOEXEC;
	b->site = start + (uint64_t)(hit - code);
	return 0;
}

/* The scheduler state of a thread (proc(5) /proc/PID/task/TID/stat). */
static char thread_state(pid_t pid, pid_t tid)
{
	char path[96], text[512];
	snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = 0;
	char *end = strrchr(text, ')'); /* the name may hold anything */
	return end && end[1] == ' ' ? end[2] : 0;
}

/* Saves the state of a thread at a stop of ours. Its signal mask is left
 * as it is until a frame that restores it is in place
 * (remote_block_signals). */
static int save_state(struct borrowed *b)
{
	if (arch_get_regs(b->tid, &b->saved) < 0)
		return -ESRCH;
	if (!arch_is_native(&b->saved))
		return -ENOEXEC;
	if (arch_get_xstate(b->tid, &b->xstate) < 0)
		return -errno;
	if (ptrace(PTRACE_GETSIGMASK, b->tid, (void *)sizeof b->sigmask, &b->sigmask) < 0) {
		free(b->xstate.bytes);
		b->xstate.bytes = NULL;
		return -errno;
	}
	b->stopped_ns = now_ns();
	return 0;
}

int remote_block_signals(struct borrowed *b)
{
	uint64_t all = ~0ull;
	if (ptrace(PTRACE_SETSIGMASK, b->tid, (void *)sizeof all, &all) < 0)
		return -ESRCH;
	b->signals_blocked = 1;
	return 0;
}

/* The threads worth trying, best first: asleep in a call (S) before
 * running (R); none that tlsd is not done with. `stopped`: how many are
 * in a stop (T, or t: a group-stop under ptrace). */
static int candidates(pid_t pid, pid_t *out, int max, int *stopped)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int n = 0, sleeping = 0;
	struct dirent *e;
	while (n < max && (e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		struct thread *t = tid > 0 ? thread_find(tid) : NULL;
		if (!t || t->pid != pid || (t->flags & (T_EXITING | T_DETACH | T_ATTACHING | T_AWAITING_OWNER)) ||
		    !(t->flags & T_ANNOUNCED))
			continue;
		char s = thread_state(pid, tid);
		if (s == 'S') {
			memmove(out + sleeping + 1, out + sleeping, (size_t)(n - sleeping) * sizeof *out);
			out[sleeping++] = tid;
			n++;
		} else if (s == 'R') {
			out[n++] = tid;
		} else if (s == 't' || s == 'T') {
			(*stopped)++;
		}
	}
	closedir(d);
	return n;
}

/* Interrupts tid and waits for the interrupt stop; the program's own
 * stops that come first are handled as the event loop would. 0, -ESRCH,
 * or -EAGAIN (it is in a group-stop: left in it). */
static int interrupt_thread(struct borrowed *b)
{
	for (int i = 0; i < MAX_OTHER_STOPS; i++) {
		int status;
		if (ptrace(PTRACE_INTERRUPT, b->tid, 0, 0) < 0)
			return -ESRCH;
		pid_t r;
		do
			r = waitpid(b->tid, &status, __WALL);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -ESRCH;
		if (!WIFSTOPPED(status)) {
			handle_wait_status(b->tid, status);
			return -ESRCH;
		}
		int sig = WSTOPSIG(status), event = (unsigned)status >> 16;
		if (event == PTRACE_EVENT_STOP && is_group_stop_signal(sig)) {
			ptrace(PTRACE_LISTEN, b->tid, 0, 0);
			return -EAGAIN;
		}
		if (event == PTRACE_EVENT_STOP) {
			/* As at any interrupt of ours: a wait it made fail with
			 * EINTR is entered again (events.c). */
			arch_restart_interrupted_wait(b->tid, 0, restart_hides_nothing);
			return 0;
		}
		handle_wait_status(b->tid, status); /* and restarts it */
		if (!thread_find(b->tid))
			return -ESRCH;
	}
	return -EBUSY;
}

int borrow_thread(pid_t pid, struct borrowed *b)
{
	pid_t tids[MAX_CANDIDATES];
	int stopped = 0;
	int n = candidates(pid, tids, MAX_CANDIDATES, &stopped);
	int err = stopped && !n ? -EAGAIN : -ESRCH;
	for (int i = 0; i < n; i++) {
		*b = (struct borrowed){ .pid = pid, .tid = tids[i], .interrupted = (uint32_t)i + 1 };
		err = interrupt_thread(b);
		if (err == -EAGAIN)
			return err;
		if (err)
			continue;
		if (arch_get_regs(b->tid, &b->saved) < 0) {
			err = -ESRCH;
			continue;
		}
		/* Its sleep would end early if a dead tracer left it to an
		 * rt_sigreturn: another thread is better, if there is one. */
		if (i + 1 < n && arch_in_syscall(&b->saved) && (long long)b->saved.rax == -ERESTART_RESTARTBLOCK) {
			ptrace(PTRACE_CONT, b->tid, 0, 0);
			continue;
		}
		/* A signal waiting for it would stop it again before the first
		 * remote call: another thread is better, if there is one. */
		if (i + 1 < n && !restart_hides_nothing(b->tid, 0)) {
			ptrace(PTRACE_CONT, b->tid, 0, 0);
			continue;
		}
		err = save_state(b);
		if (!err)
			return 0;
		ptrace(PTRACE_CONT, b->tid, 0, 0);
		if (err == -ENOEXEC)
			return err;
	}
	return err;
}

int borrow_tid(pid_t pid, pid_t tid, struct borrowed *b)
{
	*b = (struct borrowed){ .pid = pid, .tid = tid, .interrupted = 1 };
	int err = interrupt_thread(b);
	if (!err)
		err = save_state(b);
	struct thread *t = err && err != -ESRCH && err != -EAGAIN ? thread_find(tid) : NULL;
	if (t)
		resume(t, 0, 0);
	return err;
}

int borrow_at_exec(pid_t pid, struct borrowed *b)
{
	*b = (struct borrowed){ .pid = pid, .tid = pid, .interrupted = 1 };
	/* From the exec event stop to the exit stop of execve: registers
	 * changed there go to user space as they are. */
	struct __ptrace_syscall_info info;
	int err = to_syscall_stop(b, &info);
	if (err)
		return err;
	if (info.op != PTRACE_SYSCALL_INFO_EXIT)
		return -EPROTO;
	return save_state(b);
}

/* Waits for the interrupt stop asked for at the thread's way out. */
static void restart_through_interrupt(struct borrowed *b)
{
	/* Registers put back at a syscall stop are not restarted by the
	 * kernel unless the thread passes its signal check (a detach or
	 * an interrupt make it): else a read() would return errno 512 to
	 * the program (docs/ptrace.md). */
	ptrace(PTRACE_INTERRUPT, b->tid, 0, 0);
	ptrace(PTRACE_CONT, b->tid, 0, 0);
	for (;;) {
		int status;
		if (next_stop(b, &status) < 0)
			return;
		if (WSTOPSIG(status) == (SIGTRAP | 0x80) || b->fault) {
			b->fault = 0;
			ptrace(PTRACE_CONT, b->tid, 0, 0);
			continue;
		}
		return; /* the interrupt stop */
	}
}

void give_back(struct borrowed *b)
{
	if (b->released) {
		free(b->xstate.bytes);
		b->xstate.bytes = NULL;
		return;
	}
	if (!b->gone) {
		/* Mask and extended state first: should the tracer die between
		 * these calls, the registers still lead to the rt_sigreturn
		 * that restores all three. */
		arch_set_xstate(b->tid, &b->xstate);
		ptrace(PTRACE_SETSIGMASK, b->tid, (void *)sizeof b->sigmask, &b->sigmask);
		arch_set_regs(b->tid, &b->saved);
		restart_through_interrupt(b);
	}
	if (!b->gone) {
		struct thread *t = thread_find(b->tid);
		if (!b->hold && t)
			resume(t, 0, 0); /* at its syscalls too, if its process has rules */
		else if (!b->hold)
			ptrace(PTRACE_CONT, b->tid, 0, 0);
		b->restarted_ns = now_ns();
		for (int i = 0; i < b->nheld; i++)
			syscall(SYS_tgkill, b->pid, b->tid, b->held[i]);
	}
	free(b->xstate.bytes);
	b->xstate.bytes = NULL;
}
