/* Detach from a process cleanly (PTRACE.md "Detach"): interrupt every
 * thread, detach each at its stop with the signal it is owed, the leader
 * last, never twice. */
#include <errno.h>
#include <signal.h>
#include <sys/ptrace.h>

#include "protocol.h"
#include "tracer.h"

static void interrupt_for_detach(struct thread *t, void *unused)
{
	(void)unused;
	t->flags |= T_DETACH;
	/* ESRCH: a zombie or exiting thread; its reap or exit stop follows. */
	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
}

static void finish_if_done(struct process *p)
{
	uint32_t left = thread_count_of(p->pid);
	struct thread *leader = thread_find(p->pid);
	if (left == 1 && leader && (leader->flags & (T_HELD | T_EXITING))) {
		/* A held leader detaches now; an exited (zombie) leader cannot be
		 * detached and stays ours until its group dies. */
		if (leader->flags & T_HELD)
			ptrace(PTRACE_DETACH, leader->tid, 0, (void *)(long)leader->held_signal);
		thread_forget(leader);
		left = 0;
	}
	if (left)
		return;
	/* The news before the answer: a daemon that reads the reply already
	 * knows the process is detached. */
	send_detached(p->pid);
	send_reply(p->req, 0, p->pid, 0, 0, 0);
	process_remove(p->pid);
}

void detach_process(uint32_t req, pid_t pid, int kill_it)
{
	struct process *p = process_find(pid);
	if (!p) {
		send_reply(req, ESRCH, pid, 0, 0, 0);
		return;
	}
	if (p->flags & (P_DETACHING | P_SPAWNING | P_ATTACHING)) {
		send_reply(req, EBUSY, pid, 0, 0, 0);
		return;
	}
	if (kill_it) {
		/* Its death arrives through the event loop like any other. */
		send_reply(req, kill(pid, SIGKILL) < 0 ? errno : 0, pid, 0, 0, 0);
		return;
	}
	p->flags |= P_DETACHING;
	p->req = req;
	thread_each_of(pid, interrupt_for_detach, NULL);
	finish_if_done(p);
}

static void detach_any(struct process *p, void *unused)
{
	(void)unused;
	p->flags &= ~(P_ATTACHING | P_SPAWNING | P_SCANNING);
	if (!(p->flags & P_DETACHING))
		detach_process(0, p->pid, 0);
}

void detach_all(void)
{
	process_each(detach_any, NULL);
}

void detach_at_stop(struct thread *t, int signal)
{
	pid_t pid = t->pid;
	if (t->tid == pid && thread_count_of(pid) > 1) {
		t->flags |= T_HELD;
		t->held_signal = signal;
		return;
	}
	/* From a group-stop the thread stays stopped after this, as it
	 * should: it was stopped before we came. */
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)signal);
	thread_forget(t);
	detach_thread_lost(pid);
}

void detach_thread_lost(pid_t pid)
{
	struct process *p = process_find(pid);
	if (p && (p->flags & P_DETACHING))
		finish_if_done(p);
}
