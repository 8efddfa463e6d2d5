/* The tracees index: what the tracer knows about each tracee thread and
 * each supervised process, keyed by tid and pid (tracees.c). */
#ifndef TLSD_TRACEES_H
#define TLSD_TRACEES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_REFRESH_WAITERS 8

enum thread_flag {
	T_FIRST_STOP = 1 << 0,  /* its first stop was seen and fs_base read */
	T_CLAIMED = 1 << 1,     /* pid is known (seized, or its clone event seen) */
	T_ANNOUNCED = 1 << 2,   /* THREAD_NEW was sent */
	T_DETACH = 1 << 4,      /* detach at its next stop */
	T_DETACH_LAST = 1 << 5, /* a leader stopped for a detach, detached after
	                           its other threads (detach.c) */
	T_ATTACHING = 1 << 6,   /* seized by an attach, its FS base not known yet */
	T_EXITING = 1 << 7,     /* past its PTRACE_EVENT_EXIT stop */
	T_FS_KNOWN = 1 << 8,    /* fs_base came from its parent's clone event */
	T_AWAITING_OWNER = 1 << 9, /* a new child kept at its first stop until its
	                              parent's clone event names its process */
	T_INTERRUPTED = 1 << 10, /* attach: interrupted to read its FS base */
	T_KICKED = 1 << 11,     /* interrupted by the tracer since its last
	                           interrupt stop: a call that stop makes
	                           restart is the same call (syscalls.c) */
	T_RELEASE = 1 << 12,    /* its process is released: detach at its next
	                           stop (release.c) */
	T_RELEASED = 1 << 13,   /* not traced now: its process is released */
	T_OWN_EXIT = 1 << 14,   /* released, it is ending by its own exit (its
	                           shim's engine said so: release.c) */
	T_AGENT = 1 << 15,      /* the shim's agent thread (seen made during an
	                           injection, or found by its thread pointer
	                           when the engine starts): never released
	                           (release.c) */
	T_ENGINE = 1 << 16,     /* it has the shim engine's filter (engine.c):
	                           its calls of the shim's rules are the
	                           shim's, not the tracer's */
};

struct inject_request;
struct ruleset;
struct sys_state;

struct thread {
	pid_t tid;
	pid_t pid;        /* thread group id; 0 until claimed */
	pid_t parent_tid; /* the thread whose clone created it, or 0 */
	uint32_t flags;
	uint8_t source;   /* enum tlsd_fs_source of its first FS base */
	uint64_t fs_base;
	uint64_t seen_running_ns; /* attach: the last moment it was seen not yet
	                             stopped, so its stop lasted at most until
	                             its restart minus this */
	int detach_signal;       /* T_DETACH_LAST: the signal to detach it with */
	uint64_t awaiting_since_ms; /* T_AWAITING_OWNER: since when (monotonic_ms) */
	int dead;                /* reaped before it was claimed */
	int dead_status;
	uint32_t refresh[MAX_REFRESH_WAITERS];
	int nrefresh;
	struct sys_state *sys; /* its syscall stops (syscalls.c), or NULL */
};

/* A process's libtlsshim table: its address (TLSD_CMD_SHIM) and the
 * geometry its header gives (shim_adopt). */
struct shim_table {
	uint64_t table;
	uint32_t slot_count;
	uint32_t slots_offset;
	uint32_t slot_stride;
	uint8_t mode; /* enum tlsshim_mode */
};

enum process_flag {
	P_ATTACHING = 1 << 0, /* from ATTACH until SETTLE is answered */
	P_SPAWNING = 1 << 1,  /* spawned; reply at its exec stop */
	P_DETACHING = 1 << 2,
	P_SILENT = 1 << 3,    /* failed spawn: reap it, tell nobody */
	P_SCANNING = 1 << 4,  /* attach still walking /proc/PID/task */
	P_SETTLING = 1 << 5,  /* SETTLE came: answer it once no FS base is due */
	P_KILL_WITH_DAEMON = 1 << 6, /* spawned to die with the tracer and the
	                                daemon (PTRACE_O_EXITKILL): never
	                                detached, killed instead */
	P_PREFILTER = 1 << 7, /* has a seccomp pre-filter (syscalls.h): always
	                         with P_KILL_WITH_DAEMON */
	P_HELD = 1 << 8,      /* a spawn whose shim's syscall engine started at
	                         its exec: kept stopped there until HANDOFF */
	P_SPAWNED = 1 << 9,   /* the tracer's own child: waitpid tells its end
	                         (another's end: a pidfd, when released) */
	P_RELEASED = 1 << 10, /* its threads are let go while its shim has the
	                         rules (release.c) */
};

/* One detach request and the processes it takes along (detach.c): it is
 * answered when the last of them is detached or gone. */
struct detach_group {
	uint32_t req;
	uint32_t left;
};

struct process {
	pid_t pid;
	pid_t parent;            /* the supervised process that forked it, or 0 */
	uint32_t flags;
	uint32_t req;            /* attach or spawn request to answer */
	struct detach_group *detach;
	uint32_t awaiting;       /* attach: seized threads whose FS base is due */
	uint32_t seized;
	uint32_t nthreads;       /* threads claimed for this process */
	uint32_t passes;
	uint32_t interrupted;    /* attach: threads interrupted for their FS base */
	uint64_t max_stop_ns;
	struct shim_table shim; /* table == 0: no libtlsshim known */
	struct inject_request *inject; /* P_SPAWNING: the shim to inject at its exec */
	struct ruleset *rules;   /* its syscall rules (syscalls.h), or NULL */
	uint8_t prefilter[64];   /* P_PREFILTER: the calls it stops at */
	uint8_t prefilter_covers; /* every call its rules select is among them */
	uint8_t handed_off;      /* its shim rules are its shim's (HANDOFF) */
	uint64_t held_since_ns;  /* P_HELD: since when */
	uint64_t shim_text[2];   /* where libtlsshim's code is, once found:
	                            its calls are never the program's */
	uint8_t shim_text_read;  /* its mappings were looked at (this image) */
	int end_fd;              /* P_RELEASED and not P_SPAWNED: a pidfd, readable
	                            once it has ended (release.c) */
};

/* Allocations that never fail: out of memory, the tracer aborts, and its
 * death detaches every tracee unharmed. */
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);

struct thread *thread_find(pid_t tid);
struct thread *thread_add(pid_t tid);
/* Names the process a thread belongs to (and counts it there). */
void thread_claim(struct thread *t, pid_t pid);
void thread_remove(pid_t tid);
/* Calls fn for every thread of pid; fn may remove the thread it is given. */
void thread_each_of(pid_t pid, void (*fn)(struct thread *, void *), void *arg);
/* O(1) for a known process. */
uint32_t thread_count_of(pid_t pid);

struct process *process_find(pid_t pid);
struct process *process_add(pid_t pid);
/* Its children, if any, become its parent's: a detach of that parent
 * still takes them along. */
void process_remove(pid_t pid);
/* Calls fn for every process; fn may remove the process it is given. */
void process_each(void (*fn)(struct process *, void *), void *arg);
uint32_t process_count(void);

#endif
