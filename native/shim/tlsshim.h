/* libtlsshim: thread-local storage for code injected into another
 * program, without the host's libc, dynamic linker or __thread.
 *
 * Each thread's variables live in a slot of one table, found by a key:
 *   - TLSSHIM_MODE_THREAD_POINTER: the thread's FS base (rdfsbase when the
 *     CPU and kernel allow it, AT_HWCAP2 & HWCAP2_FSGSBASE; otherwise
 *     arch_prctl(ARCH_GET_FS), a syscall per get). Never the word at %fs:0,
 *     which static Go programs leave 0.
 *   - TLSSHIM_MODE_TID: the kernel tid (gettid, a syscall per get).
 *
 * tlsshim_get takes no lock, allocates nothing and is async-signal-safe.
 * A thread's first get claims a slot (compare-and-swap on its key word,
 * with signals blocked for the claim) and zero-fills it.
 *
 * Thread pointers are reused as soon as a thread is gone, so a thread must
 * give its slot back before it ends: tlsshim_release, or
 * tlsshim_release_and_exit. tlsd reclaims the slots of threads that do not
 * (it sees every thread end). */
#ifndef TLSSHIM_H
#define TLSSHIM_H

#include <stddef.h>
#include <stdint.h>

#define TLSSHIM_VERSION 1

enum tlsshim_mode {
	TLSSHIM_MODE_THREAD_POINTER = 1,
	TLSSHIM_MODE_TID = 2,
};

/* Errors: negative returns. */
enum {
	TLSSHIM_EINVAL = -1,      /* a bad argument */
	TLSSHIM_ENOTSTARTED = -2, /* tlsshim_start has not run */
	TLSSHIM_ESTARTED = -3,    /* tlsshim_start ran already */
	TLSSHIM_ENOMEM = -4,      /* the table could not be mapped */
	TLSSHIM_ENOSPACE = -5,    /* the per-thread bytes are all taken */
	TLSSHIM_ENOVARS = -6,     /* TLSSHIM_MAX_VARS variables are registered */
	TLSSHIM_ENOSLOT = -7,     /* no slot for this thread (table full, or no FS base) */
	TLSSHIM_EENGINE = -8,     /* the syscall engine did not start (engine.h) */
};

/* Defaults, when the context (or the environment) says 0. */
#define TLSSHIM_DEFAULT_SLOTS 4096      /* threads at once; a power of two */
#define TLSSHIM_DEFAULT_SLOT_BYTES 1024 /* variable bytes per thread */
#define TLSSHIM_MAX_SLOTS (1u << 20)
#define TLSSHIM_MAX_SLOT_BYTES (1u << 20)
#define TLSSHIM_MAX_VARS 64
#define TLSSHIM_MAX_ALIGN 64

/* What starts the shim: filled by the LD_PRELOAD constructor from the
 * environment (TLSSHIM_MODE=thread-pointer|tid, TLSSHIM_SLOTS,
 * TLSSHIM_SLOT_BYTES, TLSSHIM_SOCKET), or by whoever loads it otherwise. */
struct tlsshim_context {
	uint32_t version;     /* TLSSHIM_VERSION */
	uint32_t mode;        /* enum tlsshim_mode */
	uint32_t slot_count;  /* 0: the default; else a power of two */
	uint32_t slot_bytes;  /* 0: the default */
	uint64_t hwcap2;      /* the process's AT_HWCAP2 */
	const char *socket_path; /* tlsd's shim socket, or NULL */
};

/* Maps the table. 0, or a TLSSHIM_E* error. */
int tlsshim_start(const struct tlsshim_context *ctx);

/* A variable of `size` bytes (aligned to `align`, a power of two up to
 * 64) in every thread. Returns its handle (>= 0) or a TLSSHIM_E* error. */
int tlsshim_register(size_t size, size_t align, const char *name);

/* This thread's instance of the variable: zero until the thread writes
 * it. NULL when the handle is bad or the thread can have no slot. */
void *tlsshim_get(int handle);

/* Gives this thread's slot back (its next get starts from zero). */
int tlsshim_release(void);

/* Blocks every signal, gives the slot back and ends the thread with the
 * raw exit syscall (not exit_group): for threads that end themselves. */
_Noreturn void tlsshim_release_and_exit(int code);

/* The mode in force, or 0 before tlsshim_start; and whether gets read the
 * FS base with rdfsbase. */
int tlsshim_mode(void);
int tlsshim_uses_rdfsbase(void);

/* The table (struct tlsshim_table in table.h), for tlsd and tests. */
const void *tlsshim_table(void);

#endif
