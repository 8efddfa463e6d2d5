/* The daemon's commands (protocol.h): read from its socket, decoded, and
 * run. A command whose fields do not parse is answered EINVAL and changes
 * nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "inject.h"
#include "protocol.h"
#include "shim.h"
#include "syscalls.h"
#include "tracer.h"

/* The receive buffer grows in steps of at least this much: one read takes
 * what the socket holds, up to the buffer's room, and a SETTLE of 10,000
 * threads is 120 KB. It grows to whatever the largest frame needs. */
#define READ_ROOM (64u * 1024)

static char **read_strings(struct frame *f)
{
	uint32_t n = in_u32(f);
	if (f->bad || n > (uint32_t)(f->end - f->p) / 4)
		return f->bad = 1, NULL;
	char **v = calloc((size_t)n + 1, sizeof *v);
	if (!v)
		abort();
	for (uint32_t i = 0; i < n && !f->bad; i++)
		v[i] = in_str(f);
	return v;
}

static void free_strings(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static int run_attach(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	if (f->bad || pid <= 0)
		return -1;
	attach_process(req, pid);
	return 0;
}

/* u8 shim_mode, u32 slot_count, u32 slot_bytes, str shim_path,
 * str shim_socket, str trap: in INJECT and SPAWN alike. */
static struct inject_request read_inject_request(struct frame *f)
{
	struct inject_request q = { .mode = in_u8(f), .slot_count = in_u32(f), .slot_bytes = in_u32(f) };
	q.shim_path = in_str(f);
	q.socket_path = in_str(f);
	uint32_t n = in_u32(f);
	if (n == sizeof q.trap && (size_t)(f->end - f->p) >= n) {
		memcpy(q.trap, f->p, n);
		f->p += n;
	} else if (n) {
		f->bad = 1;
	}
	return q;
}

static int run_inject(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	struct inject_request q = read_inject_request(f);
	/* The engine starts only at a spawn's exec, in its only thread. */
	int ok = !f->bad && pid > 0 && q.mode && q.shim_path && q.socket_path && !has_trap(&q);
	if (ok)
		inject_process(req, pid, &q);
	free(q.shim_path);
	free(q.socket_path);
	return ok ? 0 : -1;
}

static int run_tidy(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	char *shim_path = in_str(f);
	int ok = !f->bad && pid > 0 && shim_path;
	if (ok)
		tidy_process(req, pid, shim_path);
	free(shim_path);
	return ok ? 0 : -1;
}

static int run_spawn(struct frame *f, uint32_t req)
{
	char *path = in_str(f);
	char **argv = read_strings(f);
	char **envp = read_strings(f);
	char *cwd = in_str(f), *out_path = in_str(f), *err_path = in_str(f);
	struct inject_request q = read_inject_request(f);
	uint8_t kill_with_daemon = in_u8(f);
	struct ruleset *rules = ruleset_read(f);
	int ok = !f->bad && argv && argv[0];
	if (ok)
		spawn_process(req, path, argv, envp, cwd, out_path, err_path, q.mode ? &q : NULL, rules, kill_with_daemon);
	else
		ruleset_free(rules);
	free(q.shim_path);
	free(q.socket_path);
	free(path);
	free_strings(argv);
	free_strings(envp);
	free(cwd);
	free(out_path);
	free(err_path);
	return ok ? 0 : -1;
}

static int run_detach(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	uint8_t kill_it = in_u8(f);
	uint8_t keep_children = in_u8(f);
	if (f->bad)
		return -1;
	detach_process(req, pid, kill_it, keep_children);
	return 0;
}

static int run_refresh(struct frame *f, uint32_t req)
{
	pid_t tid = (pid_t)in_u32(f);
	if (f->bad)
		return -1;
	refresh_fs_base(req, tid);
	return 0;
}

static int run_shim(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	uint64_t table = in_u64(f);
	if (f->bad)
		return -1;
	struct process *p = process_find(pid);
	int err = !p ? ESRCH : shim_adopt(p, table) ? EINVAL : 0;
	send_reply((struct reply){ .req = req, .err = err, .pid = pid });
	return 0;
}

/* Each settled thread is a u32 tid and a u64 FS base. */
#define SETTLED_BYTES 12u

static int run_settle(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	uint32_t n = in_u32(f);
	if (f->bad || n > (uint32_t)(f->end - f->p) / SETTLED_BYTES)
		return -1;
	uint32_t *tids = malloc(((size_t)n + 1) * sizeof *tids);
	uint64_t *fs_bases = malloc(((size_t)n + 1) * sizeof *fs_bases);
	if (!tids || !fs_bases)
		abort();
	for (uint32_t i = 0; i < n; i++) {
		tids[i] = in_u32(f);
		fs_bases[i] = in_u64(f);
	}
	settle_attach(req, pid, tids, fs_bases, n);
	free(tids);
	free(fs_bases);
	return 0;
}

static int run_rules(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	struct ruleset *rules = ruleset_read(f);
	if (f->bad || pid <= 0 || f->p != f->end) {
		ruleset_free(rules);
		return -1;
	}
	set_rules(req, pid, rules);
	return 0;
}

static int run_counts(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	if (f->bad)
		return -1;
	send_counts_of(req, pid);
	return 0;
}

static int run_handoff(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	if (f->bad)
		return -1;
	hand_off(req, pid);
	return 0;
}

static int run_engine(struct frame *f, uint32_t req)
{
	pid_t pid = (pid_t)in_u32(f);
	char *shim_path = in_str(f);
	uint8_t trap[64];
	uint32_t n = in_u32(f);
	int ok = !f->bad && pid > 0 && shim_path && n == sizeof trap && (size_t)(f->end - f->p) >= n;
	if (ok) {
		memcpy(trap, f->p, n);
		f->p += n;
		engine_start_process(req, pid, shim_path, trap);
	}
	free(shim_path);
	return ok ? 0 : -1;
}

/* Each takes the fields after type and req; -1: they do not parse. */
static int (*const commands[])(struct frame *, uint32_t) = {
	[TLSD_CMD_ATTACH] = run_attach,
	[TLSD_CMD_SPAWN] = run_spawn,
	[TLSD_CMD_DETACH] = run_detach,
	[TLSD_CMD_REFRESH] = run_refresh,
	[TLSD_CMD_SHIM] = run_shim,
	[TLSD_CMD_SETTLE] = run_settle,
	[TLSD_CMD_INJECT] = run_inject,
	[TLSD_CMD_TIDY] = run_tidy,
	[TLSD_CMD_RULES] = run_rules,
	[TLSD_CMD_COUNTS] = run_counts,
	[TLSD_CMD_HANDOFF] = run_handoff,
	[TLSD_CMD_ENGINE] = run_engine,
};

static void run_command(const uint8_t *body, size_t len)
{
	struct frame f = { body, body + len, 0 };
	uint8_t type = in_u8(&f);
	uint32_t req = in_u32(&f);
	int (*run)(struct frame *, uint32_t) = type < sizeof commands / sizeof commands[0] ? commands[type] : NULL;
	if (!f.bad && run && run(&f, req) == 0)
		return;
	tlog(TLSD_LOG_WARN, "malformed command of type %u", type);
	send_reply((struct reply){ .req = req, .err = EINVAL });
}

int read_commands(int fd)
{
	static uint8_t *buf;
	static size_t len, cap;
	for (;;) {
		if (cap - len < READ_ROOM) {
			cap = cap ? cap * 2 : 2 * READ_ROOM;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		len += (size_t)n;
	}
	size_t at = 0;
	while (len - at >= 4) {
		uint32_t size;
		memcpy(&size, buf + at, 4);
		if (size == 0 || size > TLSD_MAX_FRAME)
			return -1;
		if (len - at - 4 < size)
			break;
		run_command(buf + at + 4, size);
		at += 4 + (size_t)size;
	}
	memmove(buf, buf + at, len - at);
	len -= at;
	return 0;
}
