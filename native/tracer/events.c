/* The tracer's reaction to every wait status (docs/ptrace.md "The event
 * loop"). Each stop is handled and the thread restarted before the next
 * one is looked at: clone and exit events never wait for the daemon. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include "arch.h"
#include "inject.h"
#include "protocol.h"
#include "release.h"
#include "shim.h"
#include "syscalls.h"
#include "tracer.h"

int is_group_stop_signal(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

void thread_forget(struct thread *t)
{
	syscalls_thread_end(t);
	for (int i = 0; i < t->nrefresh; i++)
		send_reply((struct reply){ .req = t->refresh[i], .err = ESRCH, .pid = t->tid });
	thread_remove(t->tid);
}

void note_fs_base(struct thread *t, uint64_t fs_base)
{
	int changed = fs_base != t->fs_base;
	t->fs_base = fs_base;
	if (!(t->flags & T_ANNOUNCED))
		return;
	if (t->nrefresh)
		send_fs_base(t, TLSD_FS_REFRESH);
	else if (changed)
		send_fs_base(t, TLSD_FS_STOP);
	for (int i = 0; i < t->nrefresh; i++)
		send_reply((struct reply){ .req = t->refresh[i], .pid = t->tid, .value = fs_base });
	t->nrefresh = 0;
}

/* THREAD_NEW goes once both halves are known: the thread's FS base (its
 * first stop, or the C library's thread list at an attach) and its owner
 * (seize, or the parent's clone event). A new child's first stop may come
 * before its parent's event (docs/ptrace.md); a SIGKILL can even end it
 * before any stop, and then its clone's FS base is all there is. */
void announce(struct thread *t)
{
	if ((t->flags & T_ANNOUNCED) || (!(t->flags & T_FIRST_STOP) && !t->dead) ||
	    !(t->flags & T_CLAIMED) || (t->flags & T_DETACH))
		return;
	send_thread_new(t);
	t->flags |= T_ANNOUNCED;
	if (t->dead) {
		send_thread_gone(t->pid, t->tid, t->dead_status);
		if (t->tid == t->pid)
			process_remove(t->pid);
		thread_forget(t);
	}
}

void resume(struct thread *t, int signal, int group_stop)
{
	if (t->flags & T_AWAITING_OWNER)
		return; /* on_new_child restarts it */
	if (t->tid == t->pid) {
		struct process *p = process_find(t->pid);
		if (p && (p->flags & P_HELD) && !(t->flags & T_DETACH))
			return; /* kept at its exec until HANDOFF (its shim's engine) */
	}
	if (t->flags & T_DETACH) {
		detach_at_stop(t, signal);
		return;
	}
	if (release_at_stop(t, signal))
		return;
	if (group_stop) {
		/* Stay in the group-stop without being in a ptrace-stop, so
		 * SIGCONT resumes it as it would untraced. */
		ptrace(PTRACE_LISTEN, t->tid, 0, 0);
	} else {
		ptrace(stops_at_syscalls(t) ? PTRACE_SYSCALL : PTRACE_CONT, t->tid, 0, (void *)(long)signal);
	}
	/* ESRCH here means it was killed meanwhile: its death report follows. */
}

/* New children kept at their first stop (on_first_stop), and how long at
 * most: their parent's event is normally in the same batch of waits, but
 * it never comes if the parent is killed before reporting it. */
static uint32_t awaiting_owner;
#define OWNER_WAIT_MAX_MS 200u

static void stop_awaiting_owner(struct thread *t)
{
	t->flags &= ~T_AWAITING_OWNER;
	awaiting_owner--;
}

/* A new child's FS base is what its parent's clone asked for, known from
 * the clone event whichever of the two stops comes first (on_new_child),
 * so its first stop needs no read; a thread we seized is read here, as is
 * any thread someone is waiting to have refreshed. */
static void on_first_stop(struct thread *t)
{
	t->flags |= T_FIRST_STOP;
	int from_clone = !(t->flags & T_CLAIMED) || (t->flags & T_FS_KNOWN);
	uint64_t fs_base = t->fs_base;
	if ((!from_clone || t->nrefresh) && arch_read_fs_base(t->tid, &fs_base) < 0)
		return;
	t->fs_base = fs_base;
	announce(t);
	note_fs_base(t, fs_base); /* answers refreshes that came before */
	if (t->flags & T_ATTACHING) {
		attach_first_stop_seen(t);
	} else if (!(t->flags & T_CLAIMED)) {
		/* Its parent's clone event is still queued (waitpid(-1) reports
		 * newer tracees first): it stays stopped until that event says
		 * which process it belongs to, so that it cannot make threads of
		 * an unknown process, nor run before its shim table is fixed. */
		t->flags |= T_AWAITING_OWNER;
		t->awaiting_since_ms = monotonic_ms();
		awaiting_owner++;
	} else {
		shim_first_stop(t);
	}
}

/* An interrupt stop, group-stop, signal-delivery stop or first stop. */
static void on_plain_stop(struct thread *t)
{
	if (!(t->flags & T_FIRST_STOP)) {
		on_first_stop(t);
		return;
	}
	uint64_t fs_base;
	if (arch_read_fs_base(t->tid, &fs_base) == 0)
		note_fs_base(t, fs_base);
}

/* The child of a clone, fork or vfork event, its process known: a
 * process of its own is announced, with a copy of its parent's shim table
 * when it has a copy of its parent's memory. */
static void claim_new_process(struct thread *parent, struct thread *child, int event)
{
	struct process *owner = process_find(parent->pid);
	int origin = event == PTRACE_EVENT_FORK  ? TLSD_ORIGIN_FORK
		     : event == PTRACE_EVENT_VFORK ? TLSD_ORIGIN_VFORK
						   : TLSD_ORIGIN_CLONE;
	struct process *forked = process_add(child->tid);
	forked->parent = parent->pid;
	/* A copy of the parent's memory has a copy of its shim table (fixed
	 * at the child's first stop, shim.c), whatever the event: a raw
	 * clone without CLONE_VM copies it too. */
	int inherits = owner && owner->shim.table && !shares_memory(parent->pid, child->tid);
	if (inherits)
		forked->shim = owner->shim;
	/* strace -f's semantics: what the parent's calls are subject to, its
	 * children's are too, from their first instruction. */
	if (owner) {
		forked->rules = ruleset_copy(owner->rules);
		/* Its filter and the tracer's EXITKILL option are inherited. */
		forked->flags |= owner->flags & (P_KILL_WITH_DAEMON | P_PREFILTER);
		memcpy(forked->prefilter, owner->prefilter, sizeof forked->prefilter);
		forked->prefilter_covers = owner->prefilter_covers;
	}
	send_process_new(child->tid, origin, parent->pid, parent->tid, inherits);
}

/* A new child of a thread or process being detached goes too (docs/ptrace.md
 * "Detach"). One already reaped has nothing left to detach: it is
 * forgotten here, or the leader stopped last (T_DETACH_LAST) would stay
 * ours for ever (seen under churn). */
static void detach_new_child(struct thread *parent, struct thread *child, int was_waiting)
{
	child->flags |= T_DETACH;
	if (child->dead) {
		thread_forget(child);
		detach_thread_lost(parent->pid);
	} else if (was_waiting) {
		detach_at_stop(child, 0);
	} else if (child->flags & T_FIRST_STOP) {
		ptrace(PTRACE_INTERRUPT, child->tid, 0, 0);
	}
}

void note_new_child(struct thread *parent, int event)
{
	unsigned long msg = 0;
	if (ptrace(PTRACE_GETEVENTMSG, parent->tid, 0, &msg) < 0)
		return;
	pid_t tid = (pid_t)msg;
	struct stop_regs regs = { 0 };
	int have_regs = arch_read_regs(parent->tid, &regs) == 0;
	if (have_regs)
		note_fs_base(parent, regs.fs_base);

	/* PTRACE_EVENT_CLONE is also reported for clone() without
	 * CLONE_THREAD when its exit signal is not SIGCHLD: look at the flags. */
	int same_process = event == PTRACE_EVENT_CLONE &&
			   !(have_regs && regs.clone_flags && !(regs.clone_flags & CLONE_THREAD));

	struct thread *child = thread_find(tid);
	if (!child)
		child = thread_add(tid);
	int was_waiting = child->flags & T_AWAITING_OWNER; /* its first stop came first */
	if (was_waiting)
		stop_awaiting_owner(child);
	child->parent_tid = parent->tid;
	child->source = TLSD_FS_CLONE;
	if (have_regs) {
		/* copy_thread() set the child's FS base before its first
		 * instruction: the tls argument with CLONE_SETTLS, else a copy
		 * of the parent's. That is its value at its first stop. */
		child->fs_base = (regs.clone_flags & CLONE_SETTLS) ? regs.clone_tls : regs.fs_base;
		child->flags |= T_FS_KNOWN;
	}

	struct process *owner = process_find(parent->pid);
	int detaching = (parent->flags & T_DETACH) ||
			(owner && (owner->flags & (P_DETACHING | P_SILENT)));
	thread_claim(child, same_process ? parent->pid : tid);
	if (same_process && owner && (owner->flags & P_RELEASED))
		child->flags |= T_RELEASE; /* its parent was seized for a moment */
	if (same_process && (parent->flags & T_ENGINE))
		child->flags |= T_ENGINE; /* a filter is inherited */
	if (detaching) {
		detach_new_child(parent, child, was_waiting);
		return;
	}
	if (!same_process)
		claim_new_process(parent, child, event);
	int dead = child->dead;
	announce(child); /* and forgets a dead one */
	if (was_waiting && !dead) {
		shim_first_stop(child);
		resume(child, 0, 0);
	}
}

static void drop_other_thread(struct thread *t, void *leader)
{
	if (t->tid != *(pid_t *)leader)
		thread_forget(t);
}

/* PTRACE_EVENT_EXEC is reported with the leader's tid; GETEVENTMSG names
 * the thread that called exec. Every other thread is gone by now.
 * Returns 0 when the thread was restarted already (a spawn's injection). */
static int on_exec(struct thread *t)
{
	unsigned long former = 0;
	ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &former);
	pid_t pid = t->tid;
	thread_each_of(pid, drop_other_thread, &pid);

	uint64_t fs_base = 0; /* execve resets it; ld.so sets it later */
	arch_read_fs_base(pid, &fs_base);
	thread_claim(t, pid);
	t->parent_tid = (pid_t)former;
	t->source = TLSD_FS_EXEC;
	t->fs_base = fs_base;
	t->flags = T_CLAIMED | T_FIRST_STOP | T_FS_KNOWN | (t->flags & (T_ANNOUNCED | T_DETACH));

	struct process *p = process_find(pid);
	/* The new image has no shim table at that address (or none at all):
	 * never write there. A new shim says hello again. Its one thread is
	 * the agent that made the execve, traced. */
	if (p)
		p->shim = (struct shim_table){ 0 };
	release_dropped(p);
	take_back(pid);
	note_exec_for_syscalls(t);
	if (p && (p->flags & P_SPAWNING)) {
		/* The first stop of a spawned process is its exec. */
		p->flags &= ~P_SPAWNING;
		send_process_new(pid, TLSD_ORIGIN_SPAWN, 0, 0, 0);
		t->parent_tid = 0;
		announce(t);
		if (p->inject) {
			inject_at_exec(p);
			return 0;
		}
		send_reply((struct reply){ .req = p->req, .pid = pid, .threads = 1 });
		return 1;
	}
	if (t->flags & T_ANNOUNCED)
		send_exec(pid, (pid_t)former, fs_base);
	else
		announce(t);
	return 1;
}

static void on_exit_event(struct thread *t)
{
	struct stop_regs regs = { .exit_call = TLSD_EXIT_CALL_NONE };
	if (arch_read_regs(t->tid, &regs) == 0)
		note_fs_base(t, regs.fs_base);
	unsigned long status = 0;
	if (regs.exit_call != TLSD_EXIT_CALL_NONE)
		status = (regs.arg0 & 0xff) << 8; /* do_exit((code & 0xff) << 8) */
	else /* a signal, or another thread's exit_group or exec */
		ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &status);
	t->flags |= T_EXITING;
	struct process *p = process_find(t->pid);
	int reclaimed = p && p->shim.table ? shim_reclaim(t->pid, &p->shim, t->tid, t->fs_base) : 0;
	syscalls_thread_end(t);
	if (t->flags & T_ANNOUNCED)
		send_thread_exiting(t, (int)status, regs.exit_call, reclaimed);
}

static void on_stop(pid_t tid, int status)
{
	struct thread *t = thread_find(tid);
	if (!t) /* a new child whose parent's clone event is still queued */
		t = thread_add(tid);
	int sig = WSTOPSIG(status);
	int event = (unsigned)status >> 16;

	/* Any ptrace-stop consumes a pending PTRACE_INTERRUPT (the kernel
	 * clears the trap at every stop), and a seized thread is read at the
	 * first stop it makes, whatever its kind: a thread that clones or
	 * exits all the time may make no other. */
	int unread = (t->flags & T_ATTACHING) || ((t->flags & T_RELEASE) && !(t->flags & T_FIRST_STOP));
	if (event && event != PTRACE_EVENT_STOP && unread)
		on_first_stop(t);

	switch (event) {
	case PTRACE_EVENT_CLONE:
	case PTRACE_EVENT_FORK:
	case PTRACE_EVENT_VFORK:
		note_new_child(t, event);
		resume(t, 0, 0);
		return;
	case PTRACE_EVENT_EXEC:
		if (on_exec(t))
			resume(t, 0, 0);
		return;
	case PTRACE_EVENT_SECCOMP: { /* a call its pre-filter stops */
		int signal;
		if (!on_syscall_stop(t, &signal))
			resume(t, signal, 0);
		return;
	}
	case PTRACE_EVENT_EXIT:
		/* Must be restarted even after SIGKILL (docs/ptrace.md). */
		on_exit_event(t);
		resume(t, 0, 0);
		return;
	case PTRACE_EVENT_STOP:
		/* An interrupt of ours (not a group-stop, nor a new child's
		 * first stop) made any wait it was in fail with EINTR: undone. */
		if (!is_group_stop_signal(sig) && (t->flags & (T_FIRST_STOP | T_ATTACHING | T_DETACH | T_KICKED)))
			arch_restart_interrupted_wait(t->tid, 0, restart_hides_nothing);
		t->flags &= ~T_KICKED;
		on_plain_stop(t);
		resume(t, 0, is_group_stop_signal(sig));
		return;
	case 0:
		if (sig == (SIGTRAP | 0x80)) { /* a syscall stop: its process has rules */
			int signal;
			if (!on_syscall_stop(t, &signal))
				resume(t, signal, 0);
			return;
		}
		/* The shim's engine traps calls with SIGSYS: each one is a
		 * signal-delivery stop, passed on at once. */
		if (sig == SIGSYS && (t->flags & T_FIRST_STOP)) {
			resume(t, sig, 0);
			return;
		}
		/* A traced thread is woken by signals it ignores (SIGCHLD by
		 * default): the kernel hands them to the tracer first, so a wait
		 * fails with EINTR where untraced it would not have. Undone. */
		arch_restart_interrupted_wait(t->tid, sig, restart_hides_nothing);
		on_plain_stop(t);
		resume(t, sig, 0); /* signal-delivery stop: re-inject, never swallow */
		return;
	default:
		resume(t, 0, 0);
	}
}

static void on_death(pid_t tid, int status)
{
	struct thread *t = thread_find(tid);
	struct process *p = process_find(tid);
	if (t && !(t->flags & T_CLAIMED)) {
		/* Died before its parent's clone event was read: keep it until
		 * then, so the daemon hears of its birth before its death. */
		t->dead = 1;
		t->dead_status = status;
		return;
	}
	pid_t pid = t ? t->pid : tid;
	int silent = p && (p->flags & P_SILENT);
	if (p) /* a released process's other threads end first, for the daemon */
		release_group_ended(p, status);
	if (t && (t->flags & T_ATTACHING))
		attach_thread_lost(t);
	if (!silent && ((t && (t->flags & T_ANNOUNCED)) || p))
		send_thread_gone(pid, tid, status);
	if (t)
		thread_forget(t);
	if (p) {
		/* The leader is reaped last: the whole process is gone. */
		if (p->flags & P_DETACHING)
			detach_ended(p);
		else if ((p->flags & (P_ATTACHING | P_SPAWNING)) && p->req)
			send_reply((struct reply){ .req = p->req, .err = ESRCH, .pid = tid });
		process_remove(tid);
	} else {
		detach_thread_lost(pid);
	}
}

static void release_if_stale(struct thread *t, void *now_ms)
{
	if (!(t->flags & T_AWAITING_OWNER) || t->awaiting_since_ms + OWNER_WAIT_MAX_MS > *(uint64_t *)now_ms)
		return;
	stop_awaiting_owner(t);
	if (t->dead) {
		thread_forget(t);
		return;
	}
	tlog(TLSD_LOG_WARN, "thread %d: no clone event named its process in %u ms; let go on", t->tid,
	     OWNER_WAIT_MAX_MS);
	ptrace(PTRACE_CONT, t->tid, 0, 0);
}

int release_stale_children(uint64_t now_ms)
{
	if (awaiting_owner)
		thread_each_of(0, release_if_stale, &now_ms); /* unclaimed threads have pid 0 */
	return awaiting_owner ? (int)(OWNER_WAIT_MAX_MS / 2) : -1;
}

void handle_wait_status(pid_t tid, int status)
{
	if (WIFSTOPPED(status))
		on_stop(tid, status);
	else if (WIFEXITED(status) || WIFSIGNALED(status))
		on_death(tid, status);
}

int drain_waits(void)
{
	for (int n = 0;; n++) {
		int status;
		pid_t tid = waitpid(-1, &status, WNOHANG | __WALL);
		if (tid <= 0)
			return n;
		handle_wait_status(tid, status);
	}
}
