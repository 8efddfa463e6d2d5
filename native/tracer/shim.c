/* The tracer's writes to libtlsshim tables (native/shim/table.h), made
 * while the thread they concern is stopped, so that no thread ever finds a
 * slot that is not its own:
 *
 * - A thread that ends without giving its slot back: thread pointers are
 *   reused as soon as a thread is gone, so its slot is freed at its
 *   PTRACE_EVENT_EXIT stop, before the tracer lets it go; by the time the
 *   daemon heard of the exit, a new thread could already have found it.
 *   No other thread writes a slot that holds another's key (only its
 *   owner, and tlsd for a dead owner, do), so an aligned 8-byte store of
 *   SLOT_FREE is all the shim's protocol needs.
 *
 * - A forked child: its memory is a copy of the parent's, table included,
 *   with a slot for each of the parent's threads, but only the forking
 *   thread lives on in it, and glibc hands the others' stacks (so their
 *   thread pointers) to the child's next threads. At the child's first
 *   stop, with its one thread stopped, every slot but the forking
 *   thread's is freed, and that one is re-keyed for the child. */
#include <linux/kcmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include "../shim/table.h"
#include "shim.h"

static int read_bytes(pid_t pid, uint64_t address, void *buf, size_t len)
{
	struct iovec local = { buf, len }, remote = { (void *)address, len };
	return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

static int write_bytes(pid_t pid, uint64_t address, const void *buf, size_t len)
{
	struct iovec local = { (void *)buf, len }, remote = { (void *)address, len };
	return process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

static int read_word(pid_t pid, uint64_t address, uint64_t *value)
{
	return read_bytes(pid, address, value, sizeof *value);
}

static int write_word(pid_t pid, uint64_t address, uint64_t value)
{
	return write_bytes(pid, address, &value, sizeof value);
}

static uint64_t slot_address(const struct shim_table *s, uint32_t i)
{
	return s->table + s->slots_offset + (uint64_t)i * s->slot_stride;
}

static uint32_t stride_shift(const struct shim_table *s)
{
	return (uint32_t)__builtin_ctz(s->slot_stride);
}

static int is_power_of_two(uint32_t v) { return v && !(v & (v - 1)); }

int shim_adopt(struct process *p, uint64_t table)
{
	struct tlsshim_table h;
	if (!table || read_bytes(p->pid, table, &h, offsetof(struct tlsshim_table, pid)) ||
	    h.magic != TLSSHIM_MAGIC || h.version != TLSSHIM_VERSION ||
	    (h.mode != TLSSHIM_MODE_THREAD_POINTER && h.mode != TLSSHIM_MODE_TID) ||
	    !is_power_of_two(h.slot_count) || h.slot_count > TLSSHIM_MAX_SLOTS ||
	    !is_power_of_two(h.slot_stride) || h.slot_stride < SLOT_HEADER || h.slots_offset < TABLE_HEADER)
		return -1;
	p->shim = (struct shim_table){ .table = table, .slot_count = h.slot_count, .slots_offset = h.slots_offset,
				       .slot_stride = h.slot_stride, .mode = (uint8_t)h.mode };
	return 0;
}

/* The memory at the table's address is a shim table still (an exec or a
 * munmap may have taken it away). */
static int usable(pid_t pid, const struct shim_table *s)
{
	uint64_t magic;
	return s->table && read_word(pid, s->table, &magic) == 0 && magic == TLSSHIM_MAGIC;
}

/* A thread's key in a table: its FS base or its tid, by the table's mode
 * (a type of its own: neither an address nor a tid may be passed for it). */
struct slot_key {
	uint64_t word;
};

static struct slot_key key_of(const struct shim_table *s, pid_t tid, uint64_t fs_base)
{
	return (struct slot_key){ s->mode == TLSSHIM_MODE_TID ? (uint64_t)tid : fs_base };
}

static uint32_t home_index(const struct shim_table *s, struct slot_key key)
{
	return tlsshim_home_index(key.word, s->slot_count - 1, stride_shift(s));
}

int shim_reclaim(pid_t pid, const struct shim_table *s, pid_t tid, uint64_t fs_base)
{
	struct slot_key key = key_of(s, tid, fs_base);
	if (key.word == SLOT_EMPTY || key.word == SLOT_FREE || !usable(pid, s))
		return 0;
	uint32_t mask = s->slot_count - 1;
	uint32_t i = home_index(s, key);
	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		uint64_t k;
		if (read_word(pid, slot_address(s, i), &k) || k == SLOT_EMPTY)
			return 0; /* it holds no slot (or the table is gone) */
		if (k == key.word)
			return write_word(pid, slot_address(s, i), SLOT_FREE) == 0;
	}
	return 0;
}

int shares_memory(pid_t a, pid_t b)
{
	return syscall(SYS_kcmp, a, b, KCMP_VM, 0, 0) == 0;
}

/* The slot headers' first two words, all of them, a batch of reads at a
 * time (IOV_MAX remote ranges per call). */
struct key_and_fs_base {
	uint64_t key, fs_base;
};

static struct key_and_fs_base *read_slot_heads(pid_t pid, const struct shim_table *s)
{
	enum { BATCH = 1024 };
	struct key_and_fs_base *heads = calloc(s->slot_count, sizeof *heads);
	if (!heads)
		abort();
	struct iovec remote[BATCH];
	for (uint32_t first = 0; first < s->slot_count; first += BATCH) {
		uint32_t n = s->slot_count - first < BATCH ? s->slot_count - first : BATCH;
		for (uint32_t i = 0; i < n; i++)
			remote[i] = (struct iovec){ (void *)slot_address(s, first + i), sizeof *heads };
		struct iovec local = { heads + first, n * sizeof *heads };
		if (process_vm_readv(pid, &local, 1, remote, n, 0) != (ssize_t)local.iov_len) {
			free(heads);
			return NULL;
		}
	}
	return heads;
}

/* tid mode: the forking thread's slot moves to the child's tid, on that
 * key's probe path: the first slot there that is free (all but this one
 * are, now), or where it is already. */
static void rekey(pid_t child, const struct shim_table *s, struct key_and_fs_base *heads, uint32_t from)
{
	struct slot_key key = key_of(s, child, 0);
	uint32_t mask = s->slot_count - 1, to = home_index(s, key);
	while (to != from && heads[to].key != SLOT_EMPTY && heads[to].key != SLOT_FREE)
		to = (to + 1) & mask;
	char *slot = malloc(s->slot_stride);
	if (!slot)
		abort();
	if (read_bytes(child, slot_address(s, from), slot, s->slot_stride) == 0) {
		struct tlsshim_slot *head = (struct tlsshim_slot *)slot;
		head->key = key.word;
		head->tid = (uint64_t)child;
		if (write_bytes(child, slot_address(s, to), slot, s->slot_stride) == 0 && to != from)
			write_word(child, slot_address(s, from), SLOT_FREE);
	}
	free(slot);
}

/* At a forked child's first stop (its only thread, whose FS base is
 * `fs_base`): frees every slot of its copy of the parent's table but the
 * forking thread's, which is re-keyed for the child. A table it cannot
 * read is left as it is. */
static void fix_fork_child(pid_t child, const struct shim_table *s, uint64_t fs_base)
{
	if (!usable(child, s))
		return;
	struct key_and_fs_base *heads = read_slot_heads(child, s);
	if (!heads)
		return;
	/* The forking thread's slot is the one with its FS base, which the
	 * child's thread has too (the shim records it in both modes). */
	int64_t kept = -1;
	for (uint32_t i = 0; i < s->slot_count; i++) {
		if (heads[i].key == SLOT_EMPTY || heads[i].key == SLOT_FREE)
			continue;
		if (kept < 0 && heads[i].fs_base == fs_base) {
			kept = i;
			continue;
		}
		write_word(child, slot_address(s, i), SLOT_FREE);
		heads[i].key = SLOT_FREE;
	}
	if (kept >= 0 && s->mode == TLSSHIM_MODE_TID)
		rekey(child, s, heads, (uint32_t)kept);
	else if (kept >= 0)
		write_word(child, slot_address(s, (uint32_t)kept) + offsetof(struct tlsshim_slot, tid), (uint64_t)child);
	free(heads);
}

void shim_first_stop(const struct thread *t)
{
	/* Its process inherited the table at the fork event (a new child
	 * waits at its first stop until then: events.c). */
	struct process *p = t->pid == t->tid ? process_find(t->pid) : NULL;
	if (p && p->shim.table && (t->flags & T_FS_KNOWN))
		fix_fork_child(t->tid, &p->shim, t->fs_base);
}
