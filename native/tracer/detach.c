/* Detach from a process cleanly (docs/ptrace.md "Detach"): interrupt every
 * thread, detach each at its stop with the signal it is owed, the leader
 * last, never twice. A process is detached with the children it forked
 * while supervised (a worker of a server, a test's helper), unless the
 * daemon asks to keep them: leaving them traced would be leaving them
 * with a tracer the user thinks is gone. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ptrace.h>

#include "protocol.h"
#include "release.h"
#include "syscalls.h"
#include "tracer.h"

/* Detaches a stopped thread. Nothing the tracer changes in a tracee
 * outlives the step of the loop that changed it (an injection is done
 * within one: inject.c), so there is nothing to undo here. From a
 * group-stop the thread stays stopped after this, as it should: it was
 * stopped before we came. */
static void let_go(struct thread *t, int signal)
{
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)signal);
}

static void interrupt_for_detach(struct thread *t, void *unused)
{
	(void)unused;
	if (t->flags & T_RELEASED) { /* not traced: nothing to undo */
		thread_forget(t);
		return;
	}
	t->flags = (t->flags & ~T_RELEASE) | T_DETACH | T_KICKED;
	/* ESRCH: a zombie or exiting thread; its reap or exit stop follows. */
	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
	/* One held in a syscall stop for a delay makes no other stop. */
	syscalls_end_delay(t);
}

static void group_release(struct detach_group *g)
{
	if (--g->left)
		return;
	send_reply((struct reply){ .req = g->req });
	free(g);
}

void detach_ended(struct process *p)
{
	struct detach_group *g = p->detach;
	p->detach = NULL;
	if (g)
		group_release(g);
}

static void finish_if_done(struct process *p)
{
	uint32_t left = thread_count_of(p->pid);
	struct thread *leader = thread_find(p->pid);
	if (left == 1 && leader && (leader->flags & (T_DETACH_LAST | T_EXITING))) {
		/* The leader, stopped last, detaches now; an exited (zombie)
		 * leader cannot be detached and stays ours until its group dies. */
		if (leader->flags & T_DETACH_LAST)
			let_go(leader, leader->detach_signal);
		thread_forget(leader);
		left = 0;
	}
	if (left)
		return;
	/* The news before the answer: a daemon that reads the reply already
	 * knows the process is detached. */
	send_detached(p->pid);
	detach_ended(p);
	process_remove(p->pid);
}

static void start_detaching(struct process *p, struct detach_group *g)
{
	release_dropped(p);
	p->flags |= P_DETACHING;
	p->detach = g;
	g->left++;
	thread_each_of(p->pid, interrupt_for_detach, NULL);
	finish_if_done(p);
}

struct family {
	pid_t root;
	struct detach_group *group;
};

static int descends_from(const struct process *p, pid_t root)
{
	/* A chain of forks is short; the bound only guards against a loop. */
	for (int depth = 0; p && p->parent && depth < 4096; depth++) {
		if (p->parent == root)
			return 1;
		p = process_find(p->parent);
	}
	return 0;
}

static void take_along(struct process *p, void *arg)
{
	struct family *f = arg;
	if (!(p->flags & (P_DETACHING | P_SPAWNING | P_ATTACHING)) && descends_from(p, f->root))
		start_detaching(p, f->group);
}

void detach_process(uint32_t req, pid_t pid, int kill_it, int keep_children)
{
	struct process *p = process_find(pid);
	if (!p) {
		send_reply((struct reply){ .req = req, .err = ESRCH, .pid = pid });
		return;
	}
	if (p->flags & (P_DETACHING | P_SPAWNING | P_ATTACHING)) {
		send_reply((struct reply){ .req = req, .err = EBUSY, .pid = pid });
		return;
	}
	if (!kill_it && (p->flags & P_KILL_WITH_DAEMON)) {
		/* Its pre-filter makes calls fail without a tracer. */
		send_reply((struct reply){ .req = req, .err = EPERM, .pid = pid });
		return;
	}
	if (kill_it) {
		/* Its death arrives through the event loop like any other. */
		send_reply((struct reply){ .req = req, .err = kill(pid, SIGKILL) < 0 ? errno : 0, .pid = pid });
		return;
	}
	struct detach_group *g = calloc(1, sizeof *g);
	if (!g)
		abort();
	g->req = req;
	g->left = 1; /* until every member has started: none ends it early */
	struct family family = { pid, g };
	if (!keep_children)
		process_each(take_along, &family);
	start_detaching(p, g);
	group_release(g);
}

static void detach_any(struct process *p, void *unused)
{
	(void)unused;
	if (p->flags & P_KILL_WITH_DAEMON) {
		/* It asked to end with the daemon; its death is reaped (or the
		 * kernel's EXITKILL does it, if the tracer is gone first). */
		kill(p->pid, SIGKILL);
		return;
	}
	p->flags &= ~(P_ATTACHING | P_SPAWNING | P_SCANNING | P_SETTLING);
	if (!(p->flags & P_DETACHING))
		detach_process(0, p->pid, 0, 1);
}

void detach_all(void)
{
	process_each(detach_any, NULL);
}

void detach_at_stop(struct thread *t, int signal)
{
	pid_t pid = t->pid;
	if (t->tid == pid && thread_count_of(pid) > 1) {
		t->flags |= T_DETACH_LAST;
		t->detach_signal = signal;
		return;
	}
	let_go(t, signal);
	thread_forget(t);
	detach_thread_lost(pid);
}

void detach_thread_lost(pid_t pid)
{
	struct process *p = process_find(pid);
	if (p && (p->flags & P_DETACHING))
		finish_if_done(p);
}
