/* libtlsshim slots of threads that end holding one (shim.c). */
#ifndef TLSD_SHIM_H
#define TLSD_SHIM_H

#include <sys/types.h>
#include "tracees.h"

/* Reads the geometry of the shim table at `table` in p's memory, and
 * keeps it if it is one the tracer can walk. -1 (p unchanged) if not. */
int shim_adopt(struct process *p, uint64_t table);

/* At `tid`'s exit stop: frees its slot, if it holds one. 1 when it did. */
int shim_reclaim(pid_t pid, const struct shim_table *s, pid_t tid, uint64_t fs_base);

/* At the first stop of a thread born traced, its process known: if it is
 * a forked child that inherited a shim table (not a vfork: a child
 * sharing its parent's memory has nothing of its own to fix), fixes it. */
void shim_first_stop(const struct thread *t);

/* 1 when two processes share one address space (kcmp KCMP_VM). */
int shares_memory(pid_t a, pid_t b);

#endif
