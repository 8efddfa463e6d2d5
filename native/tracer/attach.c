/* Attach to every thread of a running process, race-free against threads
 * born meanwhile (PTRACE.md "Attach to a running process"). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>

#include "protocol.h"
#include "tracer.h"

/* Seized threads whose first stop is due, oldest first. Waiting for one
 * tid is O(1) in the kernel, unlike waitpid(-1), so each is collected right
 * after it stops without walking all tracees after every seize. */
static pid_t *due;
static size_t ndue, due_cap;
/* More threads than this awaiting their stop: let them catch up before
 * seizing more, so none waits long for us. */
#define DUE_WINDOW 32
/* Reap everything this often during a scan: a concurrent multi-threaded
 * execve waits for us to reap its zombies (PTRACE.md "Attach", step 5), and
 * other tracees' stops wait for it too. Only when no seized thread waits
 * on us, and not more often: with 9,000 tracees one waitpid(-1) walk took
 * about 1 ms here. */
#define FULL_DRAIN_INTERVAL_NS 4000000u

static void collect_due(void)
{
	size_t keep = 0;
	for (size_t i = 0; i < ndue; i++) {
		int status;
		pid_t tid = due[i];
		pid_t got = waitpid(tid, &status, WNOHANG | __WALL);
		if (got == 0) {
			struct thread *t = thread_find(tid);
			if (t)
				t->seen_running_ns = now_ns();
			due[keep++] = tid;
		} else if (got == tid) {
			handle_wait_status(tid, status);
			struct thread *t = thread_find(tid);
			if (t && (t->flags & T_ATTACHING)) /* that was an event stop */
				due[keep++] = tid;
		} /* ECHILD: collected by a full drain meanwhile */
	}
	ndue = keep;
}

/* Lets due threads reach their stop (about 100 polls, 2 ms at most);
 * whatever is still due after that arrives through the event loop. */
static void wait_until_due_at_most(size_t n)
{
	const struct timespec pause = { 0, 20000 };
	for (int i = 0; i < 100 && ndue > n; i++) {
		nanosleep(&pause, NULL);
		collect_due();
	}
}

static void push_due(pid_t tid)
{
	if (ndue == due_cap) {
		due_cap = due_cap ? due_cap * 2 : 64;
		due = realloc(due, due_cap * sizeof *due);
		if (!due)
			abort();
	}
	due[ndue++] = tid;
}

static void attach_maybe_done(struct process *p)
{
	if (!(p->flags & P_ATTACHING) || (p->flags & P_SCANNING) || p->awaiting)
		return;
	p->flags &= ~P_ATTACHING;
	send_reply(p->req, 0, p->pid, thread_count_of(p->pid), p->max_stop_ns, p->passes);
}

/* The tids listed in /proc/PID/task, read whole before seizing any: each
 * getdents64 there walks the thread list (1.3-3.7 ms per call with 10,000
 * threads, seen here), and no interrupted thread should wait through one. */
static pid_t *list_tasks(pid_t pid, size_t *n)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", pid);
	DIR *dir = opendir(path);
	if (!dir)
		return NULL;
	size_t cap = 256;
	pid_t *tids = malloc(cap * sizeof *tids);
	*n = 0;
	struct dirent *ent;
	while ((ent = readdir(dir))) {
		pid_t tid = (pid_t)atoi(ent->d_name);
		if (tid <= 0)
			continue;
		if (*n == cap)
			tids = realloc(tids, (cap *= 2) * sizeof *tids);
		if (!tids)
			abort(); /* out of memory: dying detaches every tracee unharmed */
		tids[(*n)++] = tid;
	}
	closedir(dir);
	return tids;
}

/* Seizes the threads of one pass over /proc/PID/task that are not traced
 * yet. Returns how many it seized, or -1 if the process is gone. */
static int seize_pass(pid_t pid, int *first_error)
{
	size_t n;
	pid_t *tids = list_tasks(pid, &n);
	if (!tids)
		return -1;
	int seized = 0;
	uint64_t drained_at = now_ns();
	for (size_t i = 0; i < n; i++) {
		pid_t tid = tids[i];
		struct process *p = process_find(pid);
		if (!p)
			break; /* it died: its death was handled meanwhile */
		if (thread_find(tid))
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
			send_process_new(pid, TLSD_ORIGIN_ATTACH, 0, 0, 0);
		struct thread *t = thread_add(tid);
		thread_claim(t, pid);
		t->source = TLSD_FS_ATTACH;
		t->flags |= T_ATTACHING;
		t->seen_running_ns = now_ns();
		p->awaiting++;
		seized++;
		ptrace(PTRACE_INTERRUPT, tid, 0, 0);
		push_due(tid);
		/* Collect stops between seizes: no thread waits for the scan. */
		collect_due();
		wait_until_due_at_most(DUE_WINDOW);
		if (ndue == 0 && now_ns() - drained_at >= FULL_DRAIN_INTERVAL_NS) {
			drain_waits();
			drained_at = now_ns();
		}
	}
	free(tids);
	/* Nobody waits while the next pass reads the task list again. */
	wait_until_due_at_most(0);
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
		seized = seize_pass(pid, &first_error);
		p = process_find(pid); /* it may have died during the pass */
		if (!p)
			return;
	} while (seized > 0);
	ndue = 0; /* the rest arrive through the event loop */

	if (!p->seized) {
		send_reply(req, first_error ? first_error : ESRCH, pid, 0, 0, p->passes);
		process_remove(pid);
		return;
	}
	p->flags &= ~P_SCANNING;
	attach_maybe_done(p);
}

/* A seized thread is settled: it stopped (its FS base is read) or died. */
static void attach_settled(struct thread *t, int stopped)
{
	t->flags &= ~T_ATTACHING;
	struct process *p = process_find(t->pid);
	if (!p)
		return;
	uint64_t waited = now_ns() - t->seen_running_ns;
	if (stopped && waited > p->max_stop_ns)
		p->max_stop_ns = waited;
	p->awaiting--;
	attach_maybe_done(p);
}

void attach_first_stop_seen(struct thread *t) { attach_settled(t, 1); }
void attach_thread_lost(struct thread *t) { attach_settled(t, 0); }
