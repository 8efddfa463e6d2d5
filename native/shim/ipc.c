/* The shim's side of its IPC with tlsd (protocol: one JSON object per
 * line, each way; see daemon/shim/server.ts for the daemon's side).
 *
 *   shim -> tlsd: {"type":"hello",...} once, then {"type":"slot",...} as
 *                 threads claim and release slots, and answers;
 *   tlsd -> shim: {"type":"ping","id":N} and {"type":"stats","id":N}.
 *
 * An agent thread does all of it: made with a raw clone (no libc to ask),
 * on its own stack and thread pointer, with every signal blocked for its
 * whole life (a Go host's handlers abort on a foreign thread), ending
 * with __NR_exit, never exit_group. When tlsd is gone the agent ends and
 * the shim works on without it. */
#include "ipc.h"
#include "engine.h"
#include "mem.h"
#include "ring.h"
#include "sys.h"

#include <asm/poll.h>    /* struct pollfd, POLLIN */
#include <linux/sched.h>  /* CLONE_* */

/* Constants the kernel exports to libc's headers only (<sys/socket.h>,
 * <sys/eventfd.h>), as the kernel defines them: include/linux/socket.h,
 * include/linux/net.h, include/linux/eventfd.h. */
#define AF_UNIX 1
#define SOCK_STREAM 1
#define SOCK_CLOEXEC O_CLOEXEC
#define EFD_CLOEXEC O_CLOEXEC
#define EFD_NONBLOCK O_NONBLOCK

#define AGENT_STACK (64 * 1024)
#define AGENT_TLS 4096
#define RING 1024 /* a power of two */

struct event {
	uint64_t published; /* the event's sequence number + 1 once filled */
	uint32_t kind, slot;
	uint64_t key, tid;
};

static struct tlsshim_table *table;
static char socket_path[108]; /* sockaddr_un.sun_path */
static int agent_running;
static struct event ring[RING];
static uint64_t ring_head; /* next sequence number to reserve */
static uint64_t ring_tail; /* next to send; the agent's alone */
static uint64_t dropped;
/* The agent sleeps in poll() until tlsd writes or an event is published;
 * a publisher that finds it asleep wakes it through this eventfd, so an
 * event reaches tlsd at once and an idle agent costs no wake-ups. */
static int wake_fd = -1;
static int agent_asleep;

static int event_published(uint64_t seq)
{
	return __atomic_load_n(&ring[seq & (RING - 1)].published, __ATOMIC_ACQUIRE) == seq + 1;
}

void ipc_event(enum shim_event_kind kind, uint32_t slot, uint64_t key, uint64_t tid)
{
	uint64_t seq;
	if (!__atomic_load_n(&agent_running, __ATOMIC_ACQUIRE) || !ring_reserve(&ring_head, &ring_tail, RING, &dropped, &seq)) return;
	struct event *e = &ring[seq & (RING - 1)];
	e->kind = kind;
	e->slot = slot;
	e->key = key;
	e->tid = tid;
	__atomic_store_n(&e->published, seq + 1, __ATOMIC_RELEASE);
	/* ipc_wake's fence pairs with the agent's before it sleeps: either
	 * it sees this event, or this thread sees it asleep. */
	ipc_wake();
}

/* Wakes the agent if it sleeps: something is published (engine.c). */
void ipc_wake(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&agent_asleep, __ATOMIC_RELAXED)) {
		uint64_t one = 1;
		sys3(__NR_write, wake_fd, &one, sizeof one);
	}
}

int ipc_connected(void) { return __atomic_load_n(&agent_running, __ATOMIC_ACQUIRE); }

/* The engine needs the agent for good (engine_make_call): once held, an
 * agent whose tlsd is gone stays, and makes those calls. 0 when held;
 * -1 when the agent has ended already. */
static int agent_held, agent_ended;
int ipc_hold_agent(void)
{
	__atomic_store_n(&agent_held, 1, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&agent_ended, __ATOMIC_SEQ_CST) ? -1 : 0;
}

/* --- a line of JSON, built without printf --- */

struct line {
	char text[2048];
	uint32_t length;
};

static void put(struct line *l, const char *s)
{
	while (*s && l->length < sizeof l->text - 2) l->text[l->length++] = *s++;
}

static void put_decimal(struct line *l, uint64_t v)
{
	char digits[24];
	int n = 0;
	do digits[n++] = (char)('0' + v % 10); while ((v /= 10) && n < 24);
	while (n && l->length < sizeof l->text - 2) l->text[l->length++] = digits[--n];
}

static void put_hex(struct line *l, uint64_t v)
{
	char digits[16];
	int n = 0;
	do digits[n++] = "0123456789abcdef"[v & 15]; while ((v >>= 4) && n < 16);
	put(l, "\"0x");
	while (n && l->length < sizeof l->text - 2) l->text[l->length++] = digits[--n];
	put(l, "\"");
}

/* Writes the whole line; -1 when tlsd is gone. */
static int send_line(int fd, struct line *l)
{
	l->text[l->length++] = '\n';
	for (uint32_t at = 0; at < l->length;) {
		long n = sys3(__NR_write, fd, l->text + at, l->length - at);
		if (n == -EINTR) continue;
		if (n <= 0) return -1;
		at += (uint32_t)n;
	}
	return 0;
}

static uint32_t slots_in_use(void)
{
	uint32_t used = 0;
	const char *slots = (const char *)table + table->slots_offset;
	for (uint32_t i = 0; i < table->slot_count; i++) {
		uint64_t k = __atomic_load_n((const uint64_t *)(slots + (uint64_t)i * table->slot_stride), __ATOMIC_RELAXED);
		used += k != SLOT_EMPTY && k != SLOT_FREE;
	}
	return used;
}

static int send_hello(int fd)
{
	struct line l = { .length = 0 };
	put(&l, "{\"type\":\"hello\",\"protocol\":1,\"pid\":");
	put_decimal(&l, table->pid);
	put(&l, ",\"shimVersion\":");
	put_decimal(&l, TLSSHIM_VERSION);
	put(&l, table->mode == TLSSHIM_MODE_TID ? ",\"mode\":\"tid\"" : ",\"mode\":\"thread-pointer\"");
	put(&l, ",\"table\":");
	put_hex(&l, (uint64_t)(uintptr_t)table);
	put(&l, ",\"slotCount\":");
	put_decimal(&l, table->slot_count);
	put(&l, ",\"slotBytes\":");
	put_decimal(&l, table->slot_bytes);
	put(&l, ",\"variables\":");
	put_decimal(&l, ALLOC_VARS(__atomic_load_n(&table->allocation, __ATOMIC_ACQUIRE)));
	put(&l, "}");
	return send_line(fd, &l);
}

static int send_events(int fd)
{
	for (;;) {
		struct event *e = &ring[ring_tail & (RING - 1)];
		if (!event_published(ring_tail)) return 0;
		struct line l = { .length = 0 };
		put(&l, e->kind == EVENT_CLAIMED ? "{\"type\":\"slot\",\"event\":\"claimed\",\"slot\":" : "{\"type\":\"slot\",\"event\":\"released\",\"slot\":");
		put_decimal(&l, e->slot);
		put(&l, ",\"tid\":");
		put_decimal(&l, e->tid);
		put(&l, ",\"key\":");
		put_hex(&l, e->key);
		put(&l, "}");
		__atomic_store_n(&ring_tail, ring_tail + 1, __ATOMIC_RELEASE);
		if (send_line(fd, &l)) return -1;
	}
}

/* A request from tlsd: one flat JSON object per line whose members are
 * strings or unsigned integers; "type" names it and "id" comes back in
 * the answer. Other members are skipped, so tlsd may add some. */
struct request {
	char type[16];
	uint64_t id;
	/* rules, rule, lease */
	uint64_t count, lease, rule, fault, value, signal, first, last, step, trace, enter, exit;
	char set[2 * ENGINE_NR_MAX / 8 + 1];
	char tids[16 * 12];
	char path[2 * ENGINE_PATH_MAX + 1];
	char paths[8 * ENGINE_NR_MAX];
};

#define NUMBER(name) { #name, __builtin_offsetof(struct request, name), 0 }
#define STRING(name) { #name, __builtin_offsetof(struct request, name), sizeof(((struct request *)0)->name) }
static const struct { const char *name; uint32_t offset, size; } members[] = {
	STRING(type), NUMBER(id), NUMBER(count), NUMBER(lease), NUMBER(rule), NUMBER(fault), NUMBER(value),
	NUMBER(signal), NUMBER(first), NUMBER(last), NUMBER(step), NUMBER(trace), NUMBER(enter), NUMBER(exit),
	STRING(set), STRING(tids), STRING(path), STRING(paths),
};

struct cursor {
	const char *p, *end;
};

static void skip_space(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r')) c->p++;
}

static int take(struct cursor *c, char ch)
{
	skip_space(c);
	if (c->p == c->end || *c->p != ch) return 0;
	c->p++;
	return 1;
}

/* A string without escapes (tlsd sends none); its bytes are copied into
 * out (cut to size - 1, NUL-terminated) when out is not NULL. */
static int take_string(struct cursor *c, char *out, uint32_t size)
{
	if (!take(c, '"')) return 0;
	uint32_t n = 0;
	for (; c->p < c->end && *c->p != '"'; c->p++) {
		if (*c->p == '\\') return 0;
		if (out && n + 1 < size) out[n++] = *c->p;
	}
	if (out) out[n] = 0;
	return take(c, '"');
}

static int take_number(struct cursor *c, uint64_t *out)
{
	skip_space(c);
	const char *start = c->p;
	uint64_t v = 0;
	for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
		if (v > (UINT64_MAX - 9) / 10) return 0;
		v = v * 10 + (uint64_t)(*c->p - '0');
	}
	*out = v;
	return c->p > start;
}

static int same_text(const char *a, const char *b)
{
	while (*a && *a == *b) a++, b++;
	return *a == *b;
}

/* 0 when the line is such a request. */
static int parse_request(const char *s, uint32_t n, struct request *r)
{
	struct cursor c = { s, s + n };
	shim_memset(r, 0, sizeof *r);
	if (!take(&c, '{')) return -1;
	if (take(&c, '}')) return -1; /* no type */
	do {
		char name[16];
		if (!take_string(&c, name, sizeof name) || !take(&c, ':')) return -1;
		skip_space(&c);
		int m = -1;
		for (uint32_t i = 0; i < sizeof members / sizeof *members && m < 0; i++)
			if (same_text(name, members[i].name)) m = (int)i;
		char *field = m >= 0 ? (char *)r + members[m].offset : 0;
		uint64_t number;
		if (c.p < c.end && *c.p == '"') {
			if (!take_string(&c, m >= 0 && members[m].size ? field : 0, m >= 0 ? members[m].size : 0)) return -1;
		} else if (take_number(&c, &number)) {
			if (m >= 0 && !members[m].size) *(uint64_t *)field = number;
		} else {
			return -1;
		}
	} while (take(&c, ','));
	if (!take(&c, '}')) return -1;
	skip_space(&c);
	return c.p == c.end && r->type[0] ? 0 : -1;
}

static int hex_digit(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Hex text into bytes; the count, or -1. */
static int32_t from_hex(const char *text, uint8_t *out, uint32_t size)
{
	uint32_t n = 0;
	for (; text[0] && text[1]; text += 2) {
		int hi = hex_digit(text[0]), lo = hex_digit(text[1]);
		if (hi < 0 || lo < 0 || n == size) return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return text[0] ? -1 : (int32_t)n;
}

/* "a,b,c" of decimals; their count, or -1. */
static int32_t decimals(const char *text, uint64_t *out, uint32_t size, char separator, uint64_t *pairs)
{
	uint32_t n = 0;
	while (*text) {
		uint64_t v = 0, w = 0;
		if (*text < '0' || *text > '9') return -1;
		while (*text >= '0' && *text <= '9') v = v * 10 + (uint64_t)(*text++ - '0');
		if (separator && *text++ == separator)
			while (*text >= '0' && *text <= '9') w = w * 10 + (uint64_t)(*text++ - '0');
		else if (separator)
			return -1;
		if (n == size) return -1;
		out[n] = v;
		if (pairs) pairs[n] = w;
		n++;
		if (*text == ',') text++;
		else if (*text) return -1;
	}
	return (int32_t)n;
}

/* A rule line into the bank being written (engine.h). */
static int take_rule(const struct request *r, uint32_t i)
{
	struct engine_rule *e = engine_rule_slot(i);
	uint64_t tids[ENGINE_MAX_TIDS], nrs[ENGINE_NR_MAX], args[ENGINE_NR_MAX];
	int32_t ntids = decimals(r->tids, tids, ENGINE_MAX_TIDS, 0, 0);
	int32_t npaths = decimals(r->paths, nrs, ENGINE_NR_MAX, ':', args);
	if (!e || ntids < 0 || npaths < 0 || from_hex(r->set, e->set, sizeof e->set) != sizeof e->set) return -1;
	int32_t path = from_hex(r->path, (uint8_t *)e->path, sizeof e->path - 1);
	if (path < 0 || r->fault > FAULT_RETVAL || r->signal > 64) return -1;
	e->id = (uint32_t)r->rule;
	e->fault = (uint8_t)r->fault;
	e->value = (int64_t)r->value;
	e->signal = (uint8_t)r->signal;
	e->trace = r->trace != 0;
	e->delay_enter_us = (uint32_t)r->enter;
	e->delay_exit_us = (uint32_t)r->exit;
	e->first = (uint32_t)r->first;
	e->last = (uint32_t)r->last;
	e->step = (uint32_t)r->step;
	e->ntids = (uint8_t)ntids;
	for (int32_t t = 0; t < ntids; t++) e->tids[t] = (int32_t)tids[t];
	e->path[path] = 0;
	e->path_length = path ? (uint32_t)path + 1 : 0;
	for (int32_t p = 0; p < npaths; p++) engine_set_path_arg((uint32_t)nrs[p], (uint8_t)args[p]);
	return 0;
}

/* Rules come as a "rules" line then `count` "rule" lines: only the whole
 * set is put in force. */
static struct {
	uint64_t id, count, lease, received;
	int receiving, bad;
} incoming;

static void put_signed(struct line *l, int64_t v)
{
	if (v < 0) put(l, "-");
	put_decimal(l, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

/* A string in JSON, escaped. */
static void put_string(struct line *l, const char *s)
{
	put(l, "\"");
	for (; *s && l->length < sizeof l->text - 16; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			l->text[l->length++] = '\\';
			l->text[l->length++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			put(l, "\\u00");
			l->text[l->length++] = "0123456789abcdef"[ch >> 4];
			l->text[l->length++] = "0123456789abcdef"[ch & 15];
		} else {
			l->text[l->length++] = (char)ch;
		}
	}
	put(l, "\"");
}

struct sink { int fd, failed; };

static void send_count(const struct engine_count *c, void *arg)
{
	struct sink *k = arg;
	struct line l = { .length = 0 };
	put(&l, "{\"type\":\"sysc\",\"nr\":");
	put_decimal(&l, c->nr);
	put(&l, ",\"calls\":");
	put_decimal(&l, c->calls);
	put(&l, ",\"errors\":");
	put_decimal(&l, c->errors);
	put(&l, ",\"timeNs\":");
	put_decimal(&l, c->time_ns);
	put(&l, "}");
	if (!k->failed && send_line(k->fd, &l)) k->failed = 1;
}

static void send_thread_count(const struct engine_thread_count *c, void *arg)
{
	struct sink *k = arg;
	struct line l = { .length = 0 };
	put(&l, "{\"type\":\"syst\",\"tid\":");
	put_decimal(&l, c->tid);
	put(&l, ",\"calls\":");
	put_decimal(&l, c->calls);
	put(&l, ",\"errors\":");
	put_decimal(&l, c->errors);
	put(&l, "}");
	if (!k->failed && send_line(k->fd, &l)) k->failed = 1;
}

static int send_counts(int fd)
{
	struct sink k = { fd, 0 };
	engine_take_counts(send_count, &k);
	engine_take_thread_counts(send_thread_count, &k);
	return k.failed ? -1 : 0;
}

static int send_records(int fd)
{
	const struct engine_record *r;
	while ((r = engine_next_record())) {
		struct line l = { .length = 0 };
		put(&l, "{\"type\":\"syscall\",\"tid\":");
		put_decimal(&l, r->tid);
		put(&l, ",\"nr\":");
		put_decimal(&l, r->nr);
		put(&l, ",\"rule\":");
		put_decimal(&l, r->rule);
		put(&l, ",\"flags\":");
		put_decimal(&l, r->flags);
		put(&l, ",\"args\":[");
		for (int i = 0; i < 6; i++) {
			if (i) put(&l, ",");
			put_hex(&l, r->args[i]);
		}
		put(&l, "],\"retval\":");
		put_signed(&l, r->retval);
		put(&l, ",\"durationNs\":");
		put_decimal(&l, r->duration_ns);
		put(&l, ",\"atNs\":");
		put_decimal(&l, r->at_ns);
		if (r->path[0]) {
			put(&l, ",\"path\":");
			put_string(&l, r->path);
		}
		put(&l, "}");
		engine_record_done();
		if (send_line(fd, &l)) return -1;
	}
	return 0;
}

static int answer(int fd, const char *text, uint32_t n)
{
	struct line l = { .length = 0 };
	static struct request r; /* large: the agent's alone */
	int parsed = parse_request(text, n, &r) == 0;
	if (parsed && same_text(r.type, "rule") && incoming.receiving) {
		if (take_rule(&r, (uint32_t)incoming.received)) incoming.bad = 1;
		if (++incoming.received < incoming.count) return 0;
		r.id = incoming.id;
		incoming.receiving = 0;
		if (!incoming.bad) engine_commit((uint32_t)incoming.count, incoming.lease);
		put(&l, incoming.bad ? "{\"type\":\"error\",\"message\":\"bad rule\",\"id\":" : "{\"type\":\"rules\",\"id\":");
		put_decimal(&l, r.id);
	} else if (parsed && same_text(r.type, "rules") && r.count <= ENGINE_MAX_RULES) {
		incoming.id = r.id;
		incoming.count = r.count;
		incoming.lease = r.lease;
		incoming.received = 0;
		incoming.bad = 0;
		incoming.receiving = r.count > 0;
		if (incoming.receiving) return 0;
		engine_commit(0, r.lease);
		put(&l, "{\"type\":\"rules\",\"id\":");
		put_decimal(&l, r.id);
	} else if (parsed && same_text(r.type, "lease")) {
		engine_renew(r.lease);
		put(&l, "{\"type\":\"lease\",\"id\":");
		put_decimal(&l, r.id);
	} else if (parsed && same_text(r.type, "counts")) {
		if (send_records(fd) || send_counts(fd)) return -1;
		put(&l, "{\"type\":\"counts\",\"id\":");
		put_decimal(&l, r.id);
		put(&l, ",\"recordsDropped\":");
		put_decimal(&l, engine_records_dropped());
	} else if (parsed && same_text(r.type, "ping")) {
		put(&l, "{\"type\":\"pong\",\"id\":");
		put_decimal(&l, r.id);
	} else if (parsed && same_text(r.type, "stats")) {
		put(&l, "{\"type\":\"stats\",\"id\":");
		put_decimal(&l, r.id);
		put(&l, ",\"slotsInUse\":");
		put_decimal(&l, slots_in_use());
		put(&l, ",\"variables\":");
		put_decimal(&l, ALLOC_VARS(__atomic_load_n(&table->allocation, __ATOMIC_ACQUIRE)));
		put(&l, ",\"eventsDropped\":");
		put_decimal(&l, __atomic_load_n(&dropped, __ATOMIC_RELAXED));
	} else {
		put(&l, "{\"type\":\"error\",\"id\":");
		put_decimal(&l, parsed ? r.id : 0);
		put(&l, parsed ? ",\"message\":\"unknown request\"" : ",\"message\":\"malformed request\"");
	}
	put(&l, "}");
	return send_line(fd, &l);
}

/* Counts go to tlsd at least this often (as the tracer's engine sends its). */
#define COUNTS_PERIOD_MS 250

static uint64_t monotonic_ms(void)
{
	struct { long s, ns; } t = { 0, 0 };
	sys2(__NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, &t);
	return (uint64_t)t.s * 1000u + (uint64_t)t.ns / 1000000u;
}

/* Once the engine runs: which calls it traps, so that tlsd can hand it
 * the rules on them. */
static int send_engine(int fd)
{
	uint8_t set[ENGINE_NR_MAX / 8];
	engine_trapped(set);
	struct line l = { .length = 0 };
	put(&l, "{\"type\":\"engine\",\"trap\":\"");
	for (uint32_t i = 0; i < sizeof set; i++) {
		l.text[l.length++] = "0123456789abcdef"[set[i] >> 4];
		l.text[l.length++] = "0123456789abcdef"[set[i] & 15];
	}
	put(&l, "\"}");
	return send_line(fd, &l);
}

/* What the engine asks of the agent, connected or not. */
static void serve_engine(int fd)
{
	if (engine_pending_call()) engine_make_call();
	if (engine_flush_wanted()) {
		if (fd >= 0) {
			send_records(fd);
			send_counts(fd);
		}
		engine_flushed();
	}
}

/* The agent's descriptors go as high as the process may have them, out
 * of the way of the program's, which expects the lowest free numbers
 * (open gives 3 to a program that has 0, 1 and 2). */
static long move_high(long fd)
{
	struct { uint64_t cur, max; } limit;
	if (sys_failed(fd) || sys_failed(sys4(__NR_prlimit64, 0, 7 /* RLIMIT_NOFILE */, 0, &limit)) || limit.cur < 128) return fd;
	long high = sys3(__NR_fcntl, fd, F_DUPFD_CLOEXEC, (long)(limit.cur > 1024 ? 1024 : limit.cur) - 32);
	if (sys_failed(high)) return fd;
	sys1(__NR_close, fd);
	return high;
}

static int agent_main(void)
{
	struct { uint16_t family; char path[108]; } addr = { .family = AF_UNIX };
	for (int i = 0; i < 107 && socket_path[i]; i++) addr.path[i] = socket_path[i];
	long fd = move_high(sys3(__NR_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	int connected = !sys_failed(fd) && !sys_failed(sys3(__NR_connect, fd, &addr, sizeof addr)) && !send_hello((int)fd);
	static char input[8192];
	uint32_t buffered = 0;
	uint64_t counts_sent = monotonic_ms();
	int gone = 0, engine_told = 0;
	for (;;) {
		if (!connected && !gone) {
			gone = 1;
			/* tlsd is gone: its rules with it, at once (the lease is for a
			 * tlsd that hangs). The engine keeps the agent for its calls. */
			__atomic_store_n(&agent_running, 0, __ATOMIC_RELEASE);
			engine_drop_rules();
			if (!sys_failed(fd)) sys1(__NR_close, fd);
			fd = -1;
			__atomic_store_n(&agent_ended, 1, __ATOMIC_SEQ_CST);
			if (!__atomic_load_n(&agent_held, __ATOMIC_SEQ_CST)) return 0;
			__atomic_store_n(&agent_ended, 0, __ATOMIC_SEQ_CST);
		}
		serve_engine(connected ? (int)fd : -1);
		if (connected && !engine_told && engine_running()) {
			engine_told = 1;
			if (send_engine((int)fd)) connected = 0;
		}
		if (connected && (send_events((int)fd) || send_records((int)fd))) {
			connected = 0;
			continue;
		}
		uint64_t now = monotonic_ms();
		if (connected && engine_running() && now - counts_sent >= COUNTS_PERIOD_MS) {
			counts_sent = now;
			if (send_counts((int)fd)) {
				connected = 0;
				continue;
			}
		}
		struct pollfd p[2] = { { .fd = wake_fd, .events = POLLIN }, { .fd = connected ? (int)fd : -1, .events = POLLIN } };
		__atomic_store_n(&agent_asleep, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		int work = event_published(ring_tail) || engine_next_record() || engine_pending_call() || engine_flush_wanted() ||
			   (connected && !engine_told && engine_running());
		long ready = work ? 0 : sys3(__NR_poll, p, 2, connected && engine_running() ? COUNTS_PERIOD_MS : -1);
		__atomic_store_n(&agent_asleep, 0, __ATOMIC_RELAXED);
		if (ready > 0 && p[0].revents) {
			uint64_t count;
			sys3(__NR_read, wake_fd, &count, sizeof count);
		}
		if (ready <= 0 || !p[1].revents) continue;
		long n = sys3(__NR_read, fd, input + buffered, sizeof input - buffered);
		if (n == -EINTR) continue;
		if (n <= 0) {
			connected = 0;
			continue;
		}
		buffered += (uint32_t)n;
		uint32_t start = 0;
		for (uint32_t i = 0; i < buffered && connected; i++) {
			if (input[i] != '\n') continue;
			if (answer((int)fd, input + start, i - start)) connected = 0;
			start = i + 1;
		}
		/* Keep a partial line; a line longer than the buffer is junk. */
		buffered = start < buffered && buffered - start < sizeof input ? buffered - start : 0;
		for (uint32_t i = 0; i < buffered; i++) input[i] = input[start + i];
	}
}

/* The agent's stack and, above it, its thread pointer's page: in .bss
 * (there is one agent, started once), so that starting it maps nothing:
 * an injection pays for every system call of the start with two ptrace
 * stops of the thread it borrowed. */
static char agent_area[AGENT_STACK + AGENT_TLS] __attribute__((aligned(AGENT_TLS)));

int ipc_start(struct tlsshim_table *t, const char *path, int signals_blocked)
{
	uint32_t n = 0;
	while (path[n] && n < sizeof socket_path - 1) socket_path[n] = path[n], n++;
	if (path[n]) return -1; /* too long for a Unix socket address */
	table = t;
	wake_fd = (int)move_high(sys2(__NR_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC));
	if (sys_failed(wake_fd)) return -1;
	/* The agent's thread pointer: a page of its own whose first word
	 * points at itself, as a TCB's does. */
	uint64_t *tcb = (uint64_t *)(agent_area + AGENT_STACK);
	tcb[0] = (uint64_t)(uintptr_t)tcb;
	__atomic_store_n(&agent_running, 1, __ATOMIC_RELEASE);
	/* The child inherits the mask: block everything around the clone and
	 * the agent keeps it blocked for good. */
	uint64_t mask;
	if (!signals_blocked) block_signals(&mask);
	long tid = raw_clone(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS,
			     agent_area + AGENT_STACK - 16, tcb, agent_main);
	if (!signals_blocked) restore_signals(&mask);
	if (sys_failed(tid)) {
		__atomic_store_n(&agent_running, 0, __ATOMIC_RELEASE);
		return -1;
	}
	return 0;
}
