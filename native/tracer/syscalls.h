/* Syscall interposition through ptrace (syscalls.c): a process's rules,
 * matched at each syscall stop of its threads, with strace's semantics
 * for what they do (docs/syscalls.md). */
#ifndef TLSD_SYSCALLS_H
#define TLSD_SYSCALLS_H

#include <stdint.h>
#include <sys/types.h>

struct frame;
struct process;
struct thread;

/* Syscall numbers a rule can select: x86-64's are below 512. */
#define SYSCALL_NR_MAX 512

enum rule_fault {
	RULE_FAULT_NONE = 0,
	RULE_FAULT_ERROR = 1,  /* the call fails with errno `value` */
	RULE_FAULT_RETVAL = 2, /* the call returns `value` */
};

struct rule {
	uint32_t id;
	uint8_t set[SYSCALL_NR_MAX / 8]; /* bit nr: the rule selects call nr */
	uint32_t ntids;                  /* 0: every thread */
	pid_t *tids;
	char *path;         /* NULL, or the path argument the call must have */
	uint8_t *path_args; /* NULL, or per call number: 1 + the index of its
	                       path argument, 0 for a call that has none */
	uint8_t fault;      /* enum rule_fault */
	int64_t value;
	uint8_t signal;     /* 0: none */
	uint32_t delay_enter_us, delay_exit_us;
	uint32_t first, last, step; /* strace's when=first..last+step; first 0:
	                               every call */
	uint8_t trace;      /* each call it selects is sent as a SYSCALL */
	uint8_t shim;       /* the shim's once handed off (HANDOFF) */
};

struct ruleset {
	uint32_t n;
	struct rule *rules;
};

/* Reads `u32 n, n times { rule }` (protocol.h); NULL with f->bad set on
 * a malformed one. An empty set is a valid set. */
struct ruleset *ruleset_read(struct frame *f);
struct ruleset *ruleset_copy(const struct ruleset *rs);
void ruleset_free(struct ruleset *rs);

/* RULES: replaces pid's rules and makes its threads stop at their
 * syscalls (or stop stopping there, when the set is empty). */
void set_rules(uint32_t req, pid_t pid, struct ruleset *rs);
/* COUNTS: sends what pid's threads counted and did not send yet. */
void send_counts_of(uint32_t req, pid_t pid);
/* HANDOFF: pid's shim rules are its shim's until its next exec; a
 * process kept at its exec (P_HELD) goes. */
void hand_off(uint32_t req, pid_t pid);
/* Its process exec'd: what it handed off is the tracer's again (the new
 * image's shim, if it has one, takes it back). */
void take_back(pid_t pid);

/* How many of p's rules the tracer applies (the others are its shim's). */
uint32_t tracer_rules_in_force(const struct process *p);
/* The union of the calls a rule set selects (a bitmap like rule.set). */
void ruleset_union(const struct ruleset *rs, uint8_t set[SYSCALL_NR_MAX / 8]);
/* In a spawned child, just before its execve: a seccomp filter that
 * stops (SECCOMP_RET_TRACE) at the calls in `set` and lets every other
 * one run with no stop (strace's --seccomp-bpf). Such a process cannot
 * run without its tracer: its filtered calls would fail with ENOSYS. So
 * it is only for a spawn that asks to be killed with the daemon
 * (PTRACE_O_EXITKILL, and the tracer kills it when the daemon goes).
 * Returns -1 with errno. */
int install_prefilter(const uint8_t set[SYSCALL_NR_MAX / 8]);

/* Whether a thread must be restarted with PTRACE_SYSCALL. */
int stops_at_syscalls(const struct thread *t);
/* A syscall-entry, seccomp or syscall-exit stop. Returns 1 when the thread is held
 * (a delay): syscalls_wake() restarts it. Else the caller restarts it,
 * with *signal. */
int on_syscall_stop(struct thread *t, int *signal);
/* A spawn whose shim's engine started at its exec is kept stopped there
 * (P_HELD) until HANDOFF, or for 10 s at most. */
void hold_at_exec(struct process *p);
void release_held(struct process *p);
/* Its process just exec'd: the exit stop of that execve comes next. */
void note_exec_for_syscalls(struct thread *t);
/* The thread ends (its exit event, or it is forgotten): a call that does
 * not return (exit, exit_group) is sent, and its counts. */
void syscalls_thread_end(struct thread *t);
void syscalls_thread_free(struct thread *t);
/* A thread held for a delay is let go at once (its process is detached):
 * it goes on as if nothing was injected. */
void syscalls_end_delay(struct thread *t);
/* Restarts held threads whose delay is over, sends counts not sent for a
 * while; returns the epoll timeout (ms) until it must be called again,
 * or -1. */
int syscalls_wake(uint64_t now_ns);

#endif
