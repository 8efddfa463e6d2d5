/* Attach to every thread of a running process, race-free against threads
 * born meanwhile (docs/ptrace.md "Attach to a running process"), without
 * stopping a thread that need not be stopped.
 *
 * It takes two commands. ATTACH seizes every thread, pass after pass over
 * /proc/PID/task until one finds no new thread; PTRACE_SEIZE alone stops
 * nobody. SETTLE then brings the thread pointers the daemon found in the C
 * library's own thread list, read from outside; only the threads it could
 * not account for are interrupted, to read theirs at their stop. A thread
 * that stops by itself meanwhile (a clone, an exit, a signal) is read
 * there. A stop interrupts a blocking call such as epoll_wait with EINTR
 * (signal(7)), so every stop avoided is one the program never sees. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"
#include "tracer.h"

/* Interrupted threads whose stop is due, oldest first. Waiting for one
 * tid is O(1) in the kernel, unlike waitpid(-1), so each is collected right
 * after it stops without walking all tracees after every interrupt. */
static pid_t *due;
static size_t ndue, due_cap;
/* More threads than this awaiting their stop: let them catch up before
 * interrupting more, so none waits long for us. */
#define DUE_WINDOW 32
/* Collect every stop this often while seizing: a seized thread that stops
 * at an event (a clone, an exit) waits for us, and a concurrent
 * multi-threaded execve waits for us to reap its zombies (docs/ptrace.md
 * "Attach to a running process", step 5). Not more often: with 9,000
 * tracees one waitpid(-1) walk took about 1 ms here. */
#define DRAIN_INTERVAL_NS 1000000u

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
			if (t && (t->flags & T_ATTACHING)) /* its stop could not be read */
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
	if (!(p->flags & P_SETTLING) || p->awaiting)
		return;
	p->flags &= ~(P_ATTACHING | P_SETTLING);
	send_reply((struct reply){ .req = p->req, .pid = p->pid, .threads = thread_count_of(p->pid), .value = p->max_stop_ns, .passes = p->passes, .interrupted = p->interrupted });
}

/* Read whole before seizing any: each getdents64 there walks the thread
 * list (1.3-3.7 ms per call with 10,000 threads, seen here), and nothing
 * should wait on us through one. */
pid_t *list_tasks(pid_t pid, size_t *n)
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

/* A listed tid can be reused between the listing and the seize, by a
 * thread of any process, once the kernel's pid counter has come round
 * (pid_max can be 32768: a program churning threads does that in about a
 * second). */
int belongs_to(pid_t tid, pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d", pid, tid);
	return access(path, F_OK) == 0;
}

/* A stranger was seized by mistake: it is let go at its next stop. */
static void let_go_of_stranger(pid_t tid)
{
	struct thread *t = thread_add(tid);
	thread_claim(t, tid); /* a process of its own, as far as we know */
	t->flags |= T_DETACH;
	ptrace(PTRACE_INTERRUPT, tid, 0, 0);
	tlog(TLSD_LOG_WARN, "thread %d was seized after its tid was reused by another process; let go", tid);
}

/* Seizes the threads of one pass over /proc/PID/task that are not traced
 * yet. Returns how many it seized, or -1 if the process is gone. Why the
 * leader could not be seized goes to *leader_errno: EPERM also means it is
 * exiting or a zombie, which only matters if no thread at all was seized. */
static int seize_pass(pid_t pid, int *leader_errno)
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
		if (now_ns() - drained_at >= DRAIN_INTERVAL_NS) {
			drain_waits();
			drained_at = now_ns();
			if (!(p = process_find(pid)))
				break;
		}
		if (thread_find(tid))
			continue;
		if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(long)TRACE_OPTIONS) < 0) {
			/* ESRCH: it exited. EPERM: auto-attached through a clone
			 * event we have not read yet, exiting, a zombie leader, or
			 * another tracer's. */
			if (tid == pid)
				*leader_errno = errno;
			continue;
		}
		if (!belongs_to(tid, pid)) {
			let_go_of_stranger(tid);
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
	}
	free(tids);
	return seized;
}

void attach_process(uint32_t req, pid_t pid)
{
	if (process_find(pid)) {
		send_reply((struct reply){ .req = req, .err = EEXIST, .pid = pid });
		return;
	}
	struct process *p = process_add(pid);
	p->flags = P_ATTACHING | P_SCANNING;
	p->req = req;
	int leader_errno = 0, seized;
	/* gdb's rule: repeat until a full pass finds no new thread. */
	do {
		p->passes++;
		seized = seize_pass(pid, &leader_errno);
		p = process_find(pid); /* it may have died during the pass */
		if (!p)
			return;
	} while (seized > 0);
	drain_waits(); /* threads that stopped by themselves meanwhile */
	if (!(p = process_find(pid)))
		return;
	p->flags &= ~P_SCANNING;

	if (!p->seized) {
		send_reply((struct reply){ .req = req, .err = leader_errno ? leader_errno : ESRCH, .pid = pid, .passes = p->passes });
		process_remove(pid);
		return;
	}
	send_reply((struct reply){ .req = req, .pid = pid, .threads = thread_count_of(pid), .passes = p->passes });
	p->req = 0; /* SETTLE brings the next one */
}

/* A seized thread is settled: its FS base is known, or it died. */
static void attach_settled(struct thread *t, uint64_t stopped_ns)
{
	t->flags &= ~T_ATTACHING;
	struct process *p = process_find(t->pid);
	if (!p)
		return;
	if (stopped_ns > p->max_stop_ns)
		p->max_stop_ns = stopped_ns;
	p->awaiting--;
	attach_maybe_done(p);
}

/* Its stop is either one we caused (an interrupt: it lasted at most from
 * the last time we saw it running to now) or one of its own. */
void attach_first_stop_seen(struct thread *t)
{
	attach_settled(t, (t->flags & T_INTERRUPTED) ? now_ns() - t->seen_running_ns : 0);
}

void attach_thread_lost(struct thread *t) { attach_settled(t, 0); }

static void take_thread_pointer(pid_t pid, pid_t tid, uint64_t fs_base)
{
	struct thread *t = thread_find(tid);
	/* Anything else is news to us since the daemon read the list: gone,
	 * its tid reused by a child (whose FS base came from its clone), or
	 * read at a stop of its own. */
	if (!t || t->pid != pid || !(t->flags & T_ATTACHING) || (t->flags & T_FIRST_STOP))
		return;
	t->fs_base = fs_base;
	t->flags |= T_FIRST_STOP;
	announce(t);
	attach_settled(t, 0);
}

static void interrupt_unsettled(struct thread *t, void *unused)
{
	(void)unused;
	struct process *p = process_find(t->pid);
	if (!p || !(t->flags & T_ATTACHING) || (t->flags & T_INTERRUPTED))
		return;
	t->flags |= T_INTERRUPTED;
	t->seen_running_ns = now_ns();
	p->interrupted++;
	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
	push_due(t->tid);
	/* Collect stops between interrupts: no thread waits for the rest. */
	collect_due();
	wait_until_due_at_most(DUE_WINDOW);
}

void settle_attach(uint32_t req, pid_t pid, const uint32_t *tids, const uint64_t *fs_bases, uint32_t n)
{
	struct process *p = process_find(pid);
	if (!p || !(p->flags & P_ATTACHING) || (p->flags & (P_SCANNING | P_SETTLING))) {
		send_reply((struct reply){ .req = req, .err = p ? EINVAL : ESRCH, .pid = pid });
		return;
	}
	p->flags |= P_SETTLING;
	p->req = req;
	for (uint32_t i = 0; i < n; i++)
		take_thread_pointer(pid, (pid_t)tids[i], fs_bases[i]);
	ndue = 0;
	thread_each_of(pid, interrupt_unsettled, NULL);
	wait_until_due_at_most(0);
	ndue = 0; /* the rest arrive through the event loop */
	if ((p = process_find(pid)))
		attach_maybe_done(p);
}
