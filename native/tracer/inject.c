/* Injecting libtlsshim (inject.h; docs/shim.md "Injection" tells it for a user).
 *
 * One thread is borrowed; every step is a remote syscall in it or a write
 * into its process, in this order:
 *
 *   1 stub     an anonymous read+exec page: a `syscall; rt_sigreturn` stub
 *              and a signal frame holding the thread's own state
 *   2 memfd    memfd_create("tlsshim"), filled by the tracer through
 *              /proc/PID/fd with the shim's image, relocated for its base
 *   3 map      the image's span reserved from the memfd, each segment
 *              mapped over it with its final protections (never
 *              mprotect(+X): MemoryDenyWriteExecute forbids it)
 *   4 start    the shim's tlsshim_inject_entry called on a stack in its
 *              own .bss (tlsshim_inject_area), under a second frame
 *   5 cleanup  the memfd closed, the stub page unmapped; the thread given
 *              back exactly as it was
 *
 * If the tracer dies, the thread is always at a point from which it
 * restores itself: after each step it waits at the rt_sigreturn of the
 * stub or of the shim's gadget, whose frame holds its registers (in the
 * form in which the kernel restarts the call it was in), its extended
 * state and its signal mask. The one window without that is the first
 * mmap, until the stub is written (microseconds). What can stay behind is
 * the stub page ([anon:tlsshim-stub]) and the shim's mapping
 * (/memfd:tlsshim), both named.
 *
 * A failure before the shim runs undoes every step; a shim that ran stays
 * (its agent thread exists by then). */
#include "inject.h"
#include "syscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/auxvec.h>
#include <linux/memfd.h>
#include <linux/prctl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../shim/inject.h"
#include "../shim/table.h"
#include "protocol.h"
#include "remote.h"
#include "seccomp.h"
#include "shim_image.h"
#include "tracer.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

#define MEMFD_NAME "tlsshim"
#define STUB_NAME "tlsshim-stub"
/* The stub page: code at 0, names at 32 and 64, the frame at 256. */
#define STUB_NAME_AT 32
#define MEMFD_NAME_AT 64
#define STUB_FRAME_AT 256
#define PAGE 4096ull

struct outcome {
	int err;
	int step;          /* enum tlsd_inject_step reached */
	char why[256];
	uint64_t base;
};

static const char *const step_names[] = {
	[TLSD_INJECT_CHECKS] = "checks", [TLSD_INJECT_BORROW] = "borrow", [TLSD_INJECT_STUB] = "stub",
	[TLSD_INJECT_MEMFD] = "memfd", [TLSD_INJECT_IMAGE] = "image", [TLSD_INJECT_MAP] = "map",
	[TLSD_INJECT_START] = "start", [TLSD_INJECT_CLEANUP] = "cleanup", [TLSD_INJECT_DONE] = "done",
};

/* Test hook: TLSD_TRACER_DIE_AT_INJECT_STEP=k:FILE makes the tracer die
 * when an injection reaches step k, its thread at the point where the
 * step begins (test/inject-crash.test.ts). */
static void reached(struct outcome *o, enum tlsd_inject_step s)
{
	o->step = s;
	die_for_test("TLSD_TRACER_DIE_AT_INJECT_STEP", (int)s);
}

static int fail(struct outcome *o, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct outcome *o, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->why, sizeof o->why, fmt, ap);
	va_end(ap);
	o->err = err;
	return -1;
}

/* Whether the thread's seccomp filters let call nr with args through;
 * if not, the outcome says which call and what the filter would do. */
static int allowed(struct borrowed *b, struct outcome *o, const char *what, long nr, const uint64_t args[6],
		   uint64_t ip, const char *needed_by)
{
	char action[32];
	switch (seccomp_check(b->tid, nr, args, ip, action, sizeof action)) {
	case SECCOMP_ALLOWS: return 1;
	case SECCOMP_FORBIDS: return fail(o, EPERM, "its seccomp filter forbids %s (%s)%s", what, action, needed_by), 0;
	default: return fail(o, EPERM, "it has seccomp filters the tracer cannot read"), 0;
	}
}

/* A remote call that must succeed: its result, or -1 with the outcome
 * set. It is run only if the thread's seccomp filters allow it. */
static long must(struct borrowed *b, struct outcome *o, const char *what, long nr, uint64_t a0, uint64_t a1,
		 uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
	const uint64_t args[6] = { a0, a1, a2, a3, a4, a5 };
	if (!allowed(b, o, what, nr, args, b->site, ""))
		return -1;
	long r = remote_syscall(b, nr, a0, a1, a2, a3, a4, a5);
	if (b->gone)
		return fail(o, ESRCH, "the process ended during the injection");
	if (b->fault)
		return fail(o, EFAULT, "%s raised signal %d", what, b->fault);
	if (r < 0 && r > -4096)
		return fail(o, (int)-r, "%s failed: %s", what, strerror((int)-r));
	return r;
}

/* The calls the shim makes once started (tls.c, ipc.c), with the
 * arguments a filter is likely to look at, and the rt_sigreturn a dead
 * tracer leaves to the thread: if a filter forbids one, the shim would
 * fail in the process, or kill it. */
static int check_shim_calls(struct borrowed *b, struct outcome *o)
{
	enum { AF_UNIX_ = 1, SOCK_STREAM_ = 1 }; /* linux/socket.h, linux/net.h */
	static const struct { long nr; const char *name; uint64_t a0, a1, a2; } calls[] = {
		{ SYS_mmap, "mmap", 0, 1, PROT_READ | PROT_WRITE },
		{ SYS_eventfd2, "eventfd2", 0, O_NONBLOCK | O_CLOEXEC, 0 },
		{ SYS_rt_sigprocmask, "rt_sigprocmask", SIG_SETMASK, 0, 0 },
		{ SYS_clone, "clone", CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS, 0, 0 },
		{ SYS_socket, "socket", AF_UNIX_, SOCK_STREAM_ | O_CLOEXEC, 0 },
		{ SYS_connect, "connect", 0, 0, 0 },
		{ SYS_poll, "poll", 0, 2, (uint64_t)-1 },
		{ SYS_read, "read", 0, 0, 0 },
		{ SYS_write, "write", 0, 0, 0 },
		{ SYS_close, "close", 0, 0, 0 },
		{ SYS_exit, "exit", 0, 0, 0 },
		{ SYS_gettid, "gettid", 0, 0, 0 },
		{ SYS_rt_sigreturn, "rt_sigreturn", 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
		const uint64_t args[6] = { calls[i].a0, calls[i].a1, calls[i].a2 };
		if (!allowed(b, o, calls[i].name, calls[i].nr, args, 0, ", which the shim needs"))
			return -1;
	}
	return 0;
}

/* 1: the stub page, mapped through whatever `syscall` the process has.
 * Its address, or 0 with the outcome set (and nothing left mapped). */
static uint64_t map_stub(struct borrowed *b, struct outcome *o, uint64_t *stub_len)
{
	size_t frame = arch_sigframe_size(&b->xstate);
	*stub_len = (STUB_FRAME_AT + frame + PAGE - 1) & ~(PAGE - 1);
	if (remote_find_site(b) < 0) {
		fail(o, ENOEXEC, "it has no syscall instruction to start from");
		return 0;
	}
	uint64_t first_site = b->site;
	long stub = must(b, o, "mmap", SYS_mmap, 0, *stub_len, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
			 (uint64_t)-1, 0);
	if (stub < 0)
		return 0;
	/* Its contents go in through /proc/PID/mem, which writes pages the
	 * process itself may only read and execute. */
	uint8_t *page = calloc(1, *stub_len);
	if (!page)
		abort();
	memcpy(page, ARCH_SIGRETURN_STUB, ARCH_SIGRETURN_STUB_LEN);
	memcpy(page + STUB_NAME_AT, STUB_NAME, sizeof STUB_NAME);
	memcpy(page + MEMFD_NAME_AT, MEMFD_NAME, sizeof MEMFD_NAME);
	arch_regs restart = arch_restart_form(&b->saved);
	struct arch_sigframe_sp sp;
	uint64_t sigreturn_pc = (uint64_t)stub + ARCH_SYSCALL_INSN_LEN;
	int built = arch_build_sigframe(page + STUB_FRAME_AT, (uint64_t)stub + STUB_FRAME_AT, &restart, &b->xstate,
					b->sigmask, sigreturn_pc, &sp) == 0;
	int written = built && remote_write(b->pid, (uint64_t)stub, page, *stub_len) == 0;
	free(page);
	b->site = (uint64_t)stub;
	b->site_sp = sp.sigreturn_sp;
	b->sigreturn_pc = sigreturn_pc;
	if (!written || remote_park(b) < 0 || remote_block_signals(b) < 0) {
		/* The unmap runs where the mmap did, not in a stub unwritten. */
		b->site = first_site;
		b->site_sp = 0;
		if (!b->gone)
			remote_syscall(b, SYS_munmap, (uint64_t)stub, *stub_len, 0, 0, 0, 0);
		fail(o, b->gone ? ESRCH : EFAULT, "cannot write the stub page");
		return 0;
	}
	/* Named, so that /proc/PID/maps shows it (best effort: the kernel may
	 * lack CONFIG_ANON_VMA_NAME, or a filter refuse prctl). */
	const uint64_t args[6] = { PR_SET_VMA, PR_SET_VMA_ANON_NAME, (uint64_t)stub, *stub_len,
				   (uint64_t)stub + STUB_NAME_AT };
	struct outcome ignored = { 0 };
	if (allowed(b, &ignored, "prctl", SYS_prctl, args, b->site, ""))
		remote_syscall(b, SYS_prctl, args[0], args[1], args[2], args[3], args[4], 0);
	return (uint64_t)stub;
}

uint64_t stub_map(struct borrowed *b, uint64_t *len, int *err, char *why, size_t why_len)
{
	struct outcome o = { 0 };
	uint64_t stub = map_stub(b, &o, len);
	if (!stub) {
		*err = o.err;
		snprintf(why, why_len, "%s", o.why);
	}
	return stub;
}

/* 2: the memfd, and the tracer's own descriptor of it. */
static long make_memfd(struct borrowed *b, struct outcome *o, uint64_t stub, int *local)
{
	/* vm.memfd_noexec=2 refuses a memfd without MFD_NOEXEC_SEAL; mapping
	 * one PROT_EXEC still works (seen on Linux 6.18). Kernels before 6.3 do not
	 * know the flag. */
	long fd = must(b, o, "memfd_create", SYS_memfd_create, stub + MEMFD_NAME_AT, MFD_CLOEXEC | MFD_NOEXEC_SEAL,
		       0, 0, 0, 0);
	if (fd < 0 && o->err == EINVAL)
		fd = must(b, o, "memfd_create", SYS_memfd_create, stub + MEMFD_NAME_AT, MFD_CLOEXEC, 0, 0, 0, 0);
	if (fd < 0)
		return -1;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd/%ld", b->pid, fd);
	*local = open(path, O_RDWR | O_CLOEXEC);
	if (*local < 0)
		fail(o, errno, "cannot open its memfd: %s", strerror(errno));
	return fd;
}

static int write_all(int fd, const uint8_t *bytes, size_t len)
{
	for (size_t at = 0; at < len;) {
		ssize_t n = pwrite(fd, bytes + at, len - at, (off_t)at);
		if (n <= 0)
			return -1;
		at += (size_t)n;
	}
	return 0;
}

/* The call's context and the frame the entry returns through, in the
 * shim's area (RW memory of its own). */
static int prepare_call(struct borrowed *b, const struct shim_image *im, uint64_t base,
			const struct inject_request *q, struct outcome *o, struct arch_sigframe_sp *sp)
{
	uint64_t area = base + im->area;
	size_t frame = arch_sigframe_size(&b->xstate);
	uint64_t frame_at = (area + TLSSHIM_INJECT_AREA - frame) & ~63ull;
	if (frame_at < area + sizeof(struct tlsshim_inject) + INJECT_MIN_CALL_STACK)
		return fail(o, ENOSPC, "its extended register state (%zu bytes) does not fit the shim's area", b->xstate.len);
	struct tlsshim_inject call = {
		.version = TLSSHIM_INJECT_VERSION,
		.result = TLSSHIM_INJECT_NOT_RUN,
		.context = { .version = TLSSHIM_VERSION, .mode = q->mode, .slot_count = q->slot_count,
			     .slot_bytes = q->slot_bytes, .hwcap2 = auxv_value(b->pid, AT_HWCAP2) },
	};
	if (strlen(q->socket_path) >= sizeof call.socket_path)
		return fail(o, ENAMETOOLONG, "the shim socket's path is too long");
	strcpy(call.socket_path, q->socket_path);
	memcpy(call.trap, q->trap, sizeof call.trap);
	call.context.socket_path = (const char *)(uintptr_t)(area + offsetof(struct tlsshim_inject, socket_path));
	uint8_t *f = malloc(frame);
	if (!f)
		abort();
	arch_regs restart = arch_restart_form(&b->saved);
	int ok = arch_build_sigframe(f, frame_at, &restart, &b->xstate, b->sigmask, base + im->sigreturn, sp) == 0 &&
		 remote_write(b->pid, frame_at, f, frame) == 0 && remote_write(b->pid, area, &call, sizeof call) == 0;
	free(f);
	return ok ? 0 : fail(o, EFAULT, "cannot write the shim's call frame");
}

/* 3 and 4, once the stub is in place; undoes its own steps on failure. */
static int load_and_start(struct borrowed *b, const struct shim_image *im, const struct inject_request *q,
			  uint64_t stub, struct outcome *o)
{
	reached(o, TLSD_INJECT_MEMFD);
	int local = -1;
	long fd = make_memfd(b, o, stub, &local);
	if (fd < 0)
		return -1;
	long base = -1;
	uint8_t *img = NULL;
	if (local < 0 || ftruncate(local, (off_t)im->span) < 0) {
		if (!o->err)
			fail(o, errno, "cannot size its memfd: %s", strerror(errno));
		goto undo;
	}
	/* The whole span mapped read-only from the memfd itself: every page
	 * of it is named /memfd:tlsshim in /proc/PID/maps, and the read-only
	 * segments and RELRO are in place at once (each is at its address's
	 * offset in the image); only the others are mapped over it. */
	base = must(b, o, "mmap", SYS_mmap, 0, im->span, PROT_READ, MAP_PRIVATE, (uint64_t)fd, 0);
	if (base < 0)
		goto undo;
	reached(o, TLSD_INJECT_IMAGE);
	img = shim_image_build(im, (uint64_t)base);
	if (write_all(local, img, im->span) < 0) {
		fail(o, errno, "cannot write the shim into its memfd: %s", strerror(errno));
		goto undo;
	}
	reached(o, TLSD_INJECT_MAP);
	for (int i = 0; i < im->nseg; i++) {
		const struct shim_segment *s = &im->seg[i];
		uint64_t from = s->start;
		if (im->relro_start <= from && from < im->relro_end)
			from = im->relro_end; /* RELRO stays read-only */
		if (s->prot == PROT_READ || from >= s->end)
			continue;
		if (must(b, o, "mmap", SYS_mmap, (uint64_t)base + from, s->end - from, (uint64_t)s->prot,
			 MAP_PRIVATE | MAP_FIXED, (uint64_t)fd, from) < 0)
			goto undo;
	}
	struct arch_sigframe_sp sp;
	if (prepare_call(b, im, (uint64_t)base, q, o, &sp) < 0)
		goto undo;
	/* From here on remote calls run at the shim's gadget, under the frame
	 * in its area: the stub page can go. */
	b->site = (uint64_t)base + im->gadget;
	b->sigreturn_pc = (uint64_t)base + im->sigreturn;
	b->site_sp = sp.sigreturn_sp;
	close(local);
	free(img);
	reached(o, TLSD_INJECT_START);
	/* Once the entry runs, the shim stays: its agent may exist. */
	int err = remote_park(b) < 0 ? -ESRCH : remote_call(b, (uint64_t)base + im->entry, sp.call_sp,
							     (uint64_t)base + im->area, (uint64_t)base + im->sigreturn);
	int32_t result = TLSSHIM_INJECT_NOT_RUN;
	remote_read(b->pid, (uint64_t)base + im->area + offsetof(struct tlsshim_inject, result), &result, sizeof result);
	o->base = (uint64_t)base;
	reached(o, TLSD_INJECT_CLEANUP);
	if (!b->gone)
		remote_syscall(b, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0);
	if (err)
		return fail(o, -err, err == -EFAULT ? "the shim's start raised signal %d" : "the shim's start failed",
			    b->fault);
	if (result != 0)
		return fail(o, EIO, "the shim did not start (tlsshim_start returned %d)", result);
	return 0;
undo:
	free(img);
	if (local >= 0)
		close(local);
	if (!b->gone) {
		if (base >= 0)
			remote_syscall(b, SYS_munmap, (uint64_t)base, im->span, 0, 0, 0, 0);
		remote_syscall(b, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0);
	}
	return -1;
}

/* What a tracer killed during an injection can leave in the process:
 * the stub page, and a shim that never started. A shim that started (its
 * entry wrote its result) is in use, and stays. */
struct leftover {
	uint64_t start, end;
	int started;
};
#define MAX_LEFTOVERS 8

/* A stub page, by its name or, where the kernel cannot name anonymous
 * memory (no CONFIG_ANON_VMA_NAME: prctl says EINVAL), by its contents: an
 * anonymous read+execute mapping that starts with the stub and its names. */
static int is_stub(pid_t pid, const char *line, uint64_t start)
{
	if (strstr(line, "[anon:" STUB_NAME "]"))
		return 1;
	char perms[8], name[16] = "";
	unsigned long long offset, inode;
	if (sscanf(line, "%*x-%*x %7s %llx %*s %llu %15s", perms, &offset, &inode, name) < 3 ||
	    strcmp(perms, "r-xp") || offset || inode || name[0])
		return 0;
	uint8_t head[MEMFD_NAME_AT + sizeof MEMFD_NAME];
	return remote_read(pid, start, head, sizeof head) == 0 &&
	       !memcmp(head, ARCH_SIGRETURN_STUB, ARCH_SIGRETURN_STUB_LEN) &&
	       !memcmp(head + STUB_NAME_AT, STUB_NAME, sizeof STUB_NAME) &&
	       !memcmp(head + MEMFD_NAME_AT, MEMFD_NAME, sizeof MEMFD_NAME);
}

/* Each stub page and each /memfd:tlsshim span (its mappings from offset 0
 * on, one after the other). */
static int find_leftovers(pid_t pid, const struct shim_image *im, struct leftover *out)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	int n = 0, in_span = 0;
	while (n < MAX_LEFTOVERS && fgets(line, sizeof line, f)) {
		/* A line per thread stack in a big process: most are passed over
		 * on a look at their name and permissions. */
		int shim = strstr(line, "/memfd:" MEMFD_NAME " ") != NULL;
		unsigned long long start, end, offset;
		if ((!shim && !strstr(line, " r-xp ")) || sscanf(line, "%llx-%llx %*s %llx", &start, &end, &offset) != 3) {
			in_span = 0;
			continue;
		}
		if (shim && in_span && offset && out[n - 1].end == start) {
			out[n - 1].end = end;
		} else if (shim && !offset) {
			out[n++] = (struct leftover){ start, end, 0 };
		} else if (!shim && is_stub(pid, line, start)) {
			out[n++] = (struct leftover){ start, end, 0 };
		}
		in_span = shim;
	}
	fclose(f);
	for (int i = 0; i < n; i++) {
		struct tlsshim_inject call = { 0 };
		uint64_t area = out[i].start + im->area;
		int is_shim = out[i].end - out[i].start >= im->span;
		/* The entry writes its result over TLSSHIM_INJECT_NOT_RUN; before
		 * the call was prepared the area is .bss, zero. Unreadable: kept. */
		out[i].started = is_shim && (remote_read(pid, area, &call, sizeof call) < 0 ||
					     (call.version == TLSSHIM_INJECT_VERSION && call.result != TLSSHIM_INJECT_NOT_RUN));
	}
	return n;
}

static int count_started(const struct leftover *l, int n)
{
	int started = 0;
	for (int i = 0; i < n; i++)
		started += l[i].started;
	return started;
}

/* Unmaps the leftovers nobody uses, through the stub. Returns how many. */
static int remove_leftovers(struct borrowed *b, const struct leftover *l, int n)
{
	int removed = 0;
	for (int i = 0; i < n && !b->gone; i++)
		if (!l[i].started)
			removed += remote_syscall(b, SYS_munmap, l[i].start, l[i].end - l[i].start, 0, 0, 0, 0) == 0;
	return removed;
}

/* Injects through b; `left` are the leftovers of earlier injections,
 * found before the thread was stopped (reading /proc/PID/maps takes
 * milliseconds in a process of thousands of threads), none started. */
static void inject(struct borrowed *b, const struct shim_image *im, const struct inject_request *q,
		   struct leftover *left, int nleft, struct outcome *o)
{
	if (check_shim_calls(b, o) < 0)
		return;
	reached(o, TLSD_INJECT_STUB);
	uint64_t stub_len;
	uint64_t stub = map_stub(b, o, &stub_len);
	if (!stub)
		return;
	remove_leftovers(b, left, nleft);
	int started = load_and_start(b, im, q, stub, o) == 0 || o->base;
	/* Unmapped from the shim's gadget when there is one; else from the
	 * stub itself, the last thing it runs (the thread then goes
	 * straight back to its own registers). */
	if (!b->gone)
		remote_syscall(b, SYS_munmap, stub, stub_len, 0, 0, 0, 0);
	if (!b->gone && started)
		remote_park(b);
	if (!o->err)
		reached(o, TLSD_INJECT_DONE);
}

/* A shadow stack (CET) makes the kernel check every return and every
 * rt_sigreturn against it: the entry's return and the frame's restore
 * token are not there, so such a thread cannot be borrowed. */
static int uses_shadow_stack(pid_t pid)
{
	char path[64], text[4096];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	text[n > 0 ? n : 0] = 0;
	const char *line = strstr(text, "\nx86_Thread_features:");
	const char *end = line ? strchr(line + 1, '\n') : NULL;
	const char *hit = line ? strstr(line, "shstk") : NULL;
	return hit && (!end || hit < end);
}

static void send_outcome(uint32_t req, pid_t pid, const struct borrowed *b, const struct outcome *o)
{
	send_injected(req, o->err, pid, b ? b->tid : 0, o->base, b && b->restarted_ns ? b->restarted_ns - b->stopped_ns : 0,
		      b ? b->interrupted : 0, (uint8_t)o->step, o->err ? o->why : "");
	if (o->err)
		tlog(TLSD_LOG_INFO, "injection into %d stopped at %s: %s", pid, step_names[o->step], o->why);
}

/* How many times a thread is borrowed again after a signal came for it
 * before its first remote call (remote_syscall, -EINTR). */
#define MAX_BORROWS 4

int has_trap(const struct inject_request *q)
{
	for (size_t i = 0; i < sizeof q->trap; i++)
		if (q->trap[i])
			return 1;
	return 0;
}

/* Borrows a thread of pid (the first time at its exec stop, when
 * `at_exec`) and injects through it; b is given back. 0, or -1 with the
 * outcome set. */
static int borrow_and_inject(pid_t pid, int at_exec, const struct inject_request *q, struct borrowed *b,
			     struct outcome *o)
{
	struct shim_image im;
	if (shim_image_load(q->shim_path, &im, o->why, sizeof o->why) < 0) {
		shim_image_free(&im);
		if (at_exec)
			ptrace(PTRACE_CONT, pid, 0, 0); /* killed by the caller */
		o->err = EINVAL;
		return -1;
	}
	struct leftover left[MAX_LEFTOVERS];
	int nleft = find_leftovers(pid, &im, left);
	if (count_started(left, nleft)) {
		shim_image_free(&im);
		return fail(o, EEXIST, "process %d has the shim already (injected before)", pid);
	}
	for (int attempt = 0;; attempt++) {
		*o = (struct outcome){ 0 };
		reached(o, TLSD_INJECT_BORROW);
		int err = at_exec && !attempt ? borrow_at_exec(pid, b) : borrow_thread(pid, b);
		if (err) {
			b->tid = 0;
			fail(o, -err, err == -EAGAIN ? "process %d is stopped (SIGSTOP); send it SIGCONT first"
				      : err == -ENOEXEC ? "process %d is not a 64-bit program"
							: "process %d has no thread to borrow", pid);
			break;
		}
		inject(b, &im, q, left, nleft, o);
		/* A spawn whose engine started waits at its exec for its rules. */
		b->hold = at_exec && !o->err && has_trap(q);
		give_back(b);
		if (!(o->err == EINTR && b->released) || attempt + 1 == MAX_BORROWS)
			break;
	}
	shim_image_free(&im);
	return o->err ? -1 : 0;
}

void inject_process(uint32_t req, pid_t pid, const struct inject_request *q)
{
	struct outcome o = { 0 };
	struct borrowed b = { 0 };
	struct process *p = process_find(pid);
	if (!p || (p->flags & (P_ATTACHING | P_SPAWNING | P_DETACHING | P_SILENT)))
		fail(&o, ESRCH, "process %d is not supervised", pid);
	else if (p->shim.table)
		fail(&o, EEXIST, "process %d has the shim already", pid);
	else if (uses_shadow_stack(pid))
		fail(&o, ENOEXEC, "process %d uses a shadow stack (CET), which the loader does not support", pid);
	else
		borrow_and_inject(pid, 0, q, &b, &o);
	send_outcome(req, pid, b.tid ? &b : NULL, &o);
}

void inject_at_exec(struct process *p)
{
	struct outcome o = { 0 };
	struct borrowed b = { 0 };
	borrow_and_inject(p->pid, 1, p->inject, &b, &o);
	send_outcome(p->req, p->pid, b.tid ? &b : NULL, &o);
	if (o.err && !b.gone)
		kill(p->pid, SIGKILL); /* before a single instruction of its own */
	else if (b.hold && !b.gone)
		hold_at_exec(p);
	inject_request_free(p->inject);
	p->inject = NULL;
}

void tidy_process(uint32_t req, pid_t pid, const char *shim_path)
{
	struct reply r = { .req = req, .pid = pid };
	struct outcome o = { 0 };
	struct shim_image im = { 0 };
	struct leftover left[MAX_LEFTOVERS];
	int n = 0;
	if (!process_find(pid))
		r.err = ESRCH;
	else if (shim_image_load(shim_path, &im, o.why, sizeof o.why) < 0)
		r.err = EINVAL;
	else
		n = find_leftovers(pid, &im, left);
	if (n > count_started(left, n)) {
		struct borrowed b;
		int err = borrow_thread(pid, &b);
		uint64_t stub_len, stub = err ? 0 : map_stub(&b, &o, &stub_len);
		if (stub) {
			r.threads = (uint32_t)remove_leftovers(&b, left, n);
			remote_syscall(&b, SYS_munmap, stub, stub_len, 0, 0, 0, 0);
		}
		if (!err)
			give_back(&b);
		r.err = err ? -err : o.err;
	}
	r.passes = (uint32_t)count_started(left, n);
	shim_image_free(&im);
	send_reply(r);
}

struct inject_request *inject_request_copy(const struct inject_request *q)
{
	struct inject_request *c = malloc(sizeof *c);
	if (!c)
		abort();
	*c = *q;
	c->shim_path = strdup(q->shim_path);
	c->socket_path = strdup(q->socket_path);
	if (!c->shim_path || !c->socket_path)
		abort();
	return c;
}

void inject_request_free(struct inject_request *q)
{
	if (!q)
		return;
	free(q->shim_path);
	free(q->socket_path);
	free(q);
}
