/* The undo journal: every change the tracer makes to a tracee that must
 * not outlive the operation making it (an injected instruction, borrowed
 * registers) is made through here, which saves what it replaces first.
 * The operation undoes its changes when it is done (journal_undo) or
 * keeps them for good (journal_keep); whatever is still journaled when a
 * thread is detached is undone first (detach.c), so a daemon's EOF or a
 * signal to the tracer never leaves a tracee changed.
 *
 * Entries belong to the thread whose operation made them. Its registers
 * can be restored only while it is in a ptrace-stop; memory is written
 * through /proc/PID/mem (which also writes read-only pages, as an int3 in
 * a program's text needs) while its process lives. */
#ifndef TLSD_JOURNAL_H
#define TLSD_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "arch.h"

/* Writes len bytes at address in process pid, for the operation of its
 * thread tid. -1 with errno, nothing written and nothing journaled. The
 * process's memory outlives the thread: it is undone through pid. */
int journal_write_memory(pid_t tid, pid_t pid, uint64_t address, const void *bytes, size_t len);

/* Sets tid's registers; the ones it had before its first journaled change
 * are what an undo restores. -1 with errno. */
int journal_set_regs(pid_t tid, const arch_regs *r);

/* Undoes tid's entries, newest first. 0, or -1 if one could not be undone
 * (the process is gone, or the thread is not stopped); every entry is
 * forgotten either way. */
int journal_undo(pid_t tid);

/* Forgets tid's entries: its changes stay. */
void journal_keep(pid_t tid);

/* 1 when tid has changes to undo. */
int journal_holds(pid_t tid);

#endif
