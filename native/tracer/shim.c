/* Freeing the libtlsshim slot of a thread that ends without giving it
 * back (native/shim/table.h). Thread pointers are reused as soon as a
 * thread is gone, so this must happen at the thread's PTRACE_EVENT_EXIT
 * stop, before the tracer lets it go: by the time the daemon heard of the
 * exit, a new thread could already have found the dead one's slot.
 *
 * The thread is stopped, and no other thread writes a slot that holds
 * another's key (only its owner, and tlsd for a dead owner, do), so an
 * aligned 8-byte store of SLOT_FREE is all the shim's protocol needs. */
#include <stdint.h>
#include <sys/uio.h>
#include "../shim/table.h"
#include "shim.h"

static int read_word(pid_t pid, uint64_t address, uint64_t *value)
{
	struct iovec local = { value, sizeof *value }, remote = { (void *)address, sizeof *value };
	return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof *value ? 0 : -1;
}

static int write_word(pid_t pid, uint64_t address, uint64_t value)
{
	struct iovec local = { &value, sizeof value }, remote = { (void *)address, sizeof value };
	return process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof value ? 0 : -1;
}

int shim_reclaim(pid_t pid, const struct shim_table *s, pid_t tid, uint64_t fs_base)
{
	if (!s->table || !s->slot_count || (s->slot_count & (s->slot_count - 1)))
		return 0;
	uint64_t key = s->mode == TLSSHIM_MODE_TID ? (uint64_t)tid : fs_base;
	if (key == SLOT_EMPTY || key == SLOT_FREE)
		return 0;
	/* Never write into memory that is not (or no longer) a shim table. */
	uint64_t magic;
	if (read_word(pid, s->table, &magic) || magic != TLSSHIM_MAGIC)
		return 0;
	uint32_t mask = s->slot_count - 1;
	uint32_t i = tlsshim_home_index(key, mask);
	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		uint64_t slot = s->table + s->slots_offset + (uint64_t)i * s->slot_stride, k;
		if (read_word(pid, slot, &k) || k == SLOT_EMPTY)
			return 0; /* not held (or the table is gone) */
		if (k == key)
			return write_word(pid, slot, SLOT_FREE) == 0;
	}
	return 0;
}
