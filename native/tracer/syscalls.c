/* Syscall interposition through ptrace: the threads of a process that has
 * rules are restarted with PTRACE_SYSCALL, and each of their syscall stops
 * is matched against the rules here, in the tracer, with no round trip to
 * the daemon (docs/syscalls.md). Effects are strace's: a fault replaces
 * the call's number by -1 at its entry (and writes its result there);
 * a signal is sent at the entry; a delay holds the thread in its stop
 * while the loop goes on with every other tracee. Counts go to the daemon
 * in batches (SYSCALL_COUNT), traced calls one frame each (SYSCALL),
 * both through the batched output queue. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "arch.h"
#include "protocol.h"
#include "release.h"
#include "syscalls.h"
#include "tracer.h"

/* Counts not asked for (COUNTS) are sent at least this often. */
#define COUNTS_PERIOD_NS 250000000u
#define PATH_READ_MAX 4096

/* Why a thread is held in a syscall stop (a delay). */
enum hold { HOLD_NONE, HOLD_ENTRY, HOLD_EXIT };

struct when_count {
	uint32_t rule;
	uint16_t nr;
	uint32_t n; /* calls of nr this rule selected in this thread */
};

struct count {
	uint16_t nr;
	uint32_t calls, errors;
	uint64_t time_ns;
};

struct sys_state {
	/* The call in progress: its entry was seen. */
	int in_call;
	int restarting;   /* made to restart by a stop of ours: the same call */
	int entry_stop;   /* its last syscall stop was an entry stop */
	uint16_t nr;
	uint64_t args[6];
	uint64_t entry_ns;
	int selected;     /* some rule selected it: it is counted */
	uint32_t trace;   /* the id of a tracing rule that selected it, or 0 */
	uint8_t fault;    /* enum rule_fault, its result written at its entry */
	int64_t value;
	int signal;       /* sent at its entry */
	uint32_t delay_exit_us;
	uint8_t flags;    /* TLSD_SYSCALL_* */
	char *path;       /* its path argument, when one was read */
	int exec_exit;    /* the exit stop of an execve that replaced the
	                     image comes next, its entry never seen */
	/* A delay. */
	enum hold hold;
	uint64_t wake_ns;
	/* strace's when= counts, per rule and call number. */
	struct when_count *when;
	uint32_t nwhen, when_cap;
	/* Counted, not yet sent. */
	struct count *counts;
	uint32_t ncounts, counts_cap;
};

static pid_t *held; /* threads held for a delay */
static uint32_t nheld, held_cap;
static pid_t *counting; /* threads with counts not sent */
static uint32_t ncounting, counting_cap;
static uint64_t counts_sent_ns;

static void push_tid(pid_t **list, uint32_t *n, uint32_t *cap, pid_t tid)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*list = xrealloc(*list, *cap * sizeof **list);
	}
	(*list)[(*n)++] = tid;
}

static int in_set(const uint8_t *set, uint16_t nr)
{
	return set[nr / 8] & (1u << (nr % 8));
}

/* --- Rules ------------------------------------------------------------ */

static void rule_clear(struct rule *r)
{
	free(r->tids);
	free(r->path);
	free(r->path_args);
}

void ruleset_free(struct ruleset *rs)
{
	if (!rs)
		return;
	for (uint32_t i = 0; i < rs->n; i++)
		rule_clear(&rs->rules[i]);
	free(rs->rules);
	free(rs);
}

/* A str field of exactly `size` bytes (or empty: NULL). */
static uint8_t *read_bytes(struct frame *f, size_t size, int may_be_empty)
{
	uint32_t n = in_u32(f);
	if (f->bad || (n == 0 && may_be_empty))
		return NULL;
	if (n != size || (size_t)(f->end - f->p) < size) {
		f->bad = 1;
		return NULL;
	}
	uint8_t *b = xrealloc(NULL, size);
	memcpy(b, f->p, size);
	f->p += size;
	return b;
}

static int rule_read(struct frame *f, struct rule *r)
{
	r->id = in_u32(f);
	uint8_t *set = read_bytes(f, sizeof r->set, 0);
	if (set)
		memcpy(r->set, set, sizeof r->set);
	free(set);
	r->ntids = in_u32(f);
	if (f->bad || r->ntids > (uint32_t)(f->end - f->p) / 4)
		return -1;
	r->tids = r->ntids ? xrealloc(NULL, r->ntids * sizeof *r->tids) : NULL;
	for (uint32_t i = 0; i < r->ntids; i++)
		r->tids[i] = (pid_t)in_u32(f);
	r->path = in_str(f);
	if (r->path && !r->path[0]) {
		free(r->path);
		r->path = NULL;
	}
	r->path_args = read_bytes(f, SYSCALL_NR_MAX, 1);
	r->fault = in_u8(f);
	r->value = (int64_t)in_u64(f);
	r->signal = in_u8(f);
	r->delay_enter_us = in_u32(f);
	r->delay_exit_us = in_u32(f);
	r->first = in_u32(f);
	r->last = in_u32(f);
	r->step = in_u32(f);
	r->trace = in_u8(f);
	r->shim = in_u8(f);
	if (r->fault > RULE_FAULT_RETVAL || r->signal >= 65 || (r->path && !r->path_args))
		f->bad = 1;
	return f->bad ? -1 : 0;
}

struct ruleset *ruleset_read(struct frame *f)
{
	uint32_t n = in_u32(f);
	if (f->bad || n > (uint32_t)(f->end - f->p) / 4) {
		f->bad = 1;
		return NULL;
	}
	struct ruleset *rs = xrealloc(NULL, sizeof *rs);
	rs->n = n;
	rs->rules = n ? xcalloc(n, sizeof *rs->rules) : NULL;
	for (uint32_t i = 0; i < n; i++) {
		if (rule_read(f, &rs->rules[i]) < 0) {
			rs->n = i + 1;
			ruleset_free(rs);
			f->bad = 1;
			return NULL;
		}
	}
	return rs;
}

static void *dup_bytes(const void *b, size_t n)
{
	return b ? memcpy(xrealloc(NULL, n), b, n) : NULL;
}

struct ruleset *ruleset_copy(const struct ruleset *rs)
{
	if (!rs)
		return NULL;
	struct ruleset *c = xrealloc(NULL, sizeof *c);
	c->n = rs->n;
	c->rules = dup_bytes(rs->rules, rs->n * sizeof *rs->rules);
	for (uint32_t i = 0; i < rs->n; i++) {
		struct rule *r = &c->rules[i];
		r->tids = dup_bytes(r->tids, r->ntids * sizeof *r->tids);
		r->path = r->path ? strdup(r->path) : NULL;
		r->path_args = dup_bytes(r->path_args, SYSCALL_NR_MAX);
	}
	return c;
}

/* A rule the tracer applies now: not one its shim applies. */
static int in_force(const struct process *p, const struct rule *r)
{
	return !(r->shim && p->handed_off);
}

uint32_t tracer_rules_in_force(const struct process *p)
{
	uint32_t n = 0;
	for (uint32_t i = 0; p->rules && i < p->rules->n; i++)
		n += in_force(p, &p->rules->rules[i]);
	return n;
}

/* Its threads stop at every syscall: it has rules in force here, and no
 * pre-filter that stops at all their calls. */
static int stops_at_every_call(const struct process *p)
{
	return tracer_rules_in_force(p) && !p->prefilter_covers;
}

static int has_rules(pid_t pid)
{
	struct process *p = process_find(pid);
	return p && tracer_rules_in_force(p);
}

void ruleset_union(const struct ruleset *rs, uint8_t set[SYSCALL_NR_MAX / 8])
{
	memset(set, 0, SYSCALL_NR_MAX / 8);
	for (uint32_t i = 0; rs && i < rs->n; i++)
		for (size_t b = 0; b < SYSCALL_NR_MAX / 8; b++)
			set[b] |= rs->rules[i].set[b];
}

/* Whether every call the rules select stops at the process's pre-filter:
 * then its threads need no other syscall stop. */
static int prefilter_covers(const struct process *p)
{
	if (!(p->flags & P_PREFILTER))
		return 0;
	uint8_t set[SYSCALL_NR_MAX / 8] = { 0 };
	for (uint32_t i = 0; p->rules && i < p->rules->n; i++)
		for (size_t b = 0; in_force(p, &p->rules->rules[i]) && b < sizeof set; b++)
			set[b] |= p->rules->rules[i].set[b];
	for (size_t b = 0; b < sizeof set; b++)
		if (set[b] & ~p->prefilter[b])
			return 0;
	return 1;
}

int install_prefilter(const uint8_t set[SYSCALL_NR_MAX / 8])
{
	struct sock_filter code[8 + SYSCALL_NR_MAX];
	size_t n = 0;
	/* A call of another architecture (a 32-bit one) or an x32 call: run. */
	code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	size_t count = 0;
	for (int nr = 0; nr < SYSCALL_NR_MAX; nr++)
		count += in_set(set, (uint16_t)nr) ? 1 : 0;
	/* One test per call: each jumps to the RET_TRACE at the end. */
	size_t left = count;
	for (int nr = 0; nr < SYSCALL_NR_MAX; nr++) {
		if (!in_set(set, (uint16_t)nr))
			continue;
		left--;
		code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, (uint8_t)(left + 1), 0);
	}
	code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = code };
	/* Without CAP_SYS_ADMIN the kernel takes a filter only from a process
	 * that can gain no privileges (a setuid program then runs without
	 * its privileges, as under strace --seccomp-bpf). */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) == 0)
		return 0;
	if (errno != EACCES || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog);
}

/* --- Per-thread state ------------------------------------------------- */

static struct sys_state *state_of(struct thread *t)
{
	if (!t->sys)
		t->sys = xcalloc(1, sizeof *t->sys);
	return t->sys;
}

int stops_at_syscalls(const struct thread *t)
{
	/* A call in progress keeps its exit stop, rules or not, for its
	 * count and record; with the pre-filter stopping at every call the
	 * rules select, that is the only syscall stop asked for. */
	int in_call = t->sys && ((t->sys->in_call && t->sys->selected) || t->sys->exec_exit);
	struct process *p = process_find(t->pid);
	return in_call || (p && stops_at_every_call(p));
}

void syscalls_thread_free(struct thread *t)
{
	struct sys_state *s = t->sys;
	if (!s)
		return;
	free(s->path);
	free(s->when);
	free(s->counts);
	free(s);
	t->sys = NULL;
}

static void count_call(struct thread *t, struct sys_state *s, int64_t rval, uint64_t now)
{
	struct count *c = NULL;
	for (uint32_t i = 0; i < s->ncounts && !c; i++)
		if (s->counts[i].nr == s->nr)
			c = &s->counts[i];
	if (!c) {
		if (!s->ncounts)
			push_tid(&counting, &ncounting, &counting_cap, t->tid);
		if (s->ncounts == s->counts_cap) {
			s->counts_cap = s->counts_cap ? s->counts_cap * 2 : 8;
			s->counts = xrealloc(s->counts, s->counts_cap * sizeof *s->counts);
		}
		c = &s->counts[s->ncounts++];
		*c = (struct count){ .nr = s->nr };
	}
	c->calls++;
	if (rval < 0 && rval >= -4095)
		c->errors++;
	c->time_ns += now > s->entry_ns ? now - s->entry_ns : 0;
}

static void send_thread_counts(struct thread *t)
{
	struct sys_state *s = t->sys;
	if (!s)
		return;
	for (uint32_t i = 0; i < s->ncounts; i++) {
		struct count *c = &s->counts[i];
		send_syscall_count(t->pid, t->tid, c->nr, c->calls, c->errors, c->time_ns);
	}
	s->ncounts = 0;
}

/* Every thread's counts not sent yet (pid 0), or one process's. */
static void send_counts(pid_t pid)
{
	uint32_t kept = 0;
	for (uint32_t i = 0; i < ncounting; i++) {
		struct thread *t = thread_find(counting[i]);
		if (t && pid && t->pid != pid) {
			counting[kept++] = counting[i];
			continue;
		}
		if (t)
			send_thread_counts(t);
	}
	ncounting = kept;
}

void send_counts_of(uint32_t req, pid_t pid)
{
	send_counts(pid);
	send_reply((struct reply){ .req = req, .pid = pid });
}

static void send_call(struct thread *t, struct sys_state *s, int64_t rval, uint64_t now)
{
	send_syscall(t->pid, t->tid, s->trace, s->nr, s->args, rval, now - s->entry_ns, s->flags, s->path);
}

/* The call in progress is over, with what the program got: counted, and
 * recorded for a tracing rule. */
static void end_call(struct thread *t, struct sys_state *s, int64_t rval, uint64_t now)
{
	s->in_call = 0;
	if (s->selected)
		count_call(t, s, rval, now);
	if (s->trace)
		send_call(t, s, rval, now);
}

/* --- Matching ---------------------------------------------------------- */

static int selects_thread(const struct rule *r, pid_t tid)
{
	if (!r->ntids)
		return 1;
	for (uint32_t i = 0; i < r->ntids; i++)
		if (r->tids[i] == tid)
			return 1;
	return 0;
}

/* The string at addr in the tracee, or NULL. */
static char *read_path(pid_t tid, uint64_t addr)
{
	char *buf = xrealloc(NULL, PATH_READ_MAX);
	size_t have = 0;
	/* A page at a time: a path near the end of a mapping must still be
	 * read, and one read must not cross into an unmapped page. */
	while (have < PATH_READ_MAX - 1) {
		size_t chunk = 4096 - ((addr + have) & 4095);
		if (chunk > PATH_READ_MAX - 1 - have)
			chunk = PATH_READ_MAX - 1 - have;
		struct iovec local = { buf + have, chunk }, remote = { (void *)(uintptr_t)(addr + have), chunk };
		ssize_t n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
		if (n <= 0)
			break;
		if (memchr(buf + have, 0, (size_t)n))
			return buf;
		have += (size_t)n;
	}
	if (have == 0) {
		free(buf);
		return NULL;
	}
	buf[have] = 0;
	return buf;
}

static const char *path_of(struct thread *t, struct sys_state *s, const struct rule *r)
{
	uint8_t arg = r->path_args ? r->path_args[s->nr] : 0;
	if (!arg)
		return NULL;
	if (!s->path)
		s->path = read_path(t->tid, s->args[arg - 1]);
	return s->path;
}

/* strace's when=first..last+step, counted per thread, rule and call. */
static int when_fires(struct sys_state *s, const struct rule *r)
{
	if (!r->first)
		return 1;
	struct when_count *w = NULL;
	for (uint32_t i = 0; i < s->nwhen && !w; i++)
		if (s->when[i].rule == r->id && s->when[i].nr == s->nr)
			w = &s->when[i];
	if (!w) {
		if (s->nwhen == s->when_cap) {
			s->when_cap = s->when_cap ? s->when_cap * 2 : 8;
			s->when = xrealloc(s->when, s->when_cap * sizeof *s->when);
		}
		w = &s->when[s->nwhen++];
		*w = (struct when_count){ .rule = r->id, .nr = s->nr };
	}
	if (w->n < UINT32_MAX)
		w->n++;
	uint32_t n = w->n;
	if (n < r->first || (r->last && n > r->last))
		return 0;
	return r->step ? (n - r->first) % r->step == 0 : n == r->first;
}

static int has_effect(const struct rule *r)
{
	return r->fault || r->signal || r->delay_enter_us || r->delay_exit_us;
}

/* Matches a call at its entry against the rules, in order: each rule
 * that selects it counts it for its when=; the first fault and the first
 * signal due are done, and the longest delays. Returns the entry delay
 * (us). */
static uint32_t match(struct thread *t, struct sys_state *s, const struct process *p)
{
	uint32_t delay_enter = 0;
	const struct ruleset *rs = p->rules;
	for (uint32_t i = 0; rs && i < rs->n; i++) {
		const struct rule *r = &rs->rules[i];
		/* A thread with the engine's filter has its shim apply them. */
		if (!in_force(p, r) || (r->shim && (t->flags & T_ENGINE)) || !in_set(r->set, s->nr) ||
		    !selects_thread(r, t->tid))
			continue;
		if (r->path) {
			const char *path = path_of(t, s, r);
			if (!path || strcmp(path, r->path) != 0)
				continue;
		}
		s->selected = 1;
		if (r->trace && !s->trace) {
			s->trace = r->id;
			path_of(t, s, r); /* for the record */
		}
		if (!has_effect(r) || !when_fires(s, r))
			continue;
		if (r->fault && !s->fault) {
			s->fault = r->fault;
			s->value = r->value;
			s->flags |= TLSD_SYSCALL_INJECTED;
		}
		if (r->signal && !s->signal) {
			s->signal = r->signal;
			s->flags |= TLSD_SYSCALL_SIGNALED;
		}
		if (r->delay_enter_us > delay_enter)
			delay_enter = r->delay_enter_us;
		if (r->delay_exit_us > s->delay_exit_us)
			s->delay_exit_us = r->delay_exit_us;
	}
	if (delay_enter || s->delay_exit_us)
		s->flags |= TLSD_SYSCALL_DELAYED;
	return delay_enter;
}

/* --- Stops ------------------------------------------------------------- */

static void hold(struct thread *t, struct sys_state *s, enum hold why, uint32_t us)
{
	s->hold = why;
	s->wake_ns = now_ns() + (uint64_t)us * 1000u;
	push_tid(&held, &nheld, &held_cap, t->tid);
}

static int64_t fault_result(const struct sys_state *s)
{
	return s->fault == RULE_FAULT_ERROR ? -s->value : s->value;
}

/* What is done at the entry once its delay, if any, is over. Returns the
 * signal to restart the thread with. A process being detached gets
 * nothing more: its call runs as it would have. */
static int finish_entry(struct thread *t, struct sys_state *s)
{
	if (t->flags & T_DETACH) {
		s->fault = 0;
		return 0;
	}
	/* With no call to make (-1), the kernel leaves the result register
	 * as it is: the result is written now, so that the program gets it
	 * even if the tracer dies before the exit stop. */
	if (s->fault && (arch_set_syscall_nr(t->tid, -1) < 0 || arch_set_syscall_result(t->tid, fault_result(s)) < 0))
		s->fault = 0;
	return s->signal;
}

/* Forgets the call before; what the thread counted stays. */
static void new_call(struct sys_state *s, uint16_t nr, uint64_t now)
{
	free(s->path);
	*s = (struct sys_state){
		.in_call = 1, .nr = nr, .entry_ns = now,
		.when = s->when, .nwhen = s->nwhen, .when_cap = s->when_cap,
		.counts = s->counts, .ncounts = s->ncounts, .counts_cap = s->counts_cap,
	};
}

/* Whether a call comes from libtlsshim's code, in a process some of whose
 * rules are its shim's. Its code is looked for in its mappings once per
 * image: the shim's engine is injected at the spawn's exec, before any
 * call of the program (and a forked child has a copy). */
static int from_shim(struct process *p, uint64_t ip)
{
	if (!p->shim_text_read) {
		int wanted = 0;
		for (uint32_t i = 0; p->rules && i < p->rules->n && !wanted; i++)
			wanted = p->rules->rules[i].shim;
		if (!wanted)
			return 0;
		p->shim_text_read = 1;
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/maps", p->pid);
		FILE *maps = fopen(path, "re");
		char line[512];
		while (maps && fgets(line, sizeof line, maps)) {
			unsigned long lo, hi;
			char perms[8];
			/* Injected from a memfd (inject.c). */
			if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x' && strstr(line, "/memfd:tlsshim")) {
				p->shim_text[0] = lo;
				p->shim_text[1] = hi;
			}
		}
		if (maps)
			fclose(maps);
	}
	return ip >= p->shim_text[0] && ip < p->shim_text[1];
}

static int at_entry(struct thread *t, struct sys_state *s, uint64_t nr, const uint64_t args[6], uint64_t ip, int *signal)
{
	if (s->restarting && (nr == s->nr || nr == SYS_restart_syscall)) {
		/* The same call going on after a stop of ours: not a new one. */
		s->restarting = 0;
		return 0;
	}
	new_call(s, (uint16_t)nr, now_ns());
	struct process *p = process_find(t->pid);
	/* A spawned child's own execve, before its program: no rule yet. */
	if (nr >= SYSCALL_NR_MAX || !p || (p->flags & P_SPAWNING)) {
		s->in_call = 0;
		return 0;
	}
	memcpy(s->args, args, sizeof s->args);
	/* The shim's own calls (its start, its agent) are not the program's. */
	if (from_shim(p, ip)) {
		s->in_call = 0;
		return 0;
	}
	uint32_t delay = match(t, s, p);
	if (delay) {
		hold(t, s, HOLD_ENTRY, delay);
		return 1;
	}
	*signal = finish_entry(t, s);
	return 0;
}

/* The execve that made the image the rules came with (a spawn), at its
 * exit: counted as strace counts it; its arguments are gone. 1 when some
 * rule selects it (it is the call in progress now). */
static int exec_call(struct thread *t, struct sys_state *s, uint64_t now)
{
	arch_regs regs;
	s->exec_exit = 0;
	if (arch_get_regs(t->tid, &regs) < 0 || !has_rules(t->pid) || regs.orig_rax >= SYSCALL_NR_MAX)
		return 0;
	new_call(s, (uint16_t)regs.orig_rax, now);
	match(t, s, process_find(t->pid));
	s->fault = 0; /* it has happened: nothing to do to it now */
	s->delay_exit_us = 0;
	return s->in_call;
}

static int is_restart_error(int64_t rval)
{
	return rval <= -512 && rval >= -516; /* ERESTARTSYS .. ERESTART_RESTARTBLOCK */
}

static int at_exit(struct thread *t, struct sys_state *s, const struct __ptrace_syscall_info *info)
{
	uint64_t now = now_ns();
	if (!s->in_call && s->exec_exit && !exec_call(t, s, now))
		return 0;
	if (!s->in_call)
		return 0; /* its entry came before its process had rules */
	int64_t rval = info->exit.rval;
	if ((t->flags & T_KICKED) && is_restart_error(rval)) {
		s->restarting = 1; /* it restarts once we let it go */
		return 0;
	}
	if (s->fault)
		rval = fault_result(s); /* written at the entry */
	end_call(t, s, rval, now);
	if (s->delay_exit_us && !(t->flags & T_DETACH)) {
		hold(t, s, HOLD_EXIT, s->delay_exit_us);
		return 1;
	}
	return 0;
}

int on_syscall_stop(struct thread *t, int *signal)
{
	*signal = 0;
	struct __ptrace_syscall_info info;
	if (ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof info, &info) <= 0)
		return 0;
	struct sys_state *s = state_of(t);
	if (info.op == PTRACE_SYSCALL_INFO_SECCOMP) {
		/* The pre-filter's stop, at the entry; right after a
		 * syscall-entry stop (the thread stops at every call), it is
		 * that same call. */
		if (s->entry_stop) {
			s->entry_stop = 0;
			return 0;
		}
		return at_entry(t, s, info.seccomp.nr, info.seccomp.args, info.instruction_pointer, signal);
	}
	if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
		int held = at_entry(t, s, info.entry.nr, info.entry.args, info.instruction_pointer, signal);
		s->entry_stop = 1;
		return held;
	}
	s->entry_stop = 0;
	return info.op == PTRACE_SYSCALL_INFO_EXIT ? at_exit(t, s, &info) : 0;
}

void note_exec_for_syscalls(struct thread *t)
{
	if (has_rules(t->pid))
		state_of(t)->exec_exit = 1;
}

void syscalls_thread_end(struct thread *t)
{
	struct sys_state *s = t->sys;
	if (!s)
		return;
	if (s->in_call && (s->nr == SYS_exit || s->nr == SYS_exit_group)) {
		/* It never returns: strace shows it `= ?`, and counts it. */
		s->flags |= TLSD_SYSCALL_NO_RETURN;
		end_call(t, s, 0, now_ns());
	}
	send_thread_counts(t);
}

/* --- Changing the rules ------------------------------------------------ */

static void kick(struct thread *t, void *unused)
{
	(void)unused;
	/* Stopped once, it is restarted with the request its process's rules
	 * now ask for (events.c resume). A thread in a stop of ours already
	 * (held, or kept for its owner) is restarted with it anyway. */
	t->flags |= T_KICKED;
	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
}

/* Whether its threads stop at syscalls may have changed: each is
 * stopped once, to be restarted the way it must be now. */
static void mode_changed(struct process *p, int was)
{
	p->prefilter_covers = prefilter_covers(p);
	/* A spawned process not yet at its exec has no stop to change yet. */
	if (was != stops_at_every_call(p) && !(p->flags & P_SPAWNING))
		thread_each_of(p->pid, kick, NULL);
}

void set_rules(uint32_t req, pid_t pid, struct ruleset *rs)
{
	struct process *p = process_find(pid);
	if (!p || (p->flags & (P_DETACHING | P_SILENT))) {
		ruleset_free(rs);
		send_reply((struct reply){ .req = req, .err = ESRCH, .pid = pid });
		return;
	}
	int was = stops_at_every_call(p);
	struct ruleset *before = p->rules;
	p->rules = rs;
	if (tracer_rules_in_force(p) && retake(p)) {
		p->rules = before; /* its rules need it traced, and it cannot be */
		ruleset_free(rs);
		send_reply((struct reply){ .req = req, .err = EBUSY, .pid = pid });
		return;
	}
	ruleset_free(before);
	mode_changed(p, was);
	maybe_release(p);
	send_reply((struct reply){ .req = req, .pid = pid, .threads = thread_count_of(pid) });
}

void hand_off(uint32_t req, pid_t pid)
{
	struct process *p = process_find(pid);
	if (!p || (p->flags & (P_DETACHING | P_SILENT))) {
		send_reply((struct reply){ .req = req, .err = ESRCH, .pid = pid });
		return;
	}
	/* Kept at its exec, whose exit stop the tracer will not see once the
	 * rules are the shim's: its execve (which succeeded) is counted now. */
	struct thread *main_thread = thread_find(pid);
	struct sys_state *s = main_thread ? main_thread->sys : NULL;
	uint64_t now = now_ns();
	if ((p->flags & P_HELD) && s && s->exec_exit && exec_call(main_thread, s, now))
		end_call(main_thread, s, 0, now);
	int was = stops_at_every_call(p);
	p->handed_off = 1;
	mode_changed(p, was);
	maybe_release(p);
	release_held(p); /* its program starts now, the rules in force */
	send_reply((struct reply){ .req = req, .pid = pid, .threads = thread_count_of(pid) });
}

/* --- A spawn kept at its exec ------------------------------------------ */

/* The longest a spawn is kept at its exec for its HANDOFF: a daemon that
 * never sends it must not leave the process stopped. */
#define HELD_MAX_NS (10ull * 1000000000u)
static uint32_t nheld_processes; /* at most this many: counted again at each look */

void hold_at_exec(struct process *p)
{
	p->flags |= P_HELD;
	p->held_since_ns = now_ns();
	nheld_processes++;
}

void release_held(struct process *p)
{
	if (!(p->flags & P_HELD))
		return;
	p->flags &= ~P_HELD;
	struct thread *t = thread_find(p->pid);
	if (t)
		resume(t, 0, 0);
}

static void release_if_late(struct process *p, void *now)
{
	if (!(p->flags & P_HELD))
		return;
	if (*(uint64_t *)now - p->held_since_ns < HELD_MAX_NS) {
		nheld_processes++;
		return;
	}
	tlog(TLSD_LOG_WARN, "process %d: no HANDOFF %llu s after its exec; let go, the tracer keeps its rules", p->pid,
	     HELD_MAX_NS / 1000000000u);
	release_held(p);
}

void take_back(pid_t pid)
{
	struct process *p = process_find(pid);
	if (!p)
		return;
	/* The new image is not where the old one's shim was. */
	p->shim_text[0] = p->shim_text[1] = 0;
	p->shim_text_read = 0;
	if (p->handed_off) {
		int was = stops_at_every_call(p);
		p->handed_off = 0;
		mode_changed(p, was);
	}
}

/* --- Delays ------------------------------------------------------------ */

static void wake(struct thread *t)
{
	struct sys_state *s = t->sys;
	int signal = 0;
	if (s->hold == HOLD_ENTRY)
		signal = finish_entry(t, s);
	s->hold = HOLD_NONE;
	resume(t, signal, 0);
}

void syscalls_end_delay(struct thread *t)
{
	if (t->sys && t->sys->hold != HOLD_NONE)
		t->sys->wake_ns = 0;
}

int syscalls_wake(uint64_t now)
{
	uint64_t next = UINT64_MAX;
	uint32_t kept = 0;
	/* Woken threads may be forgotten (a detach): collect first. */
	pid_t due[64];
	uint32_t ndue = 0;
	for (uint32_t i = 0; i < nheld; i++) {
		struct thread *t = thread_find(held[i]);
		if (!t || !t->sys || t->sys->hold == HOLD_NONE)
			continue;
		if (t->sys->wake_ns <= now && ndue < sizeof due / sizeof due[0]) {
			due[ndue++] = t->tid;
			continue;
		}
		if (t->sys->wake_ns < next)
			next = t->sys->wake_ns;
		held[kept++] = held[i];
	}
	nheld = kept;
	for (uint32_t i = 0; i < ndue; i++) {
		struct thread *t = thread_find(due[i]);
		if (t && t->sys)
			wake(t);
	}
	if (ndue == sizeof due / sizeof due[0])
		next = now;
	if (nheld_processes) {
		nheld_processes = 0;
		process_each(release_if_late, &now);
		if (nheld_processes && now + 1000000000u < next)
			next = now + 1000000000u; /* looked at again each second */
	}
	if (ncounting && now - counts_sent_ns >= COUNTS_PERIOD_NS) {
		send_counts(0);
		counts_sent_ns = now;
	}
	if (ncounting) {
		uint64_t at = counts_sent_ns + COUNTS_PERIOD_NS;
		if (at < next)
			next = at;
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)((next - now + 999999u) / 1000000u);
}
