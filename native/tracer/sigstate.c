/* A thread's signal state, read from /proc/TID/status (proc(5)): whether
 * a restarted call would hide a signal the program should see. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer.h"

struct sigstate {
	unsigned long long pending, blocked, ignored, caught;
};

static int read_sigstate(pid_t tid, struct sigstate *s)
{
	char path[64], text[4096];
	snprintf(path, sizeof path, "/proc/%d/status", tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = 0;
	const struct { const char *name; unsigned long long *field; } fields[] = {
		{ "\nSigPnd:", &s->pending }, { "\nShdPnd:", &s->pending },
		{ "\nSigBlk:", &s->blocked }, { "\nSigIgn:", &s->ignored }, { "\nSigCgt:", &s->caught },
	};
	memset(s, 0, sizeof *s);
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		const char *at = strstr(text, fields[i].name);
		if (!at)
			return -1;
		*fields[i].field |= strtoull(at + strlen(fields[i].name), NULL, 16);
	}
	return 0;
}

static unsigned long long bit(int sig) { return 1ULL << (sig - 1); }

/* What the kernel does with a signal nobody handles and whose default is
 * to ignore it (SIG_KERNEL_IGNORE_MASK in the kernel's signal.h). */
static int ignored_by_default(int sig)
{
	return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
}

int restart_hides_nothing(pid_t tid, int sig)
{
	struct sigstate s;
	if (sig < 0 || sig > 64 || read_sigstate(tid, &s) < 0 || (s.pending & ~s.blocked))
		return 0;
	return sig == 0 || (s.ignored & bit(sig)) || (ignored_by_default(sig) && !(s.caught & bit(sig)));
}
