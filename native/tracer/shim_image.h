/* libtlsshim.so as the tracer loads it into a process (inject.c): the
 * file checked against the rules that let a loader other than ld.so load
 * it (docs/shim.md), and its image relocated for a base address. */
#ifndef TLSD_SHIM_IMAGE_H
#define TLSD_SHIM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define SHIM_MAX_SEGMENTS 8

struct shim_segment {
	uint64_t start, end; /* page-rounded, from the base */
	int prot;            /* PROT_* */
};

struct shim_image {
	uint8_t *file;
	size_t file_len;
	uint64_t span;       /* page-rounded bytes of all PT_LOADs */
	struct shim_segment seg[SHIM_MAX_SEGMENTS];
	int nseg;
	uint64_t relro_start, relro_end; /* page-rounded; start == end: none */
	/* The injection ABI (native/shim/inject.h), from the base. */
	uint64_t entry, gadget, sigreturn, area, engine_entry;
	uint64_t rela, rela_len, relr, relr_len; /* file offsets */
};

/* Reads and checks the file; on failure says why in `why`. 0 or -1. */
int shim_image_load(const char *path, struct shim_image *im, char *why, size_t why_len);

/* The span's bytes as they must be at `base`: segments placed, the rest
 * zero, relocations applied. malloc'd. */
uint8_t *shim_image_build(const struct shim_image *im, uint64_t base);

void shim_image_free(struct shim_image *im);

#endif
