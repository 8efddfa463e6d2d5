/* The in-process syscall engine (engine.c): a seccomp filter that traps
 * the selected calls (SECCOMP_RET_TRAP), and a SIGSYS handler that applies
 * tlsd's rules to them inside the process, with strace's semantics
 * (docs/syscalls.md). The agent thread (ipc.c) writes the rules, renews
 * their lease, sends the counts and records, and makes the calls that
 * must not run in a filtered thread (execve, fork: agent_call below). */
#ifndef TLSSHIM_ENGINE_H
#define TLSSHIM_ENGINE_H

#include <stdint.h>

#define ENGINE_NR_MAX 512 /* x86-64's call numbers are below this */
#define ENGINE_MAX_RULES 256
#define ENGINE_MAX_TIDS 16
#define ENGINE_PATH_MAX 256

enum engine_fault { FAULT_NONE = 0, FAULT_ERROR = 1, FAULT_RETVAL = 2 };

/* One rule, as tlsd's tracer has it (native/tracer/syscalls.h), with
 * bounds: longer lists and paths stay with the tracer's engine. */
struct engine_rule {
	uint32_t id;
	uint8_t set[ENGINE_NR_MAX / 8];
	uint8_t fault, trace, signal, ntids;
	int64_t value;
	uint32_t delay_enter_us, delay_exit_us;
	uint32_t first, last, step;
	int32_t tids[ENGINE_MAX_TIDS];
	uint32_t path_length; /* 0: no path; else the path's bytes, with its NUL */
	char path[ENGINE_PATH_MAX];
};

/* Starts the engine on the calling thread, which must be the process's
 * only thread but the agent (a program's constructor): the SIGSYS
 * handler, this thread's alternate stack, and a filter trapping the calls
 * in `trap` and the ones the engine always handles. Threads it makes
 * inherit the filter; the agent, made before, never has it. Returns once
 * tlsd's first rules are in force (or tlsd is gone): 0, or -1. */
int engine_start(const uint8_t trap[ENGINE_NR_MAX / 8]);
int engine_running(void);

/* The same in a running process, whose threads tlsd's tracer brings in
 * one by one (inject.h, TLSSHIM_ENGINE_*). engine_prepare: the process's
 * part, once; later calls only look at the handlers again. 0, or -1. */
int engine_prepare(const uint8_t trap[ENGINE_NR_MAX / 8]);
/* The filter engine_prepare built, for the tracer to recognise. */
const void *engine_filter(uint32_t *length);
/* The calling thread's part: `mask` is its signal mask as the program
 * set it (SIGSYS is taken out of the real one by the caller), `stack`
 * an alternate stack it may keep (0: one is mapped), *kept whether it did.
 * Signals blocked. 0, or -1. */
int engine_enter(uint64_t mask, uint64_t stack, int *kept);
/* The calls its filter traps (a bitmap, bit nr for call nr). */
void engine_trapped(uint8_t out[ENGINE_NR_MAX / 8]);

/* --- For the agent ---------------------------------------------------- */

/* Rules being received; engine_commit makes them the rules in force, with
 * a lease of `lease_ms` from now. */
struct engine_rule *engine_rule_slot(uint32_t i);
void engine_commit(uint32_t n, uint64_t lease_ms);
void engine_renew(uint64_t lease_ms);
/* tlsd is gone: every rule is dropped at once. */
void engine_drop_rules(void);
/* The path argument's index + 1 of call nr, 0 for none (from tlsd). */
void engine_set_path_arg(uint32_t nr, uint8_t arg);

/* What the agent sends: counts since the last take, and traced calls. */
struct engine_count { uint32_t nr, calls, errors; uint64_t time_ns; };
struct engine_thread_count { uint32_t tid, calls, errors; };
struct engine_record {
	uint64_t published;
	uint32_t tid, nr, rule, flags;
	uint64_t args[6];
	int64_t retval;
	uint64_t duration_ns, at_ns;
	char path[ENGINE_PATH_MAX];
};
/* Calls fn for each call number counted since the last take. */
void engine_take_counts(void (*fn)(const struct engine_count *, void *), void *arg);
void engine_take_thread_counts(void (*fn)(const struct engine_thread_count *, void *), void *arg);
/* The next traced call, or NULL; engine_record_done after sending it. */
const struct engine_record *engine_next_record(void);
void engine_record_done(void);
uint64_t engine_records_dropped(void);

/* A call the agent makes for a thread of the process (agent_call), whose
 * SIGSYS frame is `uc`. 1 when there is one to make. */
int engine_pending_call(void);
void engine_make_call(void);
/* Set when a thread calls exit_group: the agent flushes, then says so. */
int engine_flush_wanted(void);
void engine_flushed(void);

#endif
