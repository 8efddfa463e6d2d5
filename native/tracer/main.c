/* tlsd-tracer: the ptrace helper of tlsd (docs/architecture.md "Why a
 * helper process").
 *
 * Usage: tlsd-tracer [FD]   (FD: the daemon's socketpair end, default 3)
 *
 * One thread, one loop: epoll over the daemon socket and a signalfd for
 * SIGCHLD (every tracee stop) and for SIGTERM/SIGINT/SIGHUP. When the
 * daemon is gone (EOF, a write that fails, a malformed frame), or on one of
 * those signals, it detaches every tracee and exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"
#include "release.h"
#include "syscalls.h"
#include "tracer.h"

/* Every moment the tracer waits for a CPU, tracees that stopped wait in
 * their stop: it runs ahead of them when it may (root: it may). It is
 * blocked in epoll_wait nearly always, so it takes little. */
#define TRACER_NICE (-10)

/* Lifecycle messages are sent in batches: a daemon woken per message
 * spent more CPU than the tracee it watched (thread churn, seen here).
 * A batch goes when it is this old or this big, or at once when it holds
 * a reply. */
#define BATCH_MAX_AGE_NS 5000000u
#define BATCH_MAX_BYTES 32768u

/* A stop is often followed by another within microseconds (a clone event
 * by the new thread's first stop, that by its exit): polling for it this
 * long before sleeping saves the sleep and the wake-up, which cost the
 * tracees more time, and the tracer about as much CPU, as the polling
 * (thread churn ran in 0.55x the time, the tracer's CPU 1.2-1.3 s before
 * and 1.4-1.6 s after, seen here). Polling stops after SPIN_MAX_NS in a
 * row to look at the daemon's socket again. */
#define SPIN_NS 20000u
#define SPIN_MAX_NS 1000000u

/* How long a closing tracer waits for its tracees to stop and be detached;
 * after that it exits, and the kernel detaches whatever is left: it wakes
 * each tracee from its stop and delivers the signal it stopped with, which
 * is what a detach does too, as long as nothing of ours is left in it. */
#define CLOSE_DEADLINE_MS 500

struct outq out;
static int daemon_fd = 3;
static int daemon_gone;
static int epoll_fd;
static uint64_t close_by; /* monotonic_ms; 0 while not closing */

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tlog(int level, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (daemon_gone) {
		fprintf(stderr, "tlsd-tracer: %s\n", text);
		return;
	}
	out_begin(&out, TLSD_MSG_LOG);
	out_u8(&out, (uint8_t)level);
	out_str(&out, text, strlen(text));
	out_end(&out);
	out_urgent(&out);
}

/* Returns whether it found any stop. */
void die_for_test(const char *variable, int at)
{
	const char *v = getenv(variable);
	const char *file = v ? strchr(v, ':') : NULL;
	if (!file || atoi(v) != at)
		return;
	int fd = open(file + 1, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		kill(getpid(), SIGKILL);
}

static int poll_for_stops(void)
{
	uint64_t start = now_ns(), last = start, now = start;
	int found = 0;
	while (now - last < SPIN_NS && now - start < SPIN_MAX_NS) {
		if (drain_waits()) {
			found = 1;
			last = now_ns();
		}
		now = now_ns();
	}
	return found;
}

static void begin_close(void)
{
	if (close_by)
		return;
	close_by = monotonic_ms() + CLOSE_DEADLINE_MS;
	detach_all();
}

/* The daemon is gone, or no longer speaks the protocol. Its socket leaves
 * the epoll set: at EOF it is readable for ever, and a loop that does not
 * read it would spin on it while its tracees wait. */
static void lose_daemon(void)
{
	if (daemon_gone)
		return;
	daemon_gone = 1;
	out.len = 0;
	epoll_ctl(epoll_fd, EPOLL_CTL_DEL, daemon_fd, NULL);
	begin_close();
}

static void send_hello(void)
{
	out_begin(&out, TLSD_MSG_HELLO);
	out_u32(&out, TLSD_PROTOCOL_VERSION);
	out_u32(&out, (uint32_t)getpid());
	out_end(&out);
	out_urgent(&out);
}

static int batch_due(uint64_t now)
{
	return out.len && (out.urgent || out.len >= BATCH_MAX_BYTES ||
			   now - out.oldest_ns >= BATCH_MAX_AGE_NS);
}

/* Sends what is due, and watches the socket for room (EPOLLOUT) only while
 * something due did not fit, not while a batch fills. */
static void send_due(uint64_t now)
{
	static int watching_out;
	if (daemon_gone) {
		out.len = 0; /* nobody to send it to; tlog() writes to stderr */
		return;
	}
	if (out.len && !out.oldest_ns)
		out.oldest_ns = now;
	if (batch_due(now) && out_flush(&out, daemon_fd) < 0) {
		lose_daemon();
		return;
	}
	int want_out = batch_due(now);
	if (want_out != watching_out) {
		struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.fd = daemon_fd };
		epoll_ctl(epoll_fd, EPOLL_CTL_MOD, daemon_fd, &ev);
		watching_out = want_out;
	}
}

/* How long the loop may sleep (ms, -1: until something happens): until a
 * waiting child must be let go, a delay ends (syscalls_due), a batch is
 * due, or the close deadline. */
static int sleep_limit(uint64_t now, int syscalls_due)
{
	int timeout = release_stale_children(monotonic_ms());
	if (syscalls_due >= 0 && (timeout < 0 || syscalls_due < timeout))
		timeout = syscalls_due;
	if (out.len && !daemon_gone && !batch_due(now)) {
		int due = (int)((out.oldest_ns + BATCH_MAX_AGE_NS - now) / 1000000u) + 1;
		timeout = timeout < 0 || due < timeout ? due : timeout;
	}
	if (close_by) {
		uint64_t now_ms = monotonic_ms();
		uint64_t left = close_by > now_ms ? close_by - now_ms : 0;
		if (timeout < 0 || (uint64_t)timeout > left)
			timeout = (int)left;
	}
	return timeout;
}

/* Closing ends when every tracee is detached, or at the deadline. */
static int closed(void)
{
	return close_by && (process_count() == 0 || monotonic_ms() >= close_by);
}

/* SIGCHLD (stops to collect) and the signals that close the tracer, as a
 * file descriptor the loop polls. */
static int signals_fd(void)
{
	sigset_t handled;
	sigemptyset(&handled);
	sigaddset(&handled, SIGCHLD);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGHUP);
	sigprocmask(SIG_BLOCK, &handled, NULL);
	return signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* Reads the signals that came; returns whether stops were collected. */
static int on_signals(int fd)
{
	struct signalfd_siginfo si[16];
	ssize_t got = read(fd, si, sizeof si);
	for (ssize_t k = 0; k < got / (ssize_t)sizeof si[0]; k++)
		if (si[k].ssi_signo != SIGCHLD)
			begin_close();
	return drain_waits() > 0;
}

void events_watch(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		daemon_fd = atoi(argv[1]);
	if (fcntl(daemon_fd, F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(daemon_fd, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "tlsd-tracer: fd %d is not the daemon's socket\n", daemon_fd);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	remember_scheduling();
	setpriority(PRIO_PROCESS, 0, TRACER_NICE); /* best effort */
	int sig_fd = signals_fd();
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = sig_fd };
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, sig_fd, &ev);
	ev.data.fd = daemon_fd;
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, daemon_fd, &ev);

	send_hello();
	int polling = 0; /* stops came in the last pass: look again soon */
	for (;;) {
		uint64_t now = now_ns();
		int syscalls_due = syscalls_wake(now); /* delays over, counts due */
		send_due(now); /* first: a closing tracer's last news goes too */
		if (closed())
			return 0;
		struct epoll_event events[4];
		int n = epoll_wait(epoll_fd, events, 4, polling ? 0 : sleep_limit(now, syscalls_due));
		int stopped = polling;
		for (int i = 0; i < n; i++) {
			if (events[i].data.fd == sig_fd)
				stopped |= on_signals(sig_fd);
			else if (events[i].data.fd != daemon_fd)
				release_events();
			else if (!daemon_gone && read_commands(daemon_fd) < 0)
				lose_daemon();
		}
		polling = stopped && poll_for_stops();
	}
}
