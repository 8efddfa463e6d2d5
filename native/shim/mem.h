/* The few memory functions the shim needs, without libc. */
#ifndef TLSSHIM_MEM_H
#define TLSSHIM_MEM_H

#include <stddef.h>

void *shim_memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);

#endif
