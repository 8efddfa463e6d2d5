/* The floor under tlsd's tracing cost: the least a tracer can do for the
 * same job. It seizes the command it starts with the options tlsd-tracer
 * uses (native/tracer/tracer.h) and, at every stop, only lets the thread
 * go on: no bookkeeping, no reads, no messages. It runs at the priority
 * tlsd-tracer gives itself, so that the two differ only in their work.
 *
 *   floor-tracer [--poll-us N] [--syscalls] COMMAND [ARG...]
 *
 * With --syscalls it stops the command at every syscall's entry and exit
 * (PTRACE_SYSCALL) and does nothing there either: the floor under a
 * syscall rule of tlsd's tracer.
 *
 * It sleeps in waitpid between stops; with --poll-us it first polls for
 * the next stop for N microseconds, as tlsd-tracer does (native/tracer/
 * main.c says why). Exits with the command's status once the command's
 * first process ends. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRACE_OPTIONS (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | \
		       PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |    \
		       PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT)
#define TRACER_NICE (-10)

static int is_group_stop_signal(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The next stop: polled for poll_ns first, then waited for. */
static pid_t next_stop(int *status, long long poll_ns)
{
	for (long long until = now_ns() + poll_ns; poll_ns && now_ns() < until;) {
		pid_t tid = waitpid(-1, status, WNOHANG | __WALL);
		if (tid != 0)
			return tid;
	}
	return waitpid(-1, status, __WALL);
}

int main(int argc, char **argv)
{
	long long poll_ns = 0;
	if (argc > 2 && strcmp(argv[1], "--poll-us") == 0) {
		poll_ns = atoll(argv[2]) * 1000;
		argv += 2;
		argc -= 2;
	}
	int restart = PTRACE_CONT;
	if (argc > 1 && strcmp(argv[1], "--syscalls") == 0) {
		restart = PTRACE_SYSCALL;
		argv++;
		argc--;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: floor-tracer [--poll-us N] [--syscalls] COMMAND [ARG...]\n");
		return 2;
	}
	int go[2];
	if (pipe(go) < 0)
		return 1;
	pid_t child = fork();
	if (child == 0) {
		char byte;
		close(go[1]);
		if (read(go[0], &byte, 1) != 1)
			_exit(127);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	setpriority(PRIO_PROCESS, 0, TRACER_NICE);
	if (ptrace(PTRACE_SEIZE, child, 0, (void *)(long)TRACE_OPTIONS) < 0)
		return 1;
	(void)!write(go[1], "g", 1);
	for (;;) {
		int status;
		pid_t tid = next_stop(&status, poll_ns);
		if (tid < 0)
			return 1;
		if (tid == child && (WIFEXITED(status) || WIFSIGNALED(status)))
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (!WIFSTOPPED(status))
			continue;
		int sig = WSTOPSIG(status), event = (unsigned)status >> 16;
		if (event == PTRACE_EVENT_STOP && is_group_stop_signal(sig))
			ptrace(PTRACE_LISTEN, tid, 0, 0);
		else if (event || sig == (SIGTRAP | 0x80))
			ptrace(restart, tid, 0, 0);
		else
			ptrace(restart, tid, 0, (void *)(long)sig);
	}
}
