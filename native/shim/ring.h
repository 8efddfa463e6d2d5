/* A slot in a ring of `size` entries (a power of two) that many threads
 * fill and one thread (the agent) empties: never waits. Each user keeps
 * its entries, their `published` word, and the two counters. */
#ifndef TLSSHIM_RING_H
#define TLSSHIM_RING_H

#include <stdint.h>

/* The sequence number reserved in *seq, or 0 when the ring is full (the
 * entry is then dropped, and counted in *dropped when it is given). The
 * caller fills entry seq % size, then stores seq + 1 in its published
 * word (release). */
static inline int ring_reserve(uint64_t *head, const uint64_t *tail, uint64_t size, uint64_t *dropped, uint64_t *seq)
{
	uint64_t s = __atomic_load_n(head, __ATOMIC_RELAXED);
	do {
		if (s - __atomic_load_n(tail, __ATOMIC_ACQUIRE) >= size) {
			if (dropped) __atomic_fetch_add(dropped, 1, __ATOMIC_RELAXED);
			return 0;
		}
	} while (!__atomic_compare_exchange_n(head, &s, s + 1, 1, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
	*seq = s;
	return 1;
}

#endif
