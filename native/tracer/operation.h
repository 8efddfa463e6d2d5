/* An operation in progress on one thread: something the tracer does to it
 * across several of its stops (running a syscall in it, loading the shim
 * through it). While a thread has one, each of its stops goes to the
 * operation before lifecycle handling, so that a stop the operation caused
 * (the SIGTRAP of an int3 it placed) is never taken for the program's own
 * and re-injected into it. Its changes to the tracee go through the undo
 * journal (journal.h). */
#ifndef TLSD_OPERATION_H
#define TLSD_OPERATION_H

struct thread;

struct operation {
	const char *name;
	/* A stop of the thread, status as waitpid(2) gives it. Returns 1 when
	 * the operation took it (and restarted the thread or keeps it
	 * stopped), 0 to leave it to lifecycle handling. */
	int (*on_stop)(struct thread *t, int status, void *state);
	/* The operation ends unfinished: the thread died, or is being let go
	 * (its journaled changes are undone after this, the thread stopped). */
	void (*on_abandon)(struct thread *t, void *state);
	void *state;
};

/* Gives the thread's next stops to op. The thread has none in progress. */
void operation_begin(struct thread *t, struct operation *op);
/* The operation is done: stops go to lifecycle handling again. */
void operation_end(struct thread *t);
/* Hands a stop to the thread's operation, if it has one: 1 if taken. */
int operation_stop(struct thread *t, int status);
/* Ends the thread's operation, if any, unfinished, and undoes what it
 * changed: before a detach (the thread stopped) and at its death. */
void operation_abandon(struct thread *t);

#endif
