/* memset and memcpy: the compiler may emit calls to them for struct
 * copies and zeroing even in freestanding code (GCC's manual, "Standards":
 * a freestanding program must provide memcpy, memmove, memset and memcmp).
 * Hidden, so that they bind here and never to the host's libc. */
#include <stddef.h>
#include "mem.h"

#define HIDDEN __attribute__((visibility("hidden")))

/* The loops are kept loops: without this GCC turns them back into calls
 * to memset and memcpy, that is, into themselves. */
#define NO_BUILTIN __attribute__((optimize("no-tree-loop-distribute-patterns")))

HIDDEN NO_BUILTIN void *memset(void *dst, int c, size_t n)
{
	unsigned char *d = dst;
	while (n--) *d++ = (unsigned char)c;
	return dst;
}

HIDDEN NO_BUILTIN void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--) *d++ = *s++;
	return dst;
}

HIDDEN void *shim_memset(void *dst, int c, size_t n) { return memset(dst, c, n); }
