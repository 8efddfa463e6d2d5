/* Starting the shim when tlsd's tracer loaded it into a running process
 * (inject.h says how the two meet). Nothing here may depend on the host:
 * the entry runs on a borrowed thread of a program that may have no libc
 * at all, with every signal blocked, on the area's stack. */
#include "engine.h"
#include "inject.h"
#include "start.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT char tlsshim_inject_area[TLSSHIM_INJECT_AREA] __attribute__((aligned(64)));

/* __NR_rt_sigreturn is 15 on x86-64 (arch/x86/entry/syscalls/syscall_64.tbl).
 * The tracer skips the rt_sigreturn after a call it made (remote.c): if it
 * dies right then, the thread goes round to it again, and it runs. */
__asm__(".text\n"
	".globl tlsshim_inject_gadget\n"
	".type tlsshim_inject_gadget, @function\n"
	"tlsshim_inject_gadget:\n"
	"\tsyscall\n"
	".globl tlsshim_inject_return\n"
	"tlsshim_inject_return:\n"
	"\tmov $15, %eax\n"
	"\tsyscall\n"
	"\tjmp tlsshim_inject_return\n"
	".size tlsshim_inject_gadget, .-tlsshim_inject_gadget\n");

EXPORT void tlsshim_inject_entry(struct tlsshim_inject *call)
{
	/* The tracer blocked every signal for this thread (it restores them). */
	call->result = call->version == TLSSHIM_INJECT_VERSION ? shim_start(&call->context, 1) : TLSSHIM_EINVAL;
	int trap = 0;
	for (uint32_t i = 0; i < sizeof call->trap; i++) trap |= call->trap[i];
	if (call->result == 0 && trap && engine_start(call->trap) < 0) call->result = TLSSHIM_EENGINE;
}

EXPORT void tlsshim_engine_entry(struct tlsshim_engine_call *call)
{
	int r = -1, kept = 0;
	if (call->version != TLSSHIM_INJECT_VERSION) {
		call->result = TLSSHIM_EINVAL;
		return;
	}
	if (call->op == TLSSHIM_ENGINE_PREPARE) {
		r = engine_prepare(call->trap);
		call->filter = (uint64_t)(uintptr_t)engine_filter(&call->filter_length);
	} else if (call->op == TLSSHIM_ENGINE_THREAD) {
		r = engine_enter(call->mask, call->stack, &kept);
	}
	call->kept = (uint32_t)kept;
	call->result = r ? TLSSHIM_EENGINE : 0;
}
