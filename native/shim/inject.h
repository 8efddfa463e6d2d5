/* What tlsd's tracer needs from libtlsshim to load and start it in a
 * running process without a dynamic linker (native/tracer/inject.c): an
 * ABI between the two, found through five symbols of .dynsym.
 *
 *   tlsshim_inject_gadget  `syscall; mov $15, %eax; syscall`, then a jump
 *                          back to the mov: the tracer's remote syscalls
 *                          run at its first instruction
 *   tlsshim_inject_return  its second: the rt_sigreturn after each of them,
 *                          where the thread waits between two steps (one
 *                          the tracer skipped runs on the way round)
 *   tlsshim_inject_area    TLSSHIM_INJECT_AREA bytes of .bss: a struct
 *                          tlsshim_inject at its start, then the stack the
 *                          entry runs on, topped by a signal frame that
 *                          holds the borrowed thread's own state
 *   tlsshim_inject_entry   void (struct tlsshim_inject *): starts the shim,
 *                          writes the result, and returns to
 *                          tlsshim_inject_return
 *   tlsshim_engine_entry   void (struct tlsshim_engine_call *): starts the
 *                          syscall engine in a running process, one
 *                          thread at a time (native/tracer/engine.c),
 *                          and returns the same way
 *
 * Whatever the tracer does, the borrowed thread's registers point at one
 * of these with the signal frame above its stack pointer: if the tracer
 * dies, the thread finishes the syscall or the start it was in and the
 * rt_sigreturn puts it back where it was (its registers, its extended
 * state, its signal mask). */
#ifndef TLSSHIM_INJECT_H
#define TLSSHIM_INJECT_H

#include <stdint.h>
#include "tlsshim.h"

#define TLSSHIM_INJECT_VERSION 2
/* The first byte of a thread's name as it ends by its own exit through
 * the syscall engine (engine.c): the kernel's process events, by which the
 * tracer follows a process it let go of, do not tell a thread's own exit
 * from its group's, but report the name's change just before. */
#define TLSSHIM_OWN_EXIT_MARK '\x7f'

#define TLSSHIM_INJECT_AREA (64 * 1024)
/* Written by the tracer before the call; the entry overwrites it. */
#define TLSSHIM_INJECT_NOT_RUN 1

struct tlsshim_inject {
	uint32_t version;  /* TLSSHIM_INJECT_VERSION */
	int32_t result;    /* tlsshim_start's: 0 or TLSSHIM_E* */
	struct tlsshim_context context; /* socket_path points at socket_path below */
	char socket_path[108];          /* sockaddr_un.sun_path */
	/* Not all zero: the syscall engine starts, its filter trapping these
	 * calls (bit nr: call nr; engine.h), on the borrowed thread, which
	 * must be the process's only one (a spawn at its exec). */
	uint8_t trap[64];
};

/* The engine in a running process. The tracer borrows each thread but
 * the agent in turn and calls the entry on a stack of TLSSHIM_ENGINE_STACK
 * bytes it mapped (a guard page, then the stack), its frame at the top:
 *
 *   PREPARE  the process's part, once (again: only the handlers' masks are
 *            looked at again): the SIGSYS handler, the filter built; the
 *            filter's address and length are written back, so that the
 *            tracer can tell a thread that has it
 *   THREAD   the calling thread's part: the stack becomes its alternate
 *            signal stack unless it has one, SIGSYS is taken out of its
 *            mask (`mask`: the mask the program set, which it goes on
 *            seeing), and the filter goes on */
#define TLSSHIM_ENGINE_PREPARE 1
#define TLSSHIM_ENGINE_THREAD 2
#define TLSSHIM_ENGINE_GUARD 4096
#define TLSSHIM_ENGINE_STACK (TLSSHIM_ENGINE_GUARD + 64 * 1024)

struct tlsshim_engine_call {
	uint32_t version;   /* TLSSHIM_INJECT_VERSION */
	int32_t result;     /* TLSSHIM_INJECT_NOT_RUN, then 0 or TLSSHIM_E* */
	uint32_t op;
	uint32_t kept;      /* THREAD: 1 when `stack` is now its alternate stack */
	uint64_t stack;     /* THREAD: the call's stack, its guard page first */
	uint64_t mask;      /* THREAD */
	uint64_t filter;    /* PREPARE, written: struct sock_filter[filter_length] */
	uint32_t filter_length;
	uint8_t trap[64];   /* PREPARE: the calls to trap (bit nr: call nr) */
};

#endif
