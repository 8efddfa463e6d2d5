/* The shim's IPC with tlsd: an agent thread of its own, the only writer on
 * the socket; application threads only put events in a ring and never
 * wait. */
#ifndef TLSSHIM_IPC_H
#define TLSSHIM_IPC_H

#include <stdint.h>
#include "table.h"

enum shim_event_kind { EVENT_CLAIMED = 1, EVENT_RELEASED = 2 };

/* Starts the agent thread, which connects to `socket_path` and says
 * hello; `signals_blocked`: the caller blocks every signal already (an
 * injection's borrowed thread). 0, or -1 when it could not be started
 * (the shim works on). */
int ipc_start(struct tlsshim_table *table, const char *socket_path, int signals_blocked);

/* From any thread, also in a signal handler: never blocks; when the ring
 * is full the event is counted as dropped. A no-op without an agent. */
void ipc_event(enum shim_event_kind kind, uint32_t slot, uint64_t key, uint64_t tid);

/* Wakes the agent when it sleeps: a traced call, or a call it must make
 * for a thread, is waiting (engine.c). Async-signal-safe. */
void ipc_wake(void);
/* Whether the agent is connected to tlsd. */
int ipc_connected(void);
/* Keeps the agent for good, also once tlsd is gone: the engine needs it.
 * 0, or -1 when it has ended already. */
int ipc_hold_agent(void);

#endif
