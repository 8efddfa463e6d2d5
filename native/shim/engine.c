/* The in-process syscall engine (engine.h): tlsd's rules applied by a
 * SIGSYS handler in the program's own threads.
 *
 * A seccomp filter (SECCOMP_RET_TRAP) on each thread but the agent traps
 * the calls the rules select, and the calls the engine must always see:
 *   - rt_sigaction and rt_sigprocmask, virtualised so that SIGSYS is never
 *     blocked (a forced SIGSYS that is blocked kills the process) and the
 *     program keeps its own SIGSYS handler (chained for SIGSYS not ours);
 *   - execve, execveat, fork, vfork, and clone/clone3 making a process:
 *     made by the agent, which has no filter, so that no new image and no
 *     child ever carries a filter without the engine behind it (the
 *     filter cannot be removed, and the handler does not survive exec);
 *   - clone/clone3 making a thread: made here, the child starting on a new
 *     alternate signal stack of its own from a copy of the caller's frame;
 *   - exit (the thread's alternate stack is unmapped) and exit_group
 *     (counts are sent first).
 * The shim's own syscalls are exempt by their address (its text), and
 * rt_sigreturn by its number.
 *
 * Everything here runs in a signal handler, on any thread, at any moment:
 * no locks but the agent call's, per-thread state in the shim's TLS, the
 * rules read under a sequence count. Without rules, or once their lease
 * has run out, each trapped call is made as it was asked. */
#include "engine.h"
#include "inject.h"
#include "ipc.h"
#include "mem.h"
#include "ring.h"
#include "sys.h"
#include "table.h"
#include "tlsshim.h"

#include <linux/audit.h>    /* AUDIT_ARCH_X86_64 */
#include <linux/filter.h>   /* struct sock_filter, BPF_* */
#include <linux/futex.h>    /* FUTEX_WAIT, FUTEX_WAKE */
#include <linux/sched.h>    /* CLONE_*, struct clone_args */
#include <linux/seccomp.h>  /* SECCOMP_* */
#include <linux/time.h>     /* CLOCK_* */
#include <linux/uio.h>      /* struct iovec */
#include <asm/prctl.h>      /* ARCH_SET_FS */
#include <linux/prctl.h>    /* PR_SET_NO_NEW_PRIVS */

#define HIDDEN __attribute__((visibility("hidden")))

/* The seccomp data of our traps: si_errno of their SIGSYS. */
#define TRAP_DATA 0x7153
#define SYS_SECCOMP 1 /* si_code of a seccomp SIGSYS */
#define SIGSYS_BIT (1ull << (SIGSYS - 1))
#define UNBLOCKABLE ((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)))
#define ALT_SIZE (64 * 1024) /* each thread's alternate signal stack */
#define GUARD 4096
#define WHEN_MAX 32
#define RECORDS 1024 /* a power of two */
#define SA_RESTORER_FLAG 0x04000000
#define SS_DISABLE_FLAG 2
#define FLAG_INJECTED 1
#define FLAG_SIGNALED 2
#define FLAG_DELAYED 4
#define FLAG_NO_RETURN 8

/* --- The kernel's frame and structures (x86-64) ------------------------- */

struct k_stack { uint64_t sp; int32_t flags; int32_t pad; uint64_t size; };
struct k_mcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint64_t fpstate; /* its extended state, elsewhere in the frame */
	uint64_t reserved[8];
};
struct k_ucontext {
	uint64_t flags;
	uint64_t link;
	struct k_stack stack;
	struct k_mcontext mc;
	uint64_t sigmask;
};
struct k_siginfo {
	int32_t signo, errno_, code, pad;
	uint64_t call_addr; /* _sigsys */
	int32_t syscall;
	uint32_t arch;
	char rest[128 - 32];
};
struct k_sigaction { uint64_t handler; uint64_t flags; uint64_t restorer; uint64_t mask; };

_Static_assert(sizeof(struct k_ucontext) == 304, "the kernel's ucontext");
_Static_assert(__builtin_offsetof(struct k_ucontext, mc.fpstate) == 224, "fpstate in the ucontext");
_Static_assert(sizeof(struct k_siginfo) == 128, "the kernel's siginfo");

/* The extended state's size, from the software bytes of its fxsave part
 * (the kernel's struct _fpx_sw_bytes, at 464). */
#define FP_XSTATE_MAGIC1 0x46505853u
static uint32_t fpstate_size(const char *fp)
{
	const uint32_t *sw = (const uint32_t *)(fp + 464);
	return sw[0] == FP_XSTATE_MAGIC1 ? sw[1] : 512;
}

/* --- Assembly: the restorer, clones that start from a frame, an exit
 *     that unmaps the stack it runs on ----------------------------------- */

void engine_restorer(void);
long engine_thread_clone(long nr, long a0, long a1, long a2, long a3, long a4);
struct transplant { long nr, args[6]; uint64_t uc, fs; };
long engine_transplant_clone(const struct transplant *t);
_Noreturn void engine_unmap_and_exit(uint64_t base, uint64_t size, long code);

__asm__(".text\n"
	/* SIGSYS returns here: rt_sigreturn is allowed by number. */
	".hidden engine_restorer\n"
	"engine_restorer:\n"
	"\tmov $15, %eax\n"
	"\tsyscall\n"
	"\tud2\n"
	/* clone or clone3 for a thread: its child starts with rsp at a copy
	 * of the caller's ucontext, and rt_sigreturn makes it the caller
	 * (rax 0, its own stack), on a stack of the caller's choosing. */
	".hidden engine_thread_clone\n"
	"engine_thread_clone:\n"
	"\tmov %rdi, %rax\n"
	"\tmov %rsi, %rdi\n"
	"\tmov %rdx, %rsi\n"
	"\tmov %rcx, %rdx\n"
	"\tmov %r8, %r10\n"
	"\tmov %r9, %r8\n"
	"\tsyscall\n"
	"\ttest %rax, %rax\n"
	"\tjnz 1f\n"
	"\tmov $15, %eax\n"
	"\tsyscall\n"
	"\tud2\n"
	"1:\tret\n"
	/* A process made by the agent for a thread: the child, a copy of the
	 * agent, takes the thread's FS base and its frame, without a stack
	 * (registers only: with CLONE_VM it runs on memory it shares). */
	".hidden engine_transplant_clone\n"
	"engine_transplant_clone:\n"
	"\tpush %rbx\n"
	"\tpush %r12\n"
	"\tpush %r13\n"
	"\tmov %rdi, %rbx\n"
	"\tmov 56(%rbx), %r12\n"
	"\tmov 64(%rbx), %r13\n"
	"\tmov 0(%rbx), %rax\n"
	"\tmov 8(%rbx), %rdi\n"
	"\tmov 16(%rbx), %rsi\n"
	"\tmov 24(%rbx), %rdx\n"
	"\tmov 32(%rbx), %r10\n"
	"\tmov 40(%rbx), %r8\n"
	"\tmov 48(%rbx), %r9\n"
	"\tsyscall\n"
	"\ttest %rax, %rax\n"
	"\tjnz 2f\n"
	"\tmov $158, %eax\n" /* arch_prctl(ARCH_SET_FS, fs) */
	"\tmov $0x1002, %edi\n"
	"\tmov %r13, %rsi\n"
	"\tsyscall\n"
	"\tmov %r12, %rsp\n"
	"\tmov $15, %eax\n"
	"\tsyscall\n"
	"\tud2\n"
	"2:\tpop %r13\n"
	"\tpop %r12\n"
	"\tpop %rbx\n"
	"\tret\n"
	/* munmap(base, size) then exit(code), touching no memory between. */
	".hidden engine_unmap_and_exit\n"
	"engine_unmap_and_exit:\n"
	"\tmov %rdx, %r12\n"
	"\tmov $11, %eax\n"
	"\tsyscall\n"
	"\tmov %r12, %rdi\n"
	"3:\tmov $60, %eax\n"
	"\tsyscall\n"
	"\tjmp 3b\n");

/* The shim's own image: its syscalls are never trapped. */
extern const char __ehdr_start[] __attribute__((visibility("hidden")));
extern const char etext[] __attribute__((visibility("hidden")));

/* --- State ------------------------------------------------------------- */

struct rules {
	uint32_t n;
	uint64_t lease_until_ns; /* CLOCK_MONOTONIC */
	struct engine_rule rule[ENGINE_MAX_RULES];
};

/* Two banks: the agent writes the one not in force, then flips. A reader
 * that saw `generation` change while it read starts again. */
static struct rules bank[2];
static uint32_t in_force;
static uint64_t generation;
static uint8_t path_arg[ENGINE_NR_MAX];

static int running;
static int thread_var = -1;
static uint64_t trapped[ENGINE_NR_MAX / 64];

static struct { uint64_t calls, errors, time_ns; } counts[ENGINE_NR_MAX];

/* The counts of threads that ended, until the agent takes them. */
#define ENDED 256
static struct { uint64_t published; struct engine_thread_count c; } ended[ENDED];
static uint64_t ended_head, ended_tail;

static struct engine_record records[RECORDS];
static uint64_t records_head, records_tail, records_dropped;

/* What the program asked of SIGSYS (virtual), and which signals' handlers
 * it wanted SIGSYS blocked in (taken out of their real masks). */
static struct k_sigaction program_sigsys;
static uint64_t masks_with_sigsys;

/* Per thread, in the shim's TLS. */
struct thread_state {
	uint32_t inited;
	uint32_t calls, errors; /* not yet taken by the agent */
	uint32_t sigsys_blocked; /* the program's view of its mask */
	uint32_t nwhen;
	uint64_t altstack;       /* the first thread's alternate stack, put back
	                            in a frame the tracer restored (on_sigsys) */
	struct { uint32_t rule, nr, n; } when[WHEN_MAX];
};

/* A call the agent makes for a thread. */
static struct {
	uint32_t lock;  /* one at a time */
	uint32_t state; /* 0 idle, 1 asked, 2 answered */
	long nr, args[6];
	struct k_ucontext *uc;
	uint64_t fs;
	long result;
} agent_call;
static uint32_t flush_state; /* 1: exit_group wants the counts sent; 2: sent */

static void futex_wait(uint32_t *word, uint32_t value, long timeout_ns)
{
	struct { long s, ns; } t = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
	sys4(__NR_futex, word, FUTEX_WAIT, value, timeout_ns ? (long)&t : 0);
}

static void futex_wake(uint32_t *word) { sys3(__NR_futex, word, FUTEX_WAKE, 1 << 30); }

static uint64_t clock_ns(int clock)
{
	struct { long s, ns; } t = { 0, 0 };
	sys2(__NR_clock_gettime, clock, &t);
	return (uint64_t)t.s * 1000000000u + (uint64_t)t.ns;
}

static void sleep_us(uint32_t us)
{
	struct { long s, ns; } t = { us / 1000000, (long)(us % 1000000) * 1000 };
	while (sys2(__NR_nanosleep, &t, &t) == -EINTR)
		;
}

static int in_bits(const uint8_t *set, uint32_t nr) { return nr < ENGINE_NR_MAX && (set[nr / 8] >> (nr % 8) & 1); }

/* Reads or writes the process's own memory without faulting: a bad
 * pointer from the program gets EFAULT, as the kernel would give it. */
static long self_rw(int write, void *local, uint64_t remote, uint64_t n)
{
	struct iovec l = { local, n }, r = { (void *)(uintptr_t)remote, n };
	long pid = sys0(__NR_getpid);
	long got = sys6(write ? __NR_process_vm_writev : __NR_process_vm_readv, pid, (long)&l, 1, (long)&r, 1, 0);
	return got == (long)n ? 0 : -EFAULT;
}

/* A NUL-terminated string of at most size - 1 bytes; its length, or -1. */
static long read_string(uint64_t addr, char *out, uint32_t size)
{
	uint32_t have = 0;
	while (have < size - 1) {
		uint32_t chunk = 4096 - (uint32_t)((addr + have) & 4095);
		if (chunk > size - 1 - have) chunk = size - 1 - have;
		if (self_rw(0, out + have, addr + have, chunk)) break;
		for (uint32_t i = 0; i < chunk; i++)
			if (!out[have + i]) return have + i;
		have += chunk;
	}
	out[have] = 0;
	return -1; /* too long, or unreadable */
}

/* The first thread's state while it has no slot: at a spawn's exec its
 * thread pointer is 0 until its C library sets one. It moves to the
 * thread's slot once there is one. */
static struct thread_state early;
static uint32_t early_tid;

static struct thread_state *thread_state(void)
{
	if (thread_var < 0) return 0;
	struct thread_state *ts = tlsshim_get(thread_var);
	if (!ts) return &early; /* no slot: this thread's, or shared when the table is full */
	if (!ts->inited) {
		ts->inited = 1;
		uint32_t owner = __atomic_load_n(&early_tid, __ATOMIC_ACQUIRE);
		if (owner && owner == (uint32_t)sys0(__NR_gettid)) {
			memcpy(ts, &early, sizeof *ts);
			ts->calls = __atomic_exchange_n(&early.calls, 0, __ATOMIC_RELAXED);
			ts->errors = __atomic_exchange_n(&early.errors, 0, __ATOMIC_RELAXED);
			ts->inited = 1;
			__atomic_store_n(&early_tid, 0, __ATOMIC_RELEASE);
		}
	}
	return ts;
}

/* --- Rules --------------------------------------------------------------- */

struct decision {
	int selected;
	uint32_t trace;
	uint8_t fault, signal;
	int64_t value;
	uint32_t delay_enter_us, delay_exit_us;
	uint32_t flags;
	int have_path;
	char path[ENGINE_PATH_MAX];
};

static int selects_thread(const struct engine_rule *r, long tid)
{
	if (!r->ntids) return 1;
	for (uint32_t i = 0; i < r->ntids; i++)
		if (r->tids[i] == tid) return 1;
	return 0;
}

static int same_path(const char *a, const char *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (a[i] != b[i]) return 0;
	return 1;
}

/* strace's when=, counted per thread, rule and call: the count this call
 * would be (committed only if the rules did not change meanwhile). */
static uint32_t *when_counter(struct thread_state *ts, uint32_t rule, uint32_t nr)
{
	for (uint32_t i = 0; i < ts->nwhen; i++)
		if (ts->when[i].rule == rule && ts->when[i].nr == nr) return &ts->when[i].n;
	if (ts->nwhen == WHEN_MAX) return 0;
	ts->when[ts->nwhen].rule = rule;
	ts->when[ts->nwhen].nr = nr;
	ts->when[ts->nwhen].n = 0;
	return &ts->when[ts->nwhen++].n;
}

static int fires(const struct engine_rule *r, uint32_t n)
{
	if (!r->first) return 1;
	if (n < r->first || (r->last && n > r->last)) return 0;
	return r->step ? (n - r->first) % r->step == 0 : n == r->first;
}

/* Matches the call against the rules in force, as the tracer's engine
 * does (native/tracer/syscalls.c, match): every rule that selects it
 * counts it for its when=; the first fault and the first signal due are
 * done, and the longest delays. */
static void decide(uint32_t nr, const uint64_t args[6], struct thread_state *ts, struct decision *d, uint64_t *now)
{
	long tid = -1;
	for (;;) {
		uint64_t g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
		if (g & 1) continue;
		const struct rules *rs = &bank[__atomic_load_n(&in_force, __ATOMIC_ACQUIRE)];
		shim_memset(d, 0, __builtin_offsetof(struct decision, path));
		uint32_t *counters[ENGINE_MAX_RULES];
		uint32_t ncounters = 0;
		uint32_t n = rs->n;
		if (n && (*now = clock_ns(CLOCK_MONOTONIC)) >= rs->lease_until_ns) n = 0; /* tlsd is gone */
		for (uint32_t i = 0; i < n && i < ENGINE_MAX_RULES; i++) {
			const struct engine_rule *r = &rs->rule[i];
			if (!in_bits(r->set, nr)) continue;
			if (r->ntids) {
				if (tid < 0) tid = sys0(__NR_gettid);
				if (!selects_thread(r, tid)) continue;
			}
			uint8_t arg = path_arg[nr];
			if ((r->path_length || r->trace) && arg && !d->have_path)
				d->have_path = 1 + (read_string(args[arg - 1], d->path, sizeof d->path) >= 0);
			if (r->path_length && (d->have_path != 2 || !same_path(d->path, r->path, r->path_length))) continue;
			d->selected = 1;
			if (r->trace && !d->trace) d->trace = r->id;
			if (!(r->fault || r->signal || r->delay_enter_us || r->delay_exit_us)) continue;
			if (r->first) {
				uint32_t *c = ts ? when_counter(ts, r->id, nr) : 0;
				if (!c) continue;
				counters[ncounters++] = c;
				if (!fires(r, *c + 1)) continue;
			}
			if (r->fault && !d->fault) {
				d->fault = r->fault;
				d->value = r->value;
				d->flags |= FLAG_INJECTED;
			}
			if (r->signal && !d->signal) {
				d->signal = r->signal;
				d->flags |= FLAG_SIGNALED;
			}
			if (r->delay_enter_us > d->delay_enter_us) d->delay_enter_us = r->delay_enter_us;
			if (r->delay_exit_us > d->delay_exit_us) d->delay_exit_us = r->delay_exit_us;
		}
		if (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) != g) continue; /* changed: again */
		for (uint32_t i = 0; i < ncounters; i++)
			if (*counters[i] < UINT32_MAX) ++*counters[i];
		if (d->delay_enter_us || d->delay_exit_us) d->flags |= FLAG_DELAYED;
		if (d->have_path != 2) d->path[0] = 0;
		return;
	}
}

struct engine_rule *engine_rule_slot(uint32_t i)
{
	return i < ENGINE_MAX_RULES ? &bank[!__atomic_load_n(&in_force, __ATOMIC_RELAXED)].rule[i] : 0;
}

void engine_commit(uint32_t n, uint64_t lease_ms)
{
	uint32_t next = !in_force;
	bank[next].n = n;
	bank[next].lease_until_ns = clock_ns(CLOCK_MONOTONIC) + lease_ms * 1000000u;
	__atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&in_force, next, __ATOMIC_RELEASE);
	__atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
	/* The bank left is the next to be written: a reader still in it sees
	 * the generation move. */
}

void engine_renew(uint64_t lease_ms)
{
	__atomic_store_n(&bank[in_force].lease_until_ns, clock_ns(CLOCK_MONOTONIC) + lease_ms * 1000000u, __ATOMIC_RELEASE);
}

void engine_drop_rules(void) { engine_commit(0, 0); }

void engine_set_path_arg(uint32_t nr, uint8_t arg)
{
	if (nr < ENGINE_NR_MAX) path_arg[nr] = arg;
}

int engine_running(void) { return __atomic_load_n(&running, __ATOMIC_ACQUIRE); }

void engine_trapped(uint8_t out[ENGINE_NR_MAX / 8])
{
	for (uint32_t nr = 0; nr < ENGINE_NR_MAX; nr++)
		if (nr % 8 == 0) out[nr / 8] = (uint8_t)(trapped[nr / 64] >> (nr % 64));
}

/* --- Counts and records -------------------------------------------------- */

static void count(uint32_t nr, struct thread_state *ts, int64_t result, uint64_t ns)
{
	int error = result < 0 && result >= -4095;
	__atomic_fetch_add(&counts[nr].calls, 1, __ATOMIC_RELAXED);
	if (error) __atomic_fetch_add(&counts[nr].errors, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&counts[nr].time_ns, ns, __ATOMIC_RELAXED);
	if (!ts) return;
	__atomic_fetch_add(&ts->calls, 1, __ATOMIC_RELAXED);
	if (error) __atomic_fetch_add(&ts->errors, 1, __ATOMIC_RELAXED);
}

void engine_take_counts(void (*fn)(const struct engine_count *, void *), void *arg)
{
	for (uint32_t nr = 0; nr < ENGINE_NR_MAX; nr++) {
		if (!__atomic_load_n(&counts[nr].calls, __ATOMIC_RELAXED)) continue;
		struct engine_count c = {
			.nr = nr,
			.calls = (uint32_t)__atomic_exchange_n(&counts[nr].calls, 0, __ATOMIC_RELAXED),
			.errors = (uint32_t)__atomic_exchange_n(&counts[nr].errors, 0, __ATOMIC_RELAXED),
			.time_ns = __atomic_exchange_n(&counts[nr].time_ns, 0, __ATOMIC_RELAXED),
		};
		fn(&c, arg);
	}
}

/* Each thread's, read from its TLS slot (table.h): the slot says whose. */
void engine_take_thread_counts(void (*fn)(const struct engine_thread_count *, void *), void *arg)
{
	for (;;) {
		uint64_t seq = ended_tail;
		if (__atomic_load_n(&ended[seq & (ENDED - 1)].published, __ATOMIC_ACQUIRE) != seq + 1) break;
		struct engine_thread_count c = ended[seq & (ENDED - 1)].c;
		__atomic_store_n(&ended_tail, seq + 1, __ATOMIC_RELEASE);
		fn(&c, arg);
	}
	if (__atomic_load_n(&early.calls, __ATOMIC_RELAXED)) {
		struct engine_thread_count c = {
			.tid = __atomic_load_n(&early_tid, __ATOMIC_ACQUIRE),
			.calls = __atomic_exchange_n(&early.calls, 0, __ATOMIC_RELAXED),
			.errors = __atomic_exchange_n(&early.errors, 0, __ATOMIC_RELAXED),
		};
		fn(&c, arg);
	}
	const struct tlsshim_table *t = tlsshim_table();
	if (!t || thread_var < 0) return;
	uint32_t at = SLOT_HEADER + t->vars[thread_var].offset;
	for (uint32_t i = 0; i < t->slot_count; i++) {
		struct tlsshim_slot *s = (struct tlsshim_slot *)((char *)t + t->slots_offset + (uint64_t)i * t->slot_stride);
		uint64_t k = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
		if (k == SLOT_EMPTY || k == SLOT_FREE) continue;
		struct thread_state *ts = (struct thread_state *)((char *)s + at);
		if (!__atomic_load_n(&ts->calls, __ATOMIC_RELAXED)) continue;
		struct engine_thread_count c = {
			.tid = (uint32_t)s->tid,
			.calls = __atomic_exchange_n(&ts->calls, 0, __ATOMIC_RELAXED),
			.errors = __atomic_exchange_n(&ts->errors, 0, __ATOMIC_RELAXED),
		};
		fn(&c, arg);
	}
}

static void record(uint32_t nr, const uint64_t args[6], int64_t result, uint64_t ns, const struct decision *d, uint32_t flags)
{
	uint64_t seq;
	if (!ring_reserve(&records_head, &records_tail, RECORDS, &records_dropped, &seq)) return;
	struct engine_record *r = &records[seq & (RECORDS - 1)];
	r->tid = (uint32_t)sys0(__NR_gettid);
	r->nr = nr;
	r->rule = d->trace;
	r->flags = flags;
	for (int i = 0; i < 6; i++) r->args[i] = args[i];
	r->retval = result;
	r->duration_ns = ns;
	r->at_ns = clock_ns(CLOCK_REALTIME);
	uint32_t i = 0;
	for (; d->path[i] && i < sizeof r->path - 1; i++) r->path[i] = d->path[i];
	r->path[i] = 0;
	__atomic_store_n(&r->published, seq + 1, __ATOMIC_RELEASE);
	ipc_wake();
}

const struct engine_record *engine_next_record(void)
{
	struct engine_record *r = &records[records_tail & (RECORDS - 1)];
	return __atomic_load_n(&r->published, __ATOMIC_ACQUIRE) == records_tail + 1 ? r : 0;
}

void engine_record_done(void) { __atomic_store_n(&records_tail, records_tail + 1, __ATOMIC_RELEASE); }
uint64_t engine_records_dropped(void) { return __atomic_load_n(&records_dropped, __ATOMIC_RELAXED); }

/* --- Calls the engine makes itself --------------------------------------- */

static long sys_sigaction(int sig, const struct k_sigaction *act, struct k_sigaction *old)
{
	return sys4(__NR_rt_sigaction, sig, act, old, 8);
}

/* rt_sigprocmask, on the frame's mask (which rt_sigreturn restores):
 * SIGSYS is never really blocked, only in what the program sees. */
static long virtual_sigprocmask(struct k_ucontext *uc, struct thread_state *ts, const uint64_t a[6])
{
	if (a[3] != 8) return -EINVAL;
	uint64_t current = uc->sigmask | (ts && ts->sigsys_blocked ? SIGSYS_BIT : 0);
	uint64_t set = 0;
	if (a[1] && self_rw(0, &set, a[1], 8)) return -EFAULT;
	if (a[1] && a[0] != SIG_BLOCK && a[0] != SIG_UNBLOCK && a[0] != SIG_SETMASK) return -EINVAL;
	if (a[2] && self_rw(1, &current, a[2], 8)) return -EFAULT;
	if (!a[1]) return 0;
	uint64_t next = a[0] == SIG_BLOCK ? current | set : a[0] == SIG_UNBLOCK ? current & ~set : set;
	next &= ~UNBLOCKABLE;
	if (ts) ts->sigsys_blocked = (next & SIGSYS_BIT) != 0;
	uc->sigmask = next & ~SIGSYS_BIT;
	return 0;
}

/* rt_sigaction: SIGSYS's is the program's alone (ours stays in the
 * kernel); other handlers never block SIGSYS, though they seem to. */
static long virtual_sigaction(const uint64_t a[6])
{
	long sig = (long)a[0];
	if (a[3] != 8) return -EINVAL;
	if (sig < 1 || sig > 64 || (a[1] && (sig == SIGKILL || sig == SIGSTOP))) return -EINVAL;
	struct k_sigaction act, old;
	if (a[1] && self_rw(0, &act, a[1], sizeof act)) return -EFAULT;
	if (sig == SIGSYS) {
		old = program_sigsys;
		if (a[2] && self_rw(1, &old, a[2], sizeof old)) return -EFAULT;
		if (a[1]) program_sigsys = act;
		return 0;
	}
	uint64_t bit = 1ull << (sig - 1);
	int wanted = (masks_with_sigsys & bit) != 0;
	if (a[1]) act.mask &= ~SIGSYS_BIT;
	long r = sys_sigaction((int)sig, a[1] ? &act : 0, &old);
	if (r) return r;
	if (wanted) old.mask |= SIGSYS_BIT;
	if (a[1]) {
		uint64_t with = 0;
		self_rw(0, &with, a[1] + __builtin_offsetof(struct k_sigaction, mask), 8);
		if (with & SIGSYS_BIT) __atomic_fetch_or(&masks_with_sigsys, bit, __ATOMIC_RELAXED);
		else __atomic_fetch_and(&masks_with_sigsys, ~bit, __ATOMIC_RELAXED);
	}
	if (a[2] && self_rw(1, &old, a[2], sizeof old)) return -EFAULT;
	return 0;
}

/* A SIGSYS that is not ours (raised by the program, or another filter's)
 * goes to the program's handler, as the kernel would have sent it. */
static void chain(int sig, struct k_siginfo *si, struct k_ucontext *uc)
{
	struct k_sigaction h = program_sigsys;
	if (h.handler == 1) return; /* SIG_IGN */
	if (h.handler == 0) {       /* SIG_DFL: dump core, once we return */
		struct k_sigaction dfl = { 0, SA_RESTORER_FLAG, (uint64_t)(uintptr_t)engine_restorer, 0 };
		sys_sigaction(SIGSYS, &dfl, 0);
		sys2(__NR_kill, sys0(__NR_getpid), SIGSYS);
		return;
	}
	uint64_t mask = (uc->sigmask | h.mask) & ~SIGSYS_BIT & ~UNBLOCKABLE, saved;
	if (h.flags & 0x80000000u) program_sigsys.handler = 0; /* SA_RESETHAND */
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &mask, &saved, 8);
	if (h.flags & 4) /* SA_SIGINFO */
		((void (*)(int, void *, void *))(uintptr_t)h.handler)(sig, si, uc);
	else
		((void (*)(int))(uintptr_t)h.handler)(sig);
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &saved, 0, 8);
}

/* An alternate stack of ours says so in its lowest word (the stack grows
 * down to it only on overflow): a thread ending unmaps its own, never
 * another's (threads made without CLONE_SETTLS share a thread pointer,
 * and so a TLS slot, with their parent). */
#define ALT_MAGIC 0x6b63617473746c61ull

_Static_assert(GUARD == TLSSHIM_ENGINE_GUARD && GUARD + ALT_SIZE == TLSSHIM_ENGINE_STACK, "inject.h's stacks");

/* GUARD + ALT_SIZE bytes, read-write, made an alternate stack of ours. */
static void mark_altstack(uint64_t base)
{
	sys3(__NR_mprotect, base, GUARD, PROT_NONE);
	*(uint64_t *)(uintptr_t)(base + GUARD) = ALT_MAGIC ^ base;
}

static uint64_t new_altstack(void)
{
	long m = sys6(__NR_mmap, 0, ALT_SIZE + GUARD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sys_failed(m)) return 0;
	mark_altstack((uint64_t)m);
	return (uint64_t)m;
}

/* clone or clone3 making a thread: its child starts on a new alternate
 * stack, from a copy of this frame there that makes it the caller with
 * rax 0, its own stack pointer, and that alternate stack as its own. */
static long thread_clone(long nr, const uint64_t a[6], struct k_ucontext *uc)
{
	struct clone_args ca;
	uint64_t new_sp;
	if (nr == __NR_clone3) {
		if (a[1] < 64 || a[1] > sizeof ca) return -EINVAL;
		shim_memset(&ca, 0, sizeof ca);
		if (self_rw(0, &ca, a[0], a[1])) return -EFAULT;
		new_sp = ca.stack ? ca.stack + ca.stack_size : uc->mc.rsp;
	} else {
		new_sp = a[1] ? a[1] : uc->mc.rsp;
	}
	uint64_t alt = new_altstack();
	if (!alt) return -ENOMEM;
	char *top = (char *)(uintptr_t)(alt + GUARD + ALT_SIZE);
	char *fp = (char *)(uintptr_t)uc->mc.fpstate;
	uint32_t fp_size = fp ? fpstate_size(fp) : 0;
	char *fp_copy = (char *)((uintptr_t)(top - fp_size) & ~(uintptr_t)63);
	uint32_t frame_size = 8 + sizeof(struct k_ucontext) + sizeof(struct k_siginfo);
	char *frame = (char *)((uintptr_t)(fp_copy - frame_size) & ~(uintptr_t)15);
	memcpy(frame, (char *)uc - 8, frame_size);
	if (fp) memcpy(fp_copy, fp, fp_size);
	struct k_ucontext *child = (struct k_ucontext *)(frame + 8);
	child->mc.fpstate = fp ? (uint64_t)(uintptr_t)fp_copy : 0;
	child->mc.rax = 0;
	child->mc.rsp = new_sp;
	child->stack.sp = alt + GUARD;
	child->stack.flags = 0;
	child->stack.size = ALT_SIZE;
	long r;
	if (nr == __NR_clone3) {
		ca.stack = alt + GUARD;
		ca.stack_size = (uint64_t)(uintptr_t)child - ca.stack;
		r = engine_thread_clone(__NR_clone3, (long)&ca, sizeof ca, 0, 0, 0);
	} else {
		r = engine_thread_clone(__NR_clone, (long)a[0], (long)(uintptr_t)child, (long)a[2], (long)a[3], (long)a[4]);
	}
	if (sys_failed(r)) sys2(__NR_munmap, alt, ALT_SIZE + GUARD);
	return r;
}

/* execve and process-making calls: by the agent (agent_call above). */
static long by_agent(long nr, const uint64_t a[6], struct k_ucontext *uc)
{
	uint32_t free_ = 0;
	while (!__atomic_compare_exchange_n(&agent_call.lock, &free_, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		futex_wait(&agent_call.lock, 1, 0);
		free_ = 0;
	}
	agent_call.nr = nr;
	for (int i = 0; i < 6; i++) agent_call.args[i] = (long)a[i];
	agent_call.uc = uc;
	agent_call.fs = read_fs_base_syscall();
	__atomic_store_n(&agent_call.state, 1, __ATOMIC_RELEASE);
	ipc_wake();
	while (__atomic_load_n(&agent_call.state, __ATOMIC_ACQUIRE) != 2) futex_wait(&agent_call.state, 1, 0);
	long r = agent_call.result;
	__atomic_store_n(&agent_call.state, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&agent_call.lock, 0, __ATOMIC_RELEASE);
	futex_wake(&agent_call.lock);
	return r;
}

int engine_pending_call(void) { return __atomic_load_n(&agent_call.state, __ATOMIC_ACQUIRE) == 1; }

/* In the agent: a new image (from a thread with no filter, so the image
 * has none), or a new process that starts as the caller did. */
void engine_make_call(void)
{
	long nr = agent_call.nr, *a = agent_call.args, r;
	struct k_ucontext *uc = agent_call.uc;
	if (nr == __NR_execve || nr == __NR_execveat) {
		/* The image keeps the caller's mask, as its own exec would. */
		uint64_t mask = uc->sigmask, all = ~0ull;
		sys4(__NR_rt_sigprocmask, SIG_SETMASK, &mask, 0, 8);
		r = sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		sys4(__NR_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
	} else {
		struct transplant t = { .nr = nr, .uc = (uint64_t)(uintptr_t)uc, .fs = agent_call.fs };
		for (int i = 0; i < 6; i++) t.args[i] = a[i];
		struct clone_args ca;
		uint64_t flags = nr == __NR_fork ? SIGCHLD : nr == __NR_vfork ? CLONE_VM | CLONE_VFORK | SIGCHLD : (uint64_t)a[0];
		uint64_t sp = uc->mc.rsp, new_sp = 0;
		struct k_stack stack = uc->stack;
		if (nr == __NR_clone3) {
			shim_memset(&ca, 0, sizeof ca);
			r = a[1] < 64 || a[1] > (long)sizeof ca ? -EINVAL : self_rw(0, &ca, (uint64_t)a[0], (uint64_t)a[1]);
			if (r) goto answer;
			flags = ca.flags;
			new_sp = ca.stack ? ca.stack + ca.stack_size : 0;
			ca.stack = 0; /* the child needs none until it is the caller */
			ca.stack_size = 0;
			t.args[0] = (long)&ca;
			t.args[1] = sizeof ca;
		} else if (nr == __NR_clone) {
			new_sp = (uint64_t)a[1];
			t.args[1] = 0;
		}
		if (flags & CLONE_SETTLS) t.fs = nr == __NR_clone3 ? ca.tls : (uint64_t)a[4];
		/* The child reads the frame once, at its start: it sees rax 0 and
		 * its own stack; the caller's values are put back after. A child
		 * sharing memory must not share the caller's alternate stack. */
		uc->mc.rax = 0;
		if (new_sp) uc->mc.rsp = new_sp;
		if (flags & CLONE_VM) uc->stack.flags = SS_DISABLE_FLAG;
		/* A vfork child runs on the caller's stack: if the caller's
		 * handler runs there too (its frame is not on an alternate
		 * stack), the child gets a copy of the memory instead. */
		uint64_t frame = (uint64_t)(uintptr_t)uc;
		int on_alt = !(stack.flags & SS_DISABLE_FLAG) && frame >= stack.sp && frame < stack.sp + stack.size;
		if ((flags & CLONE_VFORK) && !new_sp && !on_alt) {
			flags &= ~(uint64_t)(CLONE_VM | CLONE_VFORK);
			if (nr == __NR_vfork) t.nr = __NR_fork;
			else if (nr == __NR_clone) t.args[0] = (long)flags;
			else ca.flags = flags;
		}
		if ((flags & CLONE_VM) && !(flags & CLONE_VFORK)) {
			r = -EINVAL; /* a process sharing memory that runs at once: not made here */
		} else {
			r = engine_transplant_clone(&t);
		}
		uc->mc.rsp = sp;
		uc->stack = stack;
	}
answer:
	agent_call.result = r;
	__atomic_store_n(&agent_call.state, 2, __ATOMIC_RELEASE);
	futex_wake(&agent_call.state);
}

int engine_flush_wanted(void) { return __atomic_load_n(&flush_state, __ATOMIC_ACQUIRE) == 1; }
void engine_flushed(void)
{
	__atomic_store_n(&flush_state, 2, __ATOMIC_RELEASE);
	futex_wake(&flush_state);
}

/* A thread that ends leaves its counts to the agent (its slot is gone). */
static void leave_counts(struct thread_state *ts)
{
	if (!ts || !__atomic_load_n(&ts->calls, __ATOMIC_RELAXED)) return;
	uint64_t seq;
	if (!ring_reserve(&ended_head, &ended_tail, ENDED, 0, &seq)) return; /* lost: docs/limits.md */
	ended[seq & (ENDED - 1)].c.tid = (uint32_t)sys0(__NR_gettid);
	ended[seq & (ENDED - 1)].c.calls = __atomic_exchange_n(&ts->calls, 0, __ATOMIC_RELAXED);
	ended[seq & (ENDED - 1)].c.errors = __atomic_exchange_n(&ts->errors, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&ended[seq & (ENDED - 1)].published, seq + 1, __ATOMIC_RELEASE);
}

/* TLSSHIM_OWN_EXIT_MARK (inject.h): nobody in the process sees the name
 * again. */
static void mark_own_exit(void)
{
	char name[17] = { TLSSHIM_OWN_EXIT_MARK }; /* the mark, then 16 bytes for PR_GET_NAME */
	if (sys2(__NR_prctl, PR_GET_NAME, name + 1)) return;
	name[15] = 0; /* the old name, cut to fit after the mark */
	sys2(__NR_prctl, PR_SET_NAME, name);
}

/* The thread ends: its counts go with it, then the alternate stack of
 * ours this handler runs on. */
static _Noreturn void exit_thread(long code, struct thread_state *ts)
{
	uint64_t ignored;
	block_signals(&ignored);
	leave_counts(ts);
	mark_own_exit();
	tlsshim_release();
	struct k_stack now;
	if (!sys2(__NR_sigaltstack, 0, &now) && (now.flags & 1 /* SS_ONSTACK */) && now.size == ALT_SIZE) {
		uint64_t base = now.sp - GUARD;
		if (*(const uint64_t *)(uintptr_t)now.sp == (ALT_MAGIC ^ base)) engine_unmap_and_exit(base, GUARD + ALT_SIZE, code);
	}
	for (;;) sys1(__NR_exit, code);
}

static long perform(long nr, const uint64_t a[6], struct k_ucontext *uc, struct thread_state *ts)
{
	switch (nr) {
	case __NR_rt_sigprocmask: return virtual_sigprocmask(uc, ts, a);
	case __NR_rt_sigaction: return virtual_sigaction(a);
	case __NR_execve:
	case __NR_execveat:
	case __NR_fork:
	case __NR_vfork:
		return by_agent(nr, a, uc);
	case __NR_clone:
		return a[0] & CLONE_THREAD ? thread_clone(nr, a, uc) : by_agent(nr, a, uc);
	case __NR_clone3: {
		uint64_t flags = 0;
		if (self_rw(0, &flags, a[0], 8)) return -EFAULT;
		return flags & CLONE_THREAD ? thread_clone(nr, a, uc) : by_agent(nr, a, uc);
	}
	case __NR_exit_group:
		if (__atomic_load_n(&agent_call.lock, __ATOMIC_RELAXED) == 0 && ipc_connected()) {
			uint32_t idle = 0;
			if (__atomic_compare_exchange_n(&flush_state, &idle, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) ipc_wake();
			/* At most 2 s: a tlsd that no longer reads must not keep the
			 * process from ending. */
			futex_wait(&flush_state, 1, 2000000000);
		}
		return sys1(__NR_exit_group, a[0]);
	case __NR_getpid: case __NR_getppid: case __NR_gettid: case __NR_getuid: case __NR_geteuid:
	case __NR_getgid: case __NR_getegid: case __NR_getpgrp:
		/* strace's %pure: they never block, so no signal can come in
		 * between. */
		return sys0(nr);
	default: {
		/* With the program's own mask while it runs: a signal can end
		 * or restart a blocking call as it would have. */
		uint64_t mask = uc->sigmask & ~SIGSYS_BIT, all = ~0ull;
		sys4(__NR_rt_sigprocmask, SIG_SETMASK, &mask, 0, 8);
		long r = sys6(nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
		sys4(__NR_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
		return r;
	}
	}
}

static void on_sigsys(int sig, struct k_siginfo *si, struct k_ucontext *uc)
{
	if (si->code != SYS_SECCOMP || si->errno_ != TRAP_DATA) {
		chain(sig, si, uc);
		return;
	}
	uint32_t nr = (uint32_t)si->syscall;
	uint64_t a[6] = { uc->mc.rdi, uc->mc.rsi, uc->mc.rdx, uc->mc.r10, uc->mc.r8, uc->mc.r9 };
	struct thread_state *ts = thread_state();
	/* Its alternate stack, which a frame restored by tlsd's tracer (an
	 * injection) may have turned off: rt_sigreturn sets it from here. */
	if (ts && ts->altstack && (uc->stack.flags & SS_DISABLE_FLAG)) {
		uc->stack.sp = ts->altstack + GUARD;
		uc->stack.flags = 0;
		uc->stack.size = ALT_SIZE;
	}
	struct decision d;
	uint64_t start = 0; /* read with the lease, when there are rules */
	decide(nr, a, ts, &d, &start);
	if (d.delay_enter_us) sleep_us(d.delay_enter_us);
	if (d.selected && (nr == __NR_exit || nr == __NR_exit_group)) {
		count(nr, ts, 0, 0);
		if (d.trace) record(nr, a, 0, 0, &d, d.flags | FLAG_NO_RETURN);
	}
	long r;
	if (d.fault) r = d.fault == FAULT_ERROR ? -d.value : d.value;
	else if (nr == __NR_exit) exit_thread((long)a[0], ts);
	else r = perform(nr, a, uc, ts);
	if (d.delay_exit_us) sleep_us(d.delay_exit_us);
	if (d.signal) sys3(__NR_tgkill, sys0(__NR_getpid), sys0(__NR_gettid), d.signal);
	uc->mc.rax = (uint64_t)r;
	if (!d.selected) return;
	uint64_t ns = clock_ns(CLOCK_MONOTONIC) - start;
	count(nr, ts, r, ns);
	if (d.trace) record(nr, a, r, ns, &d, d.flags);
}

/* --- Start ----------------------------------------------------------------- */

#define LD(off) ((struct sock_filter){ BPF_LD | BPF_W | BPF_ABS, 0, 0, (off) })
#define JUMP(op, k, jt, jf) ((struct sock_filter){ BPF_JMP | (op) | BPF_K, (jt), (jf), (k) })
#define RET(k) ((struct sock_filter){ BPF_RET | BPF_K, 0, 0, (k) })
#define OFF_NR 0
#define OFF_ARCH 4
#define OFF_IP_LO 8
#define OFF_IP_HI 12
#define ALLOW SECCOMP_RET_ALLOW
#define TRAP (SECCOMP_RET_TRAP | TRAP_DATA)

/* The filter. Calls by number first: one the engine does not trap then
 * depends on its number alone, so that the kernel's cache of constant
 * actions (seccomp's action bitmap) lets it run without the filter at
 * all. The numbers go by ranges, each range four instructions with short
 * jumps (cBPF's conditional ones are 8 bits), so that a call in no range
 * leaves at the first range above it. A trapped number traps unless the
 * call comes from our own text (rt_sigreturn is never trapped). */
#define JA(k) ((struct sock_filter){ BPF_JMP | BPF_JA, 0, 0, (k) })
static struct sock_filter filter[16 + 4 * ENGINE_NR_MAX / 2];

static int build_filter(void)
{
	uint64_t lo = (uint64_t)(uintptr_t)__ehdr_start, hi = (uint64_t)(uintptr_t)etext;
	if (lo >> 32 != (hi - 1) >> 32) return -1; /* the text crosses a 4 GiB line: no such shim */
	uint32_t n = 0, ranges = 0;
	for (uint32_t nr = 0; nr < ENGINE_NR_MAX; nr++)
		ranges += (trapped[nr / 64] >> (nr % 64) & 1) && (nr == 0 || !(trapped[(nr - 1) / 64] >> ((nr - 1) % 64) & 1));
	uint32_t by_address = 4 + 4 * ranges + 1; /* where the address is checked */
	filter[n++] = LD(OFF_ARCH);
	filter[n++] = JUMP(BPF_JEQ, AUDIT_ARCH_X86_64, 1, 0);
	filter[n++] = RET(ALLOW);
	filter[n++] = LD(OFF_NR);
	for (uint32_t nr = 0; nr < ENGINE_NR_MAX;) {
		if (!(trapped[nr / 64] >> (nr % 64) & 1)) { nr++; continue; }
		uint32_t first = nr;
		while (nr < ENGINE_NR_MAX && (trapped[nr / 64] >> (nr % 64) & 1)) nr++;
		filter[n++] = JUMP(BPF_JGT, nr - 1, 3, 0);
		filter[n++] = JUMP(BPF_JGE, first, 0, 1);
		filter[n] = JA(by_address - (n + 1));
		n++;
		filter[n++] = RET(ALLOW);
	}
	filter[n++] = RET(ALLOW);
	filter[n++] = LD(OFF_IP_HI);
	filter[n++] = JUMP(BPF_JEQ, (uint32_t)(lo >> 32), 0, 4);
	filter[n++] = LD(OFF_IP_LO);
	filter[n++] = JUMP(BPF_JGE, (uint32_t)lo, 0, 2);
	filter[n++] = JUMP(BPF_JGE, (uint32_t)hi, 1, 0);
	filter[n++] = RET(ALLOW); /* our own */
	filter[n++] = RET(TRAP);
	return (int)n;
}

static int install_filter(void)
{
	int n = build_filter();
	if (n < 0) return -1;
	struct sock_fprog prog = { (unsigned short)n, filter };
	long r = sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog);
	if (r == -EACCES) { /* without CAP_SYS_ADMIN, a filter needs no_new_privs */
		sys2(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1);
		r = sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog);
	}
	return sys_failed(r) ? -1 : 0;
}

static void trap(uint32_t nr) { trapped[nr / 64] |= 1ull << (nr % 64); }

static int filter_length; /* the built filter's, once prepared */

/* The handlers of the other signals never block SIGSYS, and the
 * program's own SIGSYS disposition becomes virtual, ours in its place.
 * Every signal blocked: a handler of the program's must not run between
 * the look and the change. Looked at again when a running process's
 * threads all have the filter (TLSSHIM_ENGINE_PREPARE): a thread without
 * it may have set a handler meanwhile. */
static int take_handlers(void)
{
	uint64_t all = ~0ull, mask;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &all, &mask, 8);
	for (int sig = 1; sig <= 64; sig++) {
		struct k_sigaction h;
		if (sig == SIGKILL || sig == SIGSTOP || sys_sigaction(sig, 0, &h)) continue;
		if (sig == SIGSYS) {
			if (h.handler != (uint64_t)(uintptr_t)on_sigsys) program_sigsys = h;
			continue;
		}
		if (!(h.mask & SIGSYS_BIT)) continue;
		__atomic_fetch_or(&masks_with_sigsys, 1ull << (sig - 1), __ATOMIC_RELAXED);
		h.mask &= ~SIGSYS_BIT;
		sys_sigaction(sig, &h, 0);
	}
	struct k_sigaction ours = {
		(uint64_t)(uintptr_t)on_sigsys, SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_RESTORER_FLAG,
		(uint64_t)(uintptr_t)engine_restorer, ~0ull,
	};
	int ok = !sys_sigaction(SIGSYS, &ours, 0);
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &mask, 0, 8);
	return ok ? 0 : -1;
}

int engine_prepare(const uint8_t set[ENGINE_NR_MAX / 8])
{
	if (filter_length) return take_handlers();
	if (ipc_hold_agent()) return -1;
	thread_var = tlsshim_register(sizeof(struct thread_state), 8, "tlsd.engine");
	if (thread_var < 0) return -1;
	for (uint32_t nr = 0; nr < ENGINE_NR_MAX; nr++)
		if (in_bits(set, nr)) trap(nr);
	static const uint16_t always[] = { __NR_rt_sigaction, __NR_rt_sigprocmask, __NR_clone, __NR_fork, __NR_vfork,
					   __NR_execve, __NR_exit, __NR_exit_group, __NR_execveat, __NR_clone3 };
	for (uint32_t i = 0; i < sizeof always / sizeof *always; i++) trap(always[i]);
	trapped[__NR_rt_sigreturn / 64] &= ~(1ull << (__NR_rt_sigreturn % 64));
	int n = build_filter();
	if (n < 0 || take_handlers()) {
		shim_memset(trapped, 0, sizeof trapped);
		sys_sigaction(SIGSYS, &program_sigsys, 0);
		return -1;
	}
	filter_length = n;
	return 0;
}

const void *engine_filter(uint32_t *length)
{
	*length = (uint32_t)filter_length;
	return filter;
}

/* Makes the alternate stack at `base` this thread's. */
static int use_altstack(struct thread_state *ts, uint64_t base)
{
	struct k_stack alt = { base + GUARD, 0, 0, ALT_SIZE };
	if (sys2(__NR_sigaltstack, &alt, 0)) return -1;
	if (ts) ts->altstack = base;
	return 0;
}

int engine_enter(uint64_t mask, uint64_t stack, int *kept)
{
	if (!filter_length) return -1;
	struct thread_state *ts = thread_state();
	if (ts) ts->sigsys_blocked = (mask & SIGSYS_BIT) != 0;
	/* A thread with an alternate stack of its own (a Go thread's) keeps it. */
	struct k_stack now;
	*kept = 0;
	if (sys2(__NR_sigaltstack, 0, &now) || (now.flags & SS_DISABLE_FLAG)) {
		if (stack) mark_altstack(stack);
		uint64_t base = stack ? stack : new_altstack();
		if (!base || use_altstack(ts, base)) return -1;
		*kept = stack != 0;
	}
	if (install_filter()) return -1;
	__atomic_store_n(&running, 1, __ATOMIC_RELEASE);
	ipc_wake(); /* the agent tells tlsd */
	return 0;
}

int engine_start(const uint8_t set[ENGINE_NR_MAX / 8])
{
	if (running || filter_length) return -1;
	early_tid = (uint32_t)sys0(__NR_gettid);
	uint64_t mask;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, 0, &mask, 8);
	if (engine_prepare(set)) return -1;
	int kept;
	uint64_t all = ~0ull;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
	int r = engine_enter(mask, 0, &kept);
	mask &= ~SIGSYS_BIT;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &mask, 0, 8);
	return r;
}
