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
	if (!__atomic_load_n(&agent_running, __ATOMIC_ACQUIRE)) return;
	uint64_t seq = __atomic_load_n(&ring_head, __ATOMIC_RELAXED);
	do {
		if (seq - __atomic_load_n(&ring_tail, __ATOMIC_ACQUIRE) >= RING) {
			__atomic_fetch_add(&dropped, 1, __ATOMIC_RELAXED);
			return;
		}
	} while (!__atomic_compare_exchange_n(&ring_head, &seq, seq + 1, 1, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
	struct event *e = &ring[seq & (RING - 1)];
	e->kind = kind;
	e->slot = slot;
	e->key = key;
	e->tid = tid;
	__atomic_store_n(&e->published, seq + 1, __ATOMIC_RELEASE);
	/* Paired with the agent's fence before it sleeps: either it sees
	 * this event, or this thread sees it asleep. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&agent_asleep, __ATOMIC_RELAXED)) {
		uint64_t one = 1;
		sys3(__NR_write, wake_fd, &one, sizeof one);
	}
}

/* --- a line of JSON, built without printf --- */

struct line {
	char text[512];
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
	*r = (struct request){ .type = "" };
	if (!take(&c, '{')) return -1;
	if (take(&c, '}')) return -1; /* no type */
	do {
		char name[8];
		if (!take_string(&c, name, sizeof name) || !take(&c, ':')) return -1;
		skip_space(&c);
		int is_type = same_text(name, "type"), is_id = same_text(name, "id");
		uint64_t number;
		if (c.p < c.end && *c.p == '"') {
			if (!take_string(&c, is_type ? r->type : 0, sizeof r->type)) return -1;
		} else if (take_number(&c, &number)) {
			if (is_id) r->id = number;
		} else {
			return -1;
		}
	} while (take(&c, ','));
	if (!take(&c, '}')) return -1;
	skip_space(&c);
	return c.p == c.end && r->type[0] ? 0 : -1;
}

static int answer(int fd, const char *text, uint32_t n)
{
	struct line l = { .length = 0 };
	struct request r;
	int parsed = parse_request(text, n, &r) == 0;
	if (parsed && same_text(r.type, "ping")) {
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

static int agent_main(void)
{
	struct { uint16_t family; char path[108]; } addr = { .family = AF_UNIX };
	for (int i = 0; i < 107 && socket_path[i]; i++) addr.path[i] = socket_path[i];
	long fd = sys3(__NR_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!sys_failed(fd) && !sys_failed(sys3(__NR_connect, fd, &addr, sizeof addr)) && !send_hello((int)fd)) {
		static char input[4096];
		uint32_t buffered = 0;
		for (;;) {
			if (send_events((int)fd)) break;
			struct pollfd p[2] = { { .fd = (int)fd, .events = POLLIN }, { .fd = wake_fd, .events = POLLIN } };
			__atomic_store_n(&agent_asleep, 1, __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			long ready = event_published(ring_tail) ? 0 : sys3(__NR_poll, p, 2, -1);
			__atomic_store_n(&agent_asleep, 0, __ATOMIC_RELAXED);
			if (ready > 0 && p[1].revents) {
				uint64_t count;
				sys3(__NR_read, wake_fd, &count, sizeof count);
			}
			if (ready <= 0 || !p[0].revents) continue;
			long n = sys3(__NR_read, fd, input + buffered, sizeof input - buffered);
			if (n == -EINTR) continue;
			if (n <= 0) break; /* tlsd is gone */
			buffered += (uint32_t)n;
			uint32_t start = 0;
			for (uint32_t i = 0; i < buffered; i++) {
				if (input[i] != '\n') continue;
				if (answer((int)fd, input + start, i - start)) goto gone;
				start = i + 1;
			}
			/* Keep a partial line; a line longer than the buffer is junk. */
			buffered = start < buffered && buffered - start < sizeof input ? buffered - start : 0;
			for (uint32_t i = 0; i < buffered; i++) input[i] = input[start + i];
		}
	}
gone:
	__atomic_store_n(&agent_running, 0, __ATOMIC_RELEASE);
	if (!sys_failed(fd)) sys1(__NR_close, fd);
	return 0;
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
	wake_fd = (int)sys2(__NR_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC);
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
