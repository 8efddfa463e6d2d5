/* Letting go of a process whose shim's engine has every rule, and
 * following it without ptrace meanwhile (release.c). */
#ifndef TLSD_RELEASE_H
#define TLSD_RELEASE_H

struct process;
struct thread;

/* Lets go of p if nothing needs it traced: its shim has all its rules
 * (HANDOFF), the tracer applies none, the kernel's process events can be
 * had, and its end can be known (it was spawned here, or a pidfd). Each
 * thread is detached at its next stop. */
void maybe_release(struct process *p);
/* At a stop of a thread being released: detaches it (delivering signal);
 * 0 when it is not being released. */
int release_at_stop(struct thread *t, int signal);
/* A thread of a released process is seized (not stopped), to be let go
 * at its next stop: the caller interrupts it for what it must read. */
void seize_for_a_stop(struct thread *t);
/* Seizes every thread of a released process again (none is stopped).
 * EBUSY, and it stays released, when another program traces one. */
int retake(struct process *p);
/* p is no longer released: detached, or taken along by a detach. */
void release_dropped(struct process *p);
/* Its leader was reaped: the threads it still has ended with it. */
void release_group_ended(struct process *p, int status);
/* Reads the process events that came, and the pidfds of processes that
 * ended (main.c, when one of them is readable, and before anything that
 * must know them all). */
void release_events(void);

/* main.c: adds the events socket, or a pidfd, to the loop's epoll set. */
void events_watch(int fd);

#endif
