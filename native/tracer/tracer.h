/* Declarations shared by the tracer's parts. The tracer is one thread: the
 * kernel ties every tracee to the thread that attached it (docs/ptrace.md). */
#ifndef TLSD_TRACER_H
#define TLSD_TRACER_H

#include <stdint.h>
#include <sys/types.h>

#include "tracees.h"
#include "wire.h"

/* No EXITKILL: a tracee must outlive the tracer (docs/architecture.md invariant 1). */
#define TRACE_OPTIONS (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | \
		       PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |    \
		       PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT)

extern struct outq out;

uint64_t now_ns(void);
/* CLOCK_MONOTONIC, for timeouts: the wall clock can be set back. */
uint64_t monotonic_ms(void);
void tlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* messages.c: one function per tracer -> daemon message */
/* REPLY's fields (protocol.h says what each means for each command). */
struct reply {
	uint32_t req;
	int err;
	pid_t pid;
	uint32_t threads;
	uint64_t value;
	uint32_t passes;
	uint32_t interrupted;
};
void send_reply(struct reply r);
void send_process_new(pid_t pid, int origin, pid_t parent_pid, pid_t parent_tid, int shim);
void send_thread_new(const struct thread *t);
void send_fs_base(const struct thread *t, int source);
void send_thread_exiting(const struct thread *t, int exit_status, uint8_t exit_call, int shim_reclaimed);
void send_thread_gone(pid_t pid, pid_t tid, int wait_status);
void send_exec(pid_t pid, pid_t former_tid, uint64_t fs_base);
void send_detached(pid_t pid);
void send_syscall(pid_t pid, pid_t tid, uint32_t rule, uint16_t nr, const uint64_t args[6], int64_t retval,
		  uint64_t duration_ns, uint8_t flags, const char *path);
void send_syscall_count(pid_t pid, pid_t tid, uint16_t nr, uint32_t calls, uint32_t errors, uint64_t time_ns);
void send_injected(uint32_t req, int err, pid_t pid, pid_t tid, uint64_t base, uint64_t stopped_ns,
		   uint32_t interrupted, uint8_t step, const char *reason);

/* events.c */
/* The signals that make a group-stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU). */
int is_group_stop_signal(int sig);
/* Collects every reported stop and death: waitpid(-1), whose cost grows
 * with the number of tracees (the kernel walks its list of them). Returns
 * how many it handled. */
int drain_waits(void);
void handle_wait_status(pid_t tid, int status);
/* Restarts a thread from a ptrace-stop (at its syscalls, if its process
 * has rules), or detaches it if its process is being detached. `signal`
 * is delivered from a signal-delivery stop or a syscall stop; at any
 * other stop the kernel drops it. */
void resume(struct thread *t, int signal, int group_stop);

/* Test hook: if the environment has VARIABLE=AT:FILE, the tracer SIGKILLs
 * itself here, once: only if it can create FILE (the tracer the daemon
 * starts next has the same environment). */
void die_for_test(const char *variable, int at);
/* Lets go of new children kept waiting longer than their parent's event
 * can take; the epoll timeout (ms) to call again, or -1 when none waits. */
int release_stale_children(uint64_t now_ms);
/* Forgets a thread that is gone or detached; answers its refresh waiters. */
void thread_forget(struct thread *t);
/* Reads the FS base of a stopped thread and answers its refresh waiters. */
void note_fs_base(struct thread *t, uint64_t fs_base);
/* At a clone, fork or vfork event stop of parent: names the new child's
 * process (and announces it), without restarting the parent. */
void note_new_child(struct thread *parent, int event);
/* Sends THREAD_NEW once the thread's FS base and its process are known. */
void announce(struct thread *t);

/* attach.c */
void attach_process(uint32_t req, pid_t pid);
/* The tids listed in /proc/PID/task (malloc'd; NULL if it is gone). */
pid_t *list_tasks(pid_t pid, size_t *n);
/* Whether tid is a thread of pid now: /proc/PID/task/TID exists. */
int belongs_to(pid_t tid, pid_t pid);
void settle_attach(uint32_t req, pid_t pid, const uint32_t *tids, const uint64_t *fs_bases, uint32_t n);
void attach_first_stop_seen(struct thread *t);
void attach_thread_lost(struct thread *t);

/* scheduling.c: the tracer's own priority, undone in the processes it
 * spawns (they must start as they would without tlsd). */
void remember_scheduling(void);
void restore_scheduling(void);

/* spawn.c */
struct inject_request;
struct ruleset;
/* inject: the shim to inject at its exec (inject.h), or NULL; rules: its
 * syscall rules from its exec on (taken), or NULL; kill_with_daemon: it
 * dies with the tracer and the daemon, and its rules get a seccomp
 * pre-filter (syscalls.h). */
void spawn_process(uint32_t req, const char *path, char **argv, char **envp, const char *cwd,
		   const char *out_path, const char *err_path, const struct inject_request *inject,
		   struct ruleset *rules, int kill_with_daemon);

/* detach.c */
/* Detaches pid and, unless keep_children, the processes it forked while
 * supervised, and theirs. */
void detach_process(uint32_t req, pid_t pid, int kill_it, int keep_children);
void detach_all(void);
/* A thread of a detaching process stopped: detach it (or hold the leader).
 * `signal` is what it must still receive. */
void detach_at_stop(struct thread *t, int signal);
void detach_thread_lost(pid_t pid);
/* A detaching process is detached or gone: its request may be answered. */
void detach_ended(struct process *p);

/* sigstate.c: whether a call that a stop (sig 0) or the delivery of sig
 * made fail can be restarted without hiding anything from the program: no
 * other signal waits to be handled, and sig, if any, will be ignored. */
int restart_hides_nothing(pid_t tid, int sig);

/* commands.c: runs every complete command the daemon sent on fd; -1 at
 * EOF or on a frame that breaks the protocol. */
int read_commands(int fd);

/* refresh.c */
void refresh_fs_base(uint32_t req, pid_t tid);

#endif
