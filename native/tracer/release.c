/* A process whose shim's engine applies every rule it has is let go of
 * (docs/tracer-protocol.md "Release"). Every signal sent to a traced
 * thread is a ptrace-stop, and the engine's SIGSYS is a signal: traced,
 * each call the engine selects costs a round trip through the tracer
 * (about 15 µs here), untraced a few µs. While it is released, the tracer
 * follows its lifecycle through the kernel's process events connector
 * (NETLINK_CONNECTOR, CN_IDX_PROC): a new thread is seized just long
 * enough to read its FS base, and a thread's end is reported with its exit
 * status. The process's end comes through waitpid if the tracer spawned
 * it, else through a pidfd, its status read from the zombie's
 * /proc/PID/stat or, once its parent reaped it, from the pidfd
 * (PIDFD_INFO_EXIT, Linux 6.15): never lost, as the connector's news can
 * be under load.
 *
 * The shim's agent thread stays traced: it never takes a SIGSYS (it has no
 * filter), and it makes every execve and fork of the program's, so the new
 * image or child is the tracer's from its first instruction. What needs
 * the other threads traced takes them back (a rule the tracer must apply),
 * and lets them go again once it is gone. */
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../shim/inject.h"
#include "protocol.h"
#include "release.h"
#include "shim.h"
#include "syscalls.h"
#include "tracer.h"

static int events_fd = -1;
static int events_failed; /* the connector cannot be had: nothing is released */
static uint32_t nreleased; /* processes released now */
static uint32_t nwatched;  /* of which the tracer did not spawn (end_fd) */
static int reading;        /* in release_events */

/* The connector tells of every process of the machine: it is listened to
 * only while some process is released, for a tracer woken by the forks
 * and exits of others costs CPU (it takes it from the tracees). */
static void close_events_if_idle(void)
{
	if (events_fd < 0 || nreleased || reading)
		return;
	close(events_fd); /* which takes it out of the epoll set */
	events_fd = -1;
}

static int open_events(void)
{
	if (events_fd >= 0 || events_failed)
		return events_fd;
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
	struct {
		struct nlmsghdr nl;
		struct cn_msg cn;
		enum proc_cn_mcast_op op;
	} __attribute__((packed)) listen = {
		.nl = { .nlmsg_len = sizeof listen, .nlmsg_type = NLMSG_DONE },
		.cn = { .id = { CN_IDX_PROC, CN_VAL_PROC }, .len = sizeof(enum proc_cn_mcast_op) },
		.op = PROC_CN_MCAST_LISTEN,
	};
	/* A bigger buffer than the default: events of the whole machine come
	 * in, and an overflow costs a walk of every released process. */
	int size = 4 << 20;
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    send(fd, &listen, sizeof listen, 0) != sizeof listen) {
		tlog(TLSD_LOG_INFO, "no process events connector (%s): a shim's engine runs under ptrace",
		     strerror(errno));
		if (fd >= 0)
			close(fd);
		events_failed = 1;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
	events_fd = fd;
	events_watch(fd);
	return fd;
}

static int is_released(const struct process *p) { return p && (p->flags & P_RELEASED); }

/* --- Letting go -------------------------------------------------------- */

static void mark_for_release(struct thread *t, void *unused)
{
	(void)unused;
	if (t->flags & (T_RELEASED | T_EXITING | T_AGENT))
		return;
	t->flags |= T_RELEASE | T_KICKED;
	/* Detached at its stop (resume below). One in a stop of ours already
	 * (kept for its owner) is let go when that stop ends. */
	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
}

/* A process the tracer did not spawn: a pidfd tells of its end. */
static int watch_end(struct process *p)
{
	if (p->flags & P_SPAWNED)
		return 0;
	p->end_fd = (int)syscall(SYS_pidfd_open, p->pid, 0); /* close-on-exec */
	if (p->end_fd < 0)
		return -1;
	events_watch(p->end_fd);
	nwatched++;
	return 0;
}

void maybe_release(struct process *p)
{
	if (!p || is_released(p) || !p->handed_off || tracer_rules_in_force(p) ||
	    (p->flags & (P_ATTACHING | P_SPAWNING | P_DETACHING | P_SILENT | P_KILL_WITH_DAEMON | P_PREFILTER)) ||
	    open_events() < 0 || watch_end(p) < 0)
		return;
	p->flags |= P_RELEASED;
	nreleased++;
	thread_each_of(p->pid, mark_for_release, NULL);
}

int release_at_stop(struct thread *t, int signal)
{
	if (!(t->flags & T_RELEASE))
		return 0;
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)signal);
	t->flags = (t->flags & ~(T_RELEASE | T_KICKED)) | T_RELEASED;
	return 1;
}

/* --- Taking back ------------------------------------------------------- */

/* A thread the tracer did not know of (its birth event not read yet):
 * seized and read at a stop, as a new thread is. */
static void probe(struct process *p, pid_t tid, int let_go)
{
	struct thread *t = thread_add(tid);
	thread_claim(t, p->pid);
	t->source = TLSD_FS_STOP; /* no parent thread: the connector does not name it */
	if (ptrace(PTRACE_SEIZE, tid, 0, (void *)TRACE_OPTIONS) < 0 || ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) {
		thread_forget(t); /* gone already: never announced */
		return;
	}
	if (let_go)
		t->flags |= T_RELEASE;
}

/* Whether another program (a debugger) traces tid. */
static int traced_by_another(pid_t tid)
{
	char path[64], line[128];
	snprintf(path, sizeof path, "/proc/%d/status", tid);
	FILE *f = fopen(path, "re");
	int tracer = 0;
	while (f && fgets(line, sizeof line, f) && sscanf(line, "TracerPid: %d", &tracer) != 1)
		;
	if (f)
		fclose(f);
	return tracer != 0 && tracer != getpid();
}

static void seize_again(struct thread *t, void *busy)
{
	if (t->flags & T_RELEASE) { /* its stop is due: it stays ours */
		t->flags &= ~T_RELEASE;
		return;
	}
	if (!(t->flags & T_RELEASED))
		return;
	t->flags &= ~T_RELEASED;
	if (ptrace(PTRACE_SEIZE, t->tid, 0, (void *)TRACE_OPTIONS) == 0)
		return;
	if (traced_by_another(t->tid) || t->tid == t->pid) {
		/* Traced by a debugger now; or an exited leader (a zombie, EPERM),
		 * whose group's end is reaped. */
		*(int *)busy |= t->tid != t->pid || !(t->flags & T_EXITING);
		t->flags |= T_RELEASED;
		return;
	}
	send_thread_gone(t->pid, t->tid, 0); /* ended; its event not read yet */
	thread_forget(t);
}

void seize_for_a_stop(struct thread *t)
{
	if (!(t->flags & T_RELEASED))
		return;
	if (ptrace(PTRACE_SEIZE, t->tid, 0, (void *)TRACE_OPTIONS) == 0)
		t->flags = (t->flags & ~T_RELEASED) | T_RELEASE | T_KICKED;
}

/* Threads born while the connector's news of them is still unread. */
static void seize_unknown(struct process *p, int let_go)
{
	size_t n = 0;
	pid_t *tids = list_tasks(p->pid, &n);
	for (size_t i = 0; i < n; i++)
		if (!thread_find(tids[i]))
			probe(p, tids[i], let_go);
	free(tids);
}

int retake(struct process *p)
{
	if (!is_released(p))
		return 0;
	release_events(); /* births and ends up to now */
	int busy = 0;
	thread_each_of(p->pid, seize_again, &busy);
	if (busy) { /* all or none: the ones seized go again */
		tlog(TLSD_LOG_WARN, "process %d: a thread is traced by another program; it stays released", p->pid);
		thread_each_of(p->pid, mark_for_release, NULL);
		return EBUSY;
	}
	release_dropped(p);
	seize_unknown(p, 0);
	return 0;
}

/* --- Following a released process -------------------------------------- */

void release_dropped(struct process *p)
{
	if (!is_released(p))
		return;
	if (!(p->flags & P_SPAWNED)) {
		close(p->end_fd); /* which takes it out of the epoll set */
		nwatched--;
	}
	p->flags &= ~P_RELEASED;
	nreleased--;
	close_events_if_idle();
}

static void read_news(int max);

/* All the news queued when a process ended, which its threads' is among
 * (their own exits, with their names' marks), before its end is told:
 * bounded only by what a few milliseconds of reading take. */
#define NEWS_BEFORE_AN_END 100000

static void read_news_before_end(void)
{
	if (events_fd < 0 || reading)
		return;
	reading = 1;
	read_news(NEWS_BEFORE_AN_END);
	reading = 0;
}

/* The connector does not say whether a thread's end was its own exit or
 * its group's. The shim's engine, which makes every exit of the
 * program's, puts a mark at the head of the thread's name first
 * (TLSSHIM_OWN_EXIT_MARK): its PROC_EVENT_COMM comes just before the end. */

static void ended(struct process *p, struct thread *t, int status)
{
	int own = WIFEXITED(status) && (t->flags & T_OWN_EXIT);
	int reclaimed = p->shim.table ? shim_reclaim(p->pid, &p->shim, t->tid, t->fs_base) : 0;
	send_thread_exiting(t, status, own ? TLSD_EXIT_CALL_EXIT : TLSD_EXIT_CALL_NONE, reclaimed);
	if (t->tid == p->pid) { /* a zombie until its group ends: reaped then */
		t->flags |= T_EXITING;
		return;
	}
	send_thread_gone(p->pid, t->tid, status);
	thread_forget(t);
}

static void gone_with_group(struct thread *t, void *status)
{
	struct process *p = process_find(t->pid);
	if (t->tid != t->pid && p)
		ended(p, t, *(int *)status);
}

void release_group_ended(struct process *p, int status)
{
	if (!is_released(p))
		return;
	read_news_before_end();
	thread_each_of(p->pid, gone_with_group, &status);
	release_dropped(p);
}

/* The connector names a thread's process by child_tgid; its "parent" is
 * the process's parent (real_parent), not the thread that made it. */
static void on_fork(const struct proc_event *ev)
{
	pid_t tid = ev->event_data.fork.child_pid, tgid = ev->event_data.fork.child_tgid;
	struct process *p = process_find(tgid);
	if (tid != tgid && is_released(p) && !thread_find(tid))
		probe(p, tid, 1);
}

static void on_thread_end(const struct proc_event *ev)
{
	pid_t tid = ev->event_data.exit.process_pid;
	struct thread *t = thread_find(tid);
	struct process *p = t ? process_find(t->pid) : NULL;
	if (!is_released(p) || !(t->flags & T_RELEASED) || (t->flags & T_EXITING))
		return;
	ended(p, t, (int)ev->event_data.exit.exit_code);
}

static void on_name(const struct proc_event *ev)
{
	struct thread *t = thread_find(ev->event_data.comm.process_pid);
	if (t && (t->flags & T_RELEASED) && ev->event_data.comm.comm[0] == TLSSHIM_OWN_EXIT_MARK)
		t->flags |= T_OWN_EXIT;
}

static void on_image(const struct proc_event *ev)
{
	struct process *p = process_find(ev->event_data.exec.process_tgid);
	if (!is_released(p))
		return;
	/* Its agent, which stays traced, makes every execve of the program's:
	 * one made otherwise is followed from here on. */
	tlog(TLSD_LOG_WARN, "process %d exec'd while released: its new image ran untraced until now", p->pid);
	pid_t pid = p->pid;
	retake(p);
	take_back(pid);
	send_exec(pid, pid, 0);
}

static void end_if_gone(struct thread *t, void *p)
{
	if ((t->flags & T_RELEASED) && t->tid != t->pid && !belongs_to(t->tid, t->pid))
		ended(p, t, 0); /* its status went with the news */
}

/* Every released process's threads, read again: news was lost. */
static void reconcile(struct process *p, void *unused)
{
	(void)unused;
	if (!is_released(p))
		return;
	thread_each_of(p->pid, end_if_gone, p);
	seize_unknown(p, 1);
}

/* The wait status of a process that ended, not the tracer's child: its
 * zombie's (/proc/PID/stat, field 52), or, once its parent reaped it, the
 * pidfd's (PIDFD_GET_INFO; <linux/pidfd.h> of Linux 6.15). 0 if neither
 * says (a kernel before 6.15, and the parent quick). */
struct pidfd_info {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define PIDFD_INFO_EXIT (1ull << 3)
#define PIDFD_GET_INFO _IOWR(0xFF, 11, struct pidfd_info)

static int reaped_status(int pidfd, int *status)
{
	struct pidfd_info info = { .mask = PIDFD_INFO_EXIT };
	if (ioctl(pidfd, PIDFD_GET_INFO, &info) < 0 || !(info.mask & PIDFD_INFO_EXIT))
		return -1;
	*status = info.exit_code;
	return 0;
}

static int zombie_status(pid_t pid, int *status)
{
	char path[64], text[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	text[n] = 0;
	char *at = strrchr(text, ')'); /* the name may hold anything */
	for (int field = 2; at && field < 52; field++)
		at = strchr(at + 1, ' ');
	return at && sscanf(at + 1, "%d", status) == 1 ? 0 : -1;
}

static int end_status(struct process *p)
{
	int status = 0;
	if (reaped_status(p->end_fd, &status) && zombie_status(p->pid, &status))
		reaped_status(p->end_fd, &status); /* reaped in between */
	return status;
}

/* A released process the tracer did not spawn: has it ended? */
static void check_end(struct process *p, void *unused)
{
	(void)unused;
	struct pollfd fd = { .fd = p->end_fd, .events = POLLIN };
	if (!is_released(p) || (p->flags & P_SPAWNED) || poll(&fd, 1, 0) != 1)
		return;
	read_news(NEWS_BEFORE_AN_END); /* its threads' ends first */
	handle_wait_status(p->pid, end_status(p)); /* as waitpid tells a child's end */
}

/* Reads up to `max` messages of news (each a datagram), or what there is. */
static void read_news(int max)
{
	for (int batch = 0; batch < max; batch++) {
		char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
		ssize_t n = recv(events_fd, buf, sizeof buf, 0);
		if (n < 0 && errno == ENOBUFS) {
			process_each(reconcile, NULL);
			continue;
		}
		if (n <= 0)
			return;
		if (!nreleased)
			continue;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			struct cn_msg *cn = NLMSG_DATA(h);
			if (cn->id.idx != CN_IDX_PROC || cn->len < sizeof(struct proc_event))
				continue;
			const struct proc_event *ev = (const struct proc_event *)cn->data;
			if (ev->what == PROC_EVENT_FORK)
				on_fork(ev);
			else if (ev->what == PROC_EVENT_EXIT)
				on_thread_end(ev);
			else if (ev->what == PROC_EVENT_EXEC)
				on_image(ev);
			else if (ev->what == PROC_EVENT_COMM)
				on_name(ev);
		}
	}
}

void release_events(void)
{
	/* Not again from within (an exec seen here retakes, which reads the
	 * news first): the news would be read out of order. */
	if (events_fd < 0 || reading)
		return;
	reading = 1;
	/* A bounded batch: on a machine that makes processes and threads
	 * without pause, the news never runs dry, and the tracees' stops must
	 * not wait for it (epoll says when there is more). */
	read_news(64);
	/* Within the reading: an end reads no more news than its own
	 * (check_end, release_group_ended). */
	if (nwatched)
		process_each(check_end, NULL);
	reading = 0;
	close_events_if_idle();
}
