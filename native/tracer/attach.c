/* Attach to every thread of a running process, race-free against threads
 * born meanwhile (PTRACE.md "Attach to a running process"). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>

#include "protocol.h"
#include "tracer.h"

static void attach_maybe_done(struct process *p)
{
	if (!(p->flags & P_ATTACHING) || (p->flags & P_SCANNING) || p->awaiting)
		return;
	p->flags &= ~P_ATTACHING;
	send_reply(p->req, 0, p->pid, thread_count_of(p->pid), p->max_stop_ns, p->passes);
}

/* Seizes the tids of one pass over /proc/PID/task that are not traced yet.
 * Returns how many it seized, or -1 if the task folder is gone. */
static int seize_pass(struct process *p, int *first_error)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", p->pid);
	DIR *dir = opendir(path);
	if (!dir)
		return -1;
	int seized = 0;
	struct dirent *ent;
	while ((ent = readdir(dir))) {
		pid_t tid = (pid_t)atoi(ent->d_name);
		if (tid <= 0 || thread_find(tid))
			continue;
		if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(long)TRACE_OPTIONS) < 0) {
			/* ESRCH: it exited. EPERM: auto-attached through a clone
			 * event we have not read yet, a zombie leader, or another
			 * tracer's; only the last is an error, if it is all. */
			if (errno != ESRCH && !*first_error)
				*first_error = errno;
			continue;
		}
		if (!p->seized++)
			send_process_new(p->pid, TLSD_ORIGIN_ATTACH, 0, 0);
		struct thread *t = thread_add(tid);
		t->pid = p->pid;
		t->source = TLSD_FS_ATTACH;
		t->flags = T_CLAIMED | T_ATTACHING;
		t->interrupted_ns = now_ns();
		p->awaiting++;
		seized++;
		ptrace(PTRACE_INTERRUPT, tid, 0, 0);
		/* Collect stops between seizes: no thread waits for the whole
		 * scan, and a concurrent multi-threaded execve, which waits for
		 * us to reap its zombies, cannot deadlock with the attach. */
		drain_waits();
	}
	closedir(dir);
	return seized;
}

void attach_process(uint32_t req, pid_t pid)
{
	if (process_find(pid)) {
		send_reply(req, EEXIST, pid, 0, 0, 0);
		return;
	}
	struct process *p = process_add(pid);
	p->flags = P_ATTACHING | P_SCANNING;
	p->req = req;
	int first_error = 0, seized;
	/* gdb's rule: repeat until a full pass finds no new thread. */
	do {
		p->passes++;
		seized = seize_pass(p, &first_error);
		p = process_find(pid); /* it may have died during the pass */
		if (!p)
			return;
	} while (seized > 0);

	if (!p->seized) {
		send_reply(req, first_error ? first_error : ESRCH, pid, 0, 0, p->passes);
		process_remove(pid);
		return;
	}
	p->flags &= ~P_SCANNING;
	attach_maybe_done(p);
}

void attach_first_stop_seen(struct thread *t)
{
	t->flags &= ~T_ATTACHING;
	struct process *p = process_find(t->pid);
	if (!p)
		return;
	uint64_t waited = now_ns() - t->interrupted_ns;
	if (waited > p->max_stop_ns)
		p->max_stop_ns = waited;
	p->awaiting--;
	attach_maybe_done(p);
}

void attach_thread_lost(struct thread *t)
{
	t->flags &= ~T_ATTACHING;
	struct process *p = process_find(t->pid);
	if (!p)
		return;
	p->awaiting--;
	attach_maybe_done(p);
}
