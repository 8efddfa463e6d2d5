/* Starting the shim's syscall engine in a running process (engine.h).
 *
 * At a spawn's exec the engine starts in the process's only thread, before
 * the program runs (inject.c). A running process has threads, and the
 * filter must go on each of them but the shim's agent: a filter is
 * inherited by every thread and process made after it and never comes
 * off, and the agent makes the process's execve and forks so that no new
 * image and no child carries one (native/shim/engine.c).
 * SECCOMP_FILTER_FLAG_TSYNC would put it on the agent too. So each thread
 * is borrowed in turn and makes the calls itself (native/shim/inject.h,
 * TLSSHIM_ENGINE_*):
 *
 *   1 stacks   the first thread maps, through a stub page (inject.c), the
 *              stacks the calls run on, each a guard page and 64 KiB: a
 *              thread keeps its stack as its alternate signal stack,
 *              unless it has one of its own (a Go thread), and then the
 *              stack serves the next thread
 *   2 prepare  once: the SIGSYS handler, the filter built; the tracer
 *              reads the filter back, and tells a thread that has it (one
 *              made by a thread that had it) by PTRACE_SECCOMP_GET_FILTER
 *   3 thread   in each thread without it: from then on the shim applies
 *              the process's shim rules to that thread's calls (T_ENGINE),
 *              the tracer to the others'
 *   4 passes   over /proc/PID/task until none is left (a thread made
 *              meanwhile by one not done yet has no filter); then prepare
 *              again, which looks at the handlers again: one a thread
 *              without the filter set meanwhile may block SIGSYS
 *
 * Each call runs on its stack under a signal frame that holds the
 * thread's own state, as an injection's do: a tracer that dies leaves
 * each thread finishing its call and going back to what it was doing.
 * What was done stays: a thread with the filter and no rules in force
 * makes its trapped calls through the handler, as they were asked. */
#include "engine.h"

#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include "../shim/inject.h"
#include "inject.h"
#include "protocol.h"
#include "remote.h"
#include "seccomp.h"
#include "shim_image.h"
#include "tracer.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

#define STACKS_NAME "tlsshim-engine"
/* Passes over the threads before giving up on a process that makes them
 * faster than they are done. */
#define MAX_PASSES 16
#define SIGSYS_BIT (1ull << (SIGSYS - 1))
/* Where a call's struct is on its stack: above the shim's mark at the
 * stack's lowest word (engine.c there). */
#define CALL_AT (TLSSHIM_ENGINE_GUARD + 64)

struct run {
	pid_t pid;
	struct shim_image im;
	uint64_t base; /* the shim's, in the process */
	uint8_t trap[64];
	struct sock_filter *filter;
	uint32_t filter_length;
	uint64_t stacks, nstacks, next; /* mapped; the first not kept */
	uint64_t want;                  /* how many to map at a time */
	uint32_t threads;               /* that have the filter */
	uint64_t longest_ns;            /* the longest a thread was stopped */
	pid_t first_tid;
	int step; /* enum tlsd_inject_step */
	int err;
	char why[256];
};

static int fail(struct run *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct run *r, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof r->why, fmt, ap);
	va_end(ap);
	r->err = err;
	return -1;
}

/* Where the shim is in pid: a mapping at offset 0 of shim_path, or of an
 * injected copy (/memfd:tlsshim), that starts with the image's ELF header. */
static uint64_t find_shim(pid_t pid, const struct shim_image *im, const char *shim_path)
{
	char real[PATH_MAX], path[64], line[PATH_MAX + 128];
	if (!realpath(shim_path, real))
		snprintf(real, sizeof real, "%s", shim_path);
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	uint64_t found = 0;
	while (f && !found && fgets(line, sizeof line, f)) {
		unsigned long long start, offset;
		int name_at = 0;
		if (sscanf(line, "%llx-%*x %*s %llx %*s %*u %n", &start, &offset, &name_at) < 2 || offset || !name_at)
			continue;
		char *name = line + name_at;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, real) && strncmp(name, "/memfd:tlsshim ", 15))
			continue;
		uint8_t head[64];
		if (im->file_len >= sizeof head && remote_read(pid, start, head, sizeof head) == 0 &&
		    !memcmp(head, im->file, sizeof head))
			found = start;
	}
	if (f)
		fclose(f);
	return found;
}

/* The shim's agent: its thread pointer is in the shim's own .bss. */
static int is_agent(const struct run *r, const struct thread *t)
{
	return (t->flags & T_AGENT) || (t->fs_base >= r->base && t->fs_base < r->base + r->im.span);
}

/* Puts b's frame at the top of `stack` and parks the thread on it, its
 * signals blocked; mask is the one the frame restores. */
static int place_frame(struct run *r, struct borrowed *b, uint64_t stack, uint64_t mask, uint64_t *call_sp)
{
	size_t frame = arch_sigframe_size(&b->xstate);
	uint64_t frame_at = (stack + TLSSHIM_ENGINE_STACK - frame) & ~63ull;
	if (frame_at < stack + CALL_AT + sizeof(struct tlsshim_engine_call) + INJECT_MIN_CALL_STACK)
		return fail(r, ENOSPC, "thread %d's extended register state (%zu bytes) does not fit a stack", b->tid,
			    b->xstate.len);
	uint8_t *f = malloc(frame);
	if (!f)
		abort();
	arch_regs restart = arch_restart_form(&b->saved);
	struct arch_sigframe_sp sp;
	int ok = arch_build_sigframe(f, frame_at, &restart, &b->xstate, mask, r->base + r->im.sigreturn, &sp) == 0 &&
		 remote_write(r->pid, frame_at, f, frame) == 0;
	free(f);
	if (!ok)
		return fail(r, EFAULT, "cannot write thread %d's frame", b->tid);
	b->site = r->base + r->im.gadget;
	b->sigreturn_pc = r->base + r->im.sigreturn;
	b->site_sp = sp.sigreturn_sp;
	*call_sp = sp.call_sp;
	if (remote_park(b) < 0 || (!b->signals_blocked && remote_block_signals(b) < 0))
		return fail(r, ESRCH, "thread %d ended", b->tid);
	return 0;
}

/* 1: n stacks, mapped by b (its frame then on the first of them). */
static int map_stacks(struct run *r, struct borrowed *b, uint64_t n)
{
	r->step = TLSD_INJECT_STUB;
	uint64_t stub_len, stub = stub_map(b, &stub_len, &r->err, r->why, sizeof r->why);
	if (!stub)
		return -1;
	uint64_t len = n * TLSSHIM_ENGINE_STACK, ignored;
	long m = remote_syscall(b, SYS_mmap, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				(uint64_t)-1, 0);
	if (m < 0 && m > -4096) {
		fail(r, b->gone ? ESRCH : (int)-m, "cannot map the threads' stacks: %s", strerror((int)-m));
		if (!b->gone)
			remote_syscall(b, SYS_munmap, stub, stub_len, 0, 0, 0, 0); /* the stub's last call */
		return -1;
	}
	/* Named, as the stub is (best effort, if the thread's filters let
	 * prctl through); the name's bytes are read once. */
	const uint64_t name[6] = { PR_SET_VMA, PR_SET_VMA_ANON_NAME, (uint64_t)m, len, (uint64_t)m };
	char action[32];
	if (seccomp_check(b->tid, SYS_prctl, name, b->site, action, sizeof action) == SECCOMP_ALLOWS &&
	    remote_write(r->pid, (uint64_t)m, STACKS_NAME, sizeof STACKS_NAME) == 0)
		remote_syscall(b, SYS_prctl, name[0], name[1], name[2], name[3], name[4], 0);
	r->stacks = (uint64_t)m;
	r->nstacks = n;
	r->next = 0;
	if (place_frame(r, b, r->stacks, b->sigmask, &ignored) < 0)
		return -1;
	remote_syscall(b, SYS_munmap, stub, stub_len, 0, 0, 0, 0);
	return b->gone ? fail(r, ESRCH, "thread %d ended", b->tid) : 0;
}

/* Runs the shim's engine entry in b on the next stack. */
static int call(struct run *r, struct borrowed *b, struct tlsshim_engine_call *c, uint64_t mask)
{
	uint64_t stack = r->stacks + r->next * TLSSHIM_ENGINE_STACK, call_sp;
	c->version = TLSSHIM_INJECT_VERSION;
	c->result = TLSSHIM_INJECT_NOT_RUN;
	c->stack = stack;
	if (place_frame(r, b, stack, mask, &call_sp) < 0)
		return -1;
	if (remote_write(r->pid, stack + CALL_AT, c, sizeof *c) < 0)
		return fail(r, EFAULT, "cannot write thread %d's call", b->tid);
	/* Test hook: the tracer dies before the n-th call (counted from 1 over
	 * its life), the thread parked on its frame (test/engine-attached.test.ts). */
	static int calls;
	die_for_test("TLSD_TRACER_DIE_AT_ENGINE_CALL", ++calls);
	int err = remote_call(b, r->base + r->im.engine_entry, call_sp, stack + CALL_AT, r->base + r->im.sigreturn);
	if (err == -EFAULT)
		return fail(r, EFAULT, "the engine's start raised signal %d in thread %d", b->fault, b->tid);
	if (err)
		return fail(r, -err, "thread %d ended", b->tid);
	if (remote_read(r->pid, stack + CALL_AT, c, sizeof *c) < 0)
		return fail(r, EFAULT, "cannot read thread %d's call", b->tid);
	if (c->result)
		return fail(r, EIO, "the shim's engine did not start in thread %d (%d)", b->tid, c->result);
	return 0;
}

/* 2: the process's part, and the filter read back. */
static int prepare(struct run *r, struct borrowed *b)
{
	r->step = TLSD_INJECT_START;
	struct tlsshim_engine_call c = { .op = TLSSHIM_ENGINE_PREPARE };
	memcpy(c.trap, r->trap, sizeof c.trap);
	if (call(r, b, &c, b->sigmask) < 0)
		return -1;
	if (r->filter)
		return 0;
	if (!c.filter_length || c.filter_length > BPF_MAXINSNS)
		return fail(r, EIO, "the shim's filter has %u instructions", c.filter_length);
	r->filter = calloc(c.filter_length, sizeof *r->filter);
	r->filter_length = c.filter_length;
	if (!r->filter)
		abort();
	if (remote_read(r->pid, c.filter, r->filter, c.filter_length * sizeof *r->filter) < 0)
		return fail(r, EFAULT, "cannot read the shim's filter");
	return 0;
}

/* The calls the thread makes, if its own filters let them through (one
 * they forbid could kill the process). */
static int calls_allowed(struct run *r, pid_t tid)
{
	static const struct { long nr; const char *name; uint64_t a0, a1, a2; } calls[] = {
		{ SYS_seccomp, "seccomp", 1 /* SECCOMP_SET_MODE_FILTER */, 0, 0 },
		{ SYS_prctl, "prctl", PR_SET_NO_NEW_PRIVS, 1, 0 },
		{ SYS_sigaltstack, "sigaltstack", 0, 0, 0 },
		{ SYS_mprotect, "mprotect", 0, TLSSHIM_ENGINE_GUARD, PROT_NONE },
		{ SYS_rt_sigaction, "rt_sigaction", SIGSYS, 0, 0 },
	};
	for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
		const uint64_t args[6] = { calls[i].a0, calls[i].a1, calls[i].a2 };
		char action[32];
		switch (seccomp_check(tid, calls[i].nr, args, r->base + r->im.gadget, action, sizeof action)) {
		case SECCOMP_ALLOWS: break;
		case SECCOMP_FORBIDS:
			return fail(r, EPERM, "thread %d's seccomp filter forbids %s (%s), which the engine needs", tid,
				    calls[i].name, action);
		default: return fail(r, EPERM, "thread %d has seccomp filters the tracer cannot read", tid);
		}
	}
	return 0;
}

/* 3: thread t, borrowed. 1 when it has the filter now, 0 when it ended
 * meanwhile, -1 on failure. */
static int enter_thread(struct run *r, struct thread *t)
{
	struct borrowed b;
	r->step = TLSD_INJECT_BORROW;
	int err = borrow_tid(r->pid, t->tid, &b);
	if (err == -ESRCH)
		return 0;
	if (err == -EAGAIN)
		return fail(r, EAGAIN, "process %d is stopped (SIGSTOP); send it SIGCONT first", r->pid);
	if (err)
		return fail(r, -err, "cannot stop thread %d: %s", t->tid, strerror(-err));
	/* The first thread maps the stacks and prepares; each one then has the
	 * filter already (made by a thread that had it, or by an earlier
	 * tracer), or is given it. */
	int ok = 0, has = -2;
	if (calls_allowed(r, b.tid) == 0 && (r->next < r->nstacks || map_stacks(r, &b, r->want) == 0) &&
	    (r->filter || prepare(r, &b) == 0)) {
		has = seccomp_has_filter(b.tid, r->filter, r->filter_length);
		if (has < 0)
			fail(r, EPERM, "thread %d has seccomp filters the tracer cannot read", b.tid);
	}
	if (has == 1) {
		ok = 1;
	} else if (has == 0) {
		r->step = TLSD_INJECT_START;
		struct tlsshim_engine_call c = { .op = TLSSHIM_ENGINE_THREAD, .mask = b.sigmask };
		ok = call(r, &b, &c, b.sigmask & ~SIGSYS_BIT) == 0;
		if (ok) {
			b.sigmask &= ~SIGSYS_BIT; /* the program still sees it blocked */
			r->next += c.kept;
		}
	}
	int gone = b.gone;
	give_back(&b);
	if (gone) { /* it ended meanwhile: nothing to do for it */
		r->err = 0;
		return 0;
	}
	if (ok) {
		t = thread_find(b.tid);
		if (t)
			t->flags |= T_ENGINE;
		r->threads++;
		if (!r->first_tid)
			r->first_tid = b.tid;
		if (b.restarted_ns - b.stopped_ns > r->longest_ns)
			r->longest_ns = b.restarted_ns - b.stopped_ns;
	}
	return ok ? 1 : -1;
}

/* tid, if it needs the filter: not the agent, and known to the tracer
 * (a thread so new that its first stop is still to come is not yet). */
static struct thread *wanted(const struct run *r, pid_t tid, int *unknown)
{
	struct thread *t = thread_find(tid);
	if (!t || t->pid != r->pid || !(t->flags & T_ANNOUNCED) || (t->flags & (T_ATTACHING | T_AWAITING_OWNER))) {
		*unknown += belongs_to(tid, r->pid);
		return NULL;
	}
	if (is_agent(r, t)) {
		t->flags |= T_AGENT; /* one LD_PRELOAD started was not seen made */
		return NULL;
	}
	return t->flags & (T_ENGINE | T_EXITING | T_DETACH) ? NULL : t;
}

/* 4: pass after pass until every thread has the filter. */
static void enter_all(struct run *r)
{
	for (int pass = 0; pass < MAX_PASSES && !r->err; pass++) {
		size_t n;
		int left = 0, unknown = 0;
		pid_t *tids = list_tasks(r->pid, &n);
		if (!tids) {
			fail(r, ESRCH, "process %d has ended", r->pid);
			break;
		}
		for (size_t i = 0; i < n && !r->err; i++) {
			if (!process_find(r->pid)) {
				fail(r, ESRCH, "process %d has ended", r->pid);
				break;
			}
			struct thread *t = wanted(r, tids[i], &unknown);
			if (t) {
				left++;
				enter_thread(r, t);
			}
		}
		free(tids);
		if (r->err || (!left && !unknown))
			break;
		/* New threads' first stops, and clone events that say which
		 * have the filter already. */
		if (unknown)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		drain_waits();
		if (pass + 1 == MAX_PASSES)
			fail(r, EAGAIN, "process %d makes threads faster than they are given the filter", r->pid);
	}
	if (r->err || !r->threads)
		return;
	/* Every thread has the filter: the handlers, once more, in any one. */
	size_t n;
	pid_t *tids = list_tasks(r->pid, &n);
	for (size_t i = 0; tids && i < n; i++) {
		struct thread *t = thread_find(tids[i]);
		struct borrowed b;
		if (!t || t->pid != r->pid || !(t->flags & T_ENGINE) || (t->flags & T_EXITING) || borrow_tid(r->pid, t->tid, &b))
			continue;
		prepare(r, &b);
		give_back(&b);
		break;
	}
	free(tids);
}

void engine_start_process(uint32_t req, pid_t pid, const char *shim_path, const uint8_t trap[64])
{
	struct run r = { .pid = pid, .step = TLSD_INJECT_CHECKS };
	memcpy(r.trap, trap, sizeof r.trap);
	struct process *p = process_find(pid);
	if (!p || (p->flags & (P_ATTACHING | P_SPAWNING | P_DETACHING | P_SILENT)))
		fail(&r, ESRCH, "process %d is not supervised", pid);
	else if (p->flags & (P_RELEASED | P_HELD))
		fail(&r, EBUSY, "process %d has its engine already", pid);
	else if (shim_image_load(shim_path, &r.im, r.why, sizeof r.why) < 0)
		r.err = EINVAL;
	else if (!(r.base = find_shim(pid, &r.im, shim_path)))
		fail(&r, ENOENT, "process %d has no shim loaded", pid);
	else {
		r.want = p->nthreads + 16;
		enter_all(&r);
	}
	p = process_find(pid);
	if (p && r.threads) {
		/* The shim's calls are its own, not the program's (syscalls.c). */
		p->shim_text[0] = r.base;
		p->shim_text[1] = r.base + r.im.span;
		p->shim_text_read = 1;
	}
	if (!r.err)
		r.step = TLSD_INJECT_DONE;
	send_injected(req, r.err, pid, r.first_tid, r.base, r.longest_ns, r.threads, (uint8_t)r.step, r.err ? r.why : "");
	if (r.err)
		tlog(TLSD_LOG_INFO, "engine in %d: %s", pid, r.why);
	free(r.filter);
	shim_image_free(&r.im);
}
