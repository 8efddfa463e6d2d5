/* Loading libtlsshim into a running process and starting it, with the
 * tracer as its loader (inject.c): no code of the target's runs. */
#ifndef TLSD_INJECT_H
#define TLSD_INJECT_H

#include <stdint.h>
#include <sys/types.h>

struct process;

/* The least stack the shim's entry points may need below their frame. */
#define INJECT_MIN_CALL_STACK (16 * 1024)

struct inject_request {
	uint8_t mode;        /* enum tlsshim_mode */
	uint32_t slot_count; /* 0: the shim's default */
	uint32_t slot_bytes;
	char *shim_path;
	char *socket_path;
	uint8_t trap[64];    /* all zero: no syscall engine (native/shim/engine.h) */
};

/* INJECT: into a supervised, running process. Answered with INJECTED. */
void inject_process(uint32_t req, pid_t pid, const struct inject_request *q);

/* A spawned process at its exec event stop, asked to start with the shim:
 * injects it before the program's first instruction, answers the spawn
 * with INJECTED, and leaves the thread running, or, when the shim's
 * syscall engine started, stopped until HANDOFF (P_HELD). On failure the
 * process is killed before it ran (P_SILENT). */
void inject_at_exec(struct process *p);

/* TIDY: removes what a tracer killed during an injection left in pid (a
 * stub page, a shim that never started), through the shim at shim_path
 * (its layout). Answered with REPLY: threads = mappings removed, passes =
 * shims found started, which stay. */
void tidy_process(uint32_t req, pid_t pid, const char *shim_path);

/* An injection's first step, for engine.c: a stub page with a `syscall`
 * and a signal frame holding b's own state, the thread parked on it with
 * every signal blocked, so that remote syscalls can run in it. The page's
 * address (its length in *len), or 0 with `err` and `why` set. Unmapped
 * by the caller once the thread waits on another frame. */
struct borrowed;
uint64_t stub_map(struct borrowed *b, uint64_t *len, int *err, char *why, size_t why_len);

/* Whether it starts the shim's syscall engine. */
int has_trap(const struct inject_request *q);

/* A copy kept for inject_at_exec. */
struct inject_request *inject_request_copy(const struct inject_request *q);
void inject_request_free(struct inject_request *q);

#endif
