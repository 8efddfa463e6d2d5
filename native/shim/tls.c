/* The shim's thread-local storage: the table of per-thread slots
 * (table.h), variable registration, and the get path.
 *
 * Process-wide state is the table and what the get path copies out of it
 * at start; per-thread state is the thread's slot, found by its key. */
#include "ipc.h"
#include "start.h"
#include "table.h"
#include "mem.h"
#include "sys.h"
#include "tlsshim.h"

#define EXPORT __attribute__((visibility("default")))

static struct tlsshim_table *table;

/* What the get path needs, kept apart from the table (whose layout is
 * tlsd's ABI) so that a get is a few loads that do not depend on each
 * other. */
static struct {
	int key_is_rdfsbase;
	uint32_t slot_mask;     /* slot_count - 1 */
	uint32_t stride_shift;  /* slot_stride is 1 << stride_shift */
	uint64_t home_mask;     /* slot_mask << stride_shift (tlsshim_home_offset) */
	char *slots;            /* slot 0 */
	/* Where each variable lies from its slot's start; 0 for a handle
	 * not given (yet). Relaxed: a thread holding a handle was given it
	 * after the store, by whatever passed it on. */
	uint32_t var_at[TLSSHIM_MAX_VARS];
} fast;

/* This thread's key, by the mode and the CPU. */
static inline uint64_t current_key(void)
{
	if (fast.key_is_rdfsbase) return read_fs_base_insn();
	return table->mode == TLSSHIM_MODE_TID ? (uint64_t)sys0(__NR_gettid) : read_fs_base_syscall();
}

static inline struct tlsshim_slot *slot_at(uint32_t i)
{
	return (struct tlsshim_slot *)(fast.slots + ((uint64_t)i << fast.stride_shift));
}

static inline uint32_t home_index(uint64_t key)
{
	return tlsshim_home_index(key, fast.slot_mask, fast.stride_shift);
}

/* The slot holding `key`, or NULL. Lock-free: only the owner (or tlsd,
 * once the owner is dead) changes a slot's key from the owner's key. */
static struct tlsshim_slot *find(uint64_t key)
{
	uint32_t i = home_index(key);
	for (uint32_t n = 0; n <= fast.slot_mask; n++, i = (i + 1) & fast.slot_mask) {
		struct tlsshim_slot *s = slot_at(i);
		uint64_t k = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
		if (k == key) return s;
		if (k == SLOT_EMPTY) return 0;
	}
	return 0;
}

/* A thread's first get: take the first empty or free slot on the key's
 * probe path and zero it. Signals are blocked meanwhile, so that a
 * handler on this thread cannot see the slot before it is zeroed, nor
 * claim a second one. */
static struct tlsshim_slot *claim(uint64_t key)
{
	if (key == SLOT_EMPTY || key == SLOT_FREE) return 0;
	uint64_t mask_before;
	block_signals(&mask_before);
	struct tlsshim_slot *s = find(key); /* a handler may have run before the block */
	uint32_t i = home_index(key);
	for (uint32_t n = 0; !s && n <= fast.slot_mask; n++, i = (i + 1) & fast.slot_mask) {
		struct tlsshim_slot *c = slot_at(i);
		uint64_t k = __atomic_load_n(&c->key, __ATOMIC_ACQUIRE);
		if (k != SLOT_EMPTY && k != SLOT_FREE) continue;
		if (!__atomic_compare_exchange_n(&c->key, &k, key, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
		shim_memset((char *)c + SLOT_HEADER, 0, table->slot_bytes);
		c->fs_base = table->mode == TLSSHIM_MODE_THREAD_POINTER ? key : read_fs_base_syscall();
		c->tid = table->mode == TLSSHIM_MODE_TID ? key : (uint64_t)sys0(__NR_gettid);
		__atomic_fetch_add(&c->claims, 1, __ATOMIC_RELEASE);
		ipc_event(EVENT_CLAIMED, i, key, c->tid);
		s = c;
	}
	restore_signals(&mask_before);
	return s;
}

/* Everything but a hit in the home slot with rdfsbase: another mode, a
 * key placed further along, a thread's first get, or a bad handle. */
__attribute__((noinline)) static void *get_slow(int handle)
{
	if (!table || handle < 0 || handle >= TLSSHIM_MAX_VARS) return 0;
	uint32_t at = __atomic_load_n(&fast.var_at[handle], __ATOMIC_RELAXED);
	if (!at) return 0;
	uint64_t key = current_key();
	if (key == SLOT_EMPTY || key == SLOT_FREE) return 0; /* no thread pointer yet: no slot */
	struct tlsshim_slot *s = find(key);
	if (!s) s = claim(key);
	return s ? (char *)s + at : 0;
}

EXPORT void *tlsshim_get(int handle)
{
	/* The common case: rdfsbase, a multiply, a load and a compare. The
	 * rest is a tail call, so that this path saves no registers. */
	if (__builtin_expect(fast.key_is_rdfsbase && (uint32_t)handle < TLSSHIM_MAX_VARS, 1)) {
		uint32_t at = __atomic_load_n(&fast.var_at[handle], __ATOMIC_RELAXED);
		uint64_t key = read_fs_base_insn();
		char *slot = fast.slots + tlsshim_home_offset(key, fast.home_mask);
		/* A thread with no thread pointer yet (0, which is SLOT_EMPTY)
		 * has no slot: it must not take an empty one's. */
		if (__builtin_expect(at && key && __atomic_load_n((uint64_t *)slot, __ATOMIC_ACQUIRE) == key, 1))
			return slot + at;
	}
	return get_slow(handle);
}

EXPORT int tlsshim_register(size_t size, size_t align, const char *name)
{
	struct tlsshim_table *t = table;
	if (!t) return TLSSHIM_ENOTSTARTED;
	if (size == 0 || align == 0 || (align & (align - 1)) || align > TLSSHIM_MAX_ALIGN) return TLSSHIM_EINVAL;
	if (size > t->slot_bytes) return TLSSHIM_ENOSPACE;
	uint64_t before = __atomic_load_n(&t->allocation, __ATOMIC_ACQUIRE);
	uint32_t index, offset;
	do {
		index = ALLOC_VARS(before);
		offset = (ALLOC_BYTES(before) + (uint32_t)align - 1) & ~((uint32_t)align - 1);
		if (index >= TLSSHIM_MAX_VARS) return TLSSHIM_ENOVARS;
		if ((uint64_t)offset + size > t->slot_bytes) return TLSSHIM_ENOSPACE;
	} while (!__atomic_compare_exchange_n(&t->allocation, &before, ALLOC(index + 1, offset + size), 0,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	/* The entry is this caller's alone now; tlsd reads it once ready. A
	 * get with this handle is only possible after we return. */
	struct tlsshim_var *v = &t->vars[index];
	v->offset = offset;
	v->size = (uint32_t)size;
	v->align = (uint32_t)align;
	uint32_t n = 0;
	for (; name && name[n] && n < sizeof v->name - 1; n++) v->name[n] = name[n];
	v->name[n] = 0;
	__atomic_store_n(&v->ready, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&fast.var_at[index], SLOT_HEADER + offset, __ATOMIC_RELAXED);
	return (int)index;
}

EXPORT int tlsshim_release(void)
{
	if (!table) return TLSSHIM_ENOTSTARTED;
	uint64_t key = current_key();
	struct tlsshim_slot *s = find(key);
	uint64_t owner = key;
	if (s && __atomic_compare_exchange_n(&s->key, &owner, SLOT_FREE, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		ipc_event(EVENT_RELEASED, (uint32_t)(((char *)s - fast.slots) >> fast.stride_shift), key, s->tid);
	return 0;
}

EXPORT _Noreturn void tlsshim_release_and_exit(int code)
{
	/* Blocked for good: a handler run after the release would claim a
	 * slot that nobody gives back. */
	uint64_t ignored;
	block_signals(&ignored);
	tlsshim_release();
	for (;;) sys1(__NR_exit, code);
}

EXPORT int tlsshim_mode(void) { return table ? (int)table->mode : 0; }
EXPORT int tlsshim_uses_rdfsbase(void) { return table ? (int)table->uses_rdfsbase : 0; }
EXPORT const void *tlsshim_table(void) { return table; }

static int is_power_of_two(uint32_t v) { return v && !(v & (v - 1)); }

EXPORT int tlsshim_start(const struct tlsshim_context *ctx) { return shim_start(ctx, 0); }

int shim_start(const struct tlsshim_context *ctx, int signals_blocked)
{
	if (table) return TLSSHIM_ESTARTED;
	if (!ctx || ctx->version != TLSSHIM_VERSION) return TLSSHIM_EINVAL;
	if (ctx->mode != TLSSHIM_MODE_THREAD_POINTER && ctx->mode != TLSSHIM_MODE_TID) return TLSSHIM_EINVAL;
	uint32_t count = ctx->slot_count ? ctx->slot_count : TLSSHIM_DEFAULT_SLOTS;
	uint32_t bytes = ctx->slot_bytes ? ctx->slot_bytes : TLSSHIM_DEFAULT_SLOT_BYTES;
	if (!is_power_of_two(count) || count > TLSSHIM_MAX_SLOTS || bytes > TLSSHIM_MAX_SLOT_BYTES) return TLSSHIM_EINVAL;
	/* A power of two, so that finding a slot is a shift, and at least a
	 * slot header: every slot's variables then start as aligned as any
	 * may ask (the header is TLSSHIM_MAX_ALIGN bytes). Pages past a
	 * slot's used bytes are never touched, so never backed. */
	uint32_t stride = SLOT_HEADER;
	while (stride < SLOT_HEADER + bytes) stride <<= 1;
	uint64_t size = TABLE_HEADER + (uint64_t)count * stride;
	/* Anonymous private memory: zero (every key SLOT_EMPTY), touched only
	 * as slots are used, and copied, not shared, by fork. */
	long m = sys6(__NR_mmap, 0, (long)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sys_failed(m)) return TLSSHIM_ENOMEM;
	struct tlsshim_table *t = (struct tlsshim_table *)m;
	t->version = TLSSHIM_VERSION;
	t->mode = ctx->mode;
	t->slot_count = count;
	t->slot_stride = stride;
	t->slot_bytes = bytes;
	t->slots_offset = TABLE_HEADER;
	t->pid = (uint64_t)sys0(__NR_getpid);
	t->uses_rdfsbase = ctx->mode == TLSSHIM_MODE_THREAD_POINTER && (ctx->hwcap2 & HWCAP2_FSGSBASE);
	fast.slots = (char *)t + TABLE_HEADER;
	fast.slot_mask = count - 1;
	fast.stride_shift = (uint32_t)__builtin_ctz(stride);
	fast.home_mask = (uint64_t)fast.slot_mask << fast.stride_shift;
	fast.key_is_rdfsbase = (int)t->uses_rdfsbase;
	__atomic_store_n(&t->magic, TLSSHIM_MAGIC, __ATOMIC_RELEASE);
	__atomic_store_n(&table, t, __ATOMIC_RELEASE);
	/* Without tlsd (no socket, or no agent) the table works all the same. */
	if (ctx->socket_path) ipc_start(t, ctx->socket_path, signals_blocked);
	return 0;
}
