/* What a tracee's seccomp filters would do with a syscall, found before
 * the tracer makes it run one (seccomp(2)): its filters are read with
 * PTRACE_SECCOMP_GET_FILTER and run here, so that a call they forbid is
 * never made (a forbidden call can kill the process). */
#ifndef TLSD_SECCOMP_H
#define TLSD_SECCOMP_H

#include <stdint.h>
#include <sys/types.h>

enum seccomp_verdict {
	SECCOMP_ALLOWS = 0,
	SECCOMP_FORBIDS = 1, /* any action but ALLOW and LOG */
	SECCOMP_UNKNOWN = 2, /* it has filters the tracer cannot read */
};

/* For thread tid, stopped: the verdict of all its filters on call nr
 * with args, made at `ip`. `action`, when it forbids, is the most
 * restrictive action's name ("KILL_PROCESS", "ERRNO(1)", ...). */
enum seccomp_verdict seccomp_check(pid_t tid, long nr, const uint64_t args[6], uint64_t ip,
				   char *action, size_t action_len);

/* Whether thread tid, stopped, has a filter with these n instructions
 * among its own: 1, 0, or -1 (its filters cannot be read). */
struct sock_filter;
int seccomp_has_filter(pid_t tid, const struct sock_filter *filter, uint32_t n);

#endif
