/* Starting the shim's syscall engine in a running, supervised process
 * whose shim is loaded (engine.c). */
#ifndef TLSD_ENGINE_H
#define TLSD_ENGINE_H

#include <stdint.h>
#include <sys/types.h>

/* ENGINE: gives each thread of pid but the shim's agent the engine's
 * filter, trapping the calls in `trap` (bit nr: call nr) and those the
 * engine always handles; shim_path is the shim's file (its layout).
 * Answered with INJECTED. */
void engine_start_process(uint32_t req, pid_t pid, const char *shim_path, const uint8_t trap[64]);

#endif
