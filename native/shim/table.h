/* The shim's table, as it lies in the target's memory. tlsd reads (and,
 * to reclaim a dead thread's slot, writes) it from outside, so this layout
 * is an ABI: the offsets are fixed, and `version` changes with them.
 *
 *   header (struct tlsshim_table, 8 KiB)
 *   slot 0, slot 1, ... slot_count - 1, each slot_stride bytes:
 *     struct tlsshim_slot (64 bytes), then slot_bytes of variables
 *
 * A slot's key word says whose it is: SLOT_EMPTY (never used), SLOT_FREE
 * (given back), or the owner's key. Keys are placed by open addressing
 * from tlsshim_home_index (below); a probe stops at SLOT_EMPTY only,
 * and a slot never goes back to SLOT_EMPTY, so a key is always found from
 * its home index. */
#ifndef TLSSHIM_TABLE_H
#define TLSSHIM_TABLE_H

#include <stdint.h>
#include "tlsshim.h"

#define TLSSHIM_MAGIC 0x314d494853534c54ull /* "TLSSHIM1", little-endian */

#define SLOT_EMPTY 0ull
#define SLOT_FREE UINT64_MAX /* no FS base or tid is all ones */

#define SLOT_HEADER 64
#define TABLE_HEADER 8192

struct tlsshim_var {
	uint32_t offset;  /* in a slot's variable bytes */
	uint32_t size;
	uint32_t align;
	uint32_t ready;   /* 1 once the entry is filled in */
	char name[48];    /* NUL-terminated, cut to 47 bytes */
};                        /* 64 bytes */

struct tlsshim_table {
	uint64_t magic;             /*   0 */
	uint32_t version;           /*   8: TLSSHIM_VERSION */
	uint32_t mode;              /*  12: enum tlsshim_mode */
	uint32_t slot_count;        /*  16: a power of two */
	uint32_t slot_stride;       /*  20: bytes from one slot to the next */
	uint32_t slot_bytes;        /*  24: variable bytes per slot */
	uint32_t slots_offset;      /*  28: from the table's start */
	uint64_t pid;               /*  32: the process that made the table */
	/* 40: variables registered (bits 0-15) and variable bytes taken (bits
	 * 32-63), one word so that a registration is one compare-and-swap. */
	uint64_t allocation;
	uint32_t uses_rdfsbase;     /*  48 */
	uint32_t reserved0;         /*  52 */
	uint64_t reserved[2];       /*  56 */
	struct tlsshim_var vars[TLSSHIM_MAX_VARS]; /* 72 */
};

struct tlsshim_slot {
	uint64_t key;       /*  0: SLOT_EMPTY, SLOT_FREE, or the owner's key */
	uint64_t fs_base;   /*  8: the owner's FS base, when known */
	uint64_t tid;       /* 16: the owner's tid */
	uint64_t claims;    /* 24: times this slot was claimed */
	uint64_t reserved[4];
};                          /* 64 bytes; the variables follow */

_Static_assert(sizeof(struct tlsshim_var) == 64, "tlsshim_var is 64 bytes");
_Static_assert(sizeof(struct tlsshim_slot) == SLOT_HEADER, "tlsshim_slot is 64 bytes");
_Static_assert(SLOT_HEADER % TLSSHIM_MAX_ALIGN == 0, "variables after a slot header are aligned");
_Static_assert(sizeof(struct tlsshim_table) <= TABLE_HEADER, "the table header fits its page");
_Static_assert(__builtin_offsetof(struct tlsshim_table, vars) == 72, "vars at 72");

/* A key's home slot, as an offset in bytes from slot 0. Fibonacci hashing:
 * FS bases share their low bits, as TCBs sit at the same offset in each
 * thread's stack mapping, so the product's upper bits pick the slot. The
 * shift is fixed and the mask pre-shifted (slot_mask << stride_shift), so
 * that the get path has no shift by a variable (three micro-ops on Intel
 * cores). 23 is the largest shift that keeps the bits of the largest table
 * (2^20 slots of 2^21 bytes) within the product. tlsd's tracer probes the
 * same way, so this is part of the ABI too. */
#define TLSSHIM_HASH_SHIFT 23

static inline uint64_t tlsshim_home_offset(uint64_t key, uint64_t home_mask)
{
	return (key * 0x9e3779b97f4a7c15ull) >> TLSSHIM_HASH_SHIFT & home_mask;
}

static inline uint32_t tlsshim_home_index(uint64_t key, uint32_t slot_mask, uint32_t stride_shift)
{
	return (uint32_t)(tlsshim_home_offset(key, (uint64_t)slot_mask << stride_shift) >> stride_shift);
}

/* The largest table's home offsets are within the product's 64 bits. */
_Static_assert(TLSSHIM_HASH_SHIFT + 20 + 21 <= 64 && TLSSHIM_MAX_SLOTS == 1u << 20 &&
	       TLSSHIM_MAX_SLOT_BYTES + SLOT_HEADER <= 1u << 21, "tlsshim_home_offset fits every table");

#define ALLOC_VARS(a) ((uint32_t)((a) & 0xffff))
#define ALLOC_BYTES(a) ((uint32_t)((a) >> 32))
#define ALLOC(vars, bytes) ((uint64_t)(bytes) << 32 | (uint64_t)(vars))

#endif
