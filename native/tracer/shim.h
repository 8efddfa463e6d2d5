/* libtlsshim slots of threads that end holding one (shim.c). */
#ifndef TLSD_SHIM_H
#define TLSD_SHIM_H

#include <sys/types.h>
#include "table.h"

/* At `tid`'s exit stop: frees its slot, if it holds one. 1 when it did. */
int shim_reclaim(pid_t pid, const struct shim_table *s, pid_t tid, uint64_t fs_base);

#endif
