/* Starting the shim (tls.c): what tlsshim_start does, for a caller in the
 * program and for an injection's entry (inject.c), whose borrowed thread
 * blocks every signal already, so that the start need not block them
 * around the agent's clone. */
#ifndef TLSSHIM_START_H
#define TLSSHIM_START_H

#include "tlsshim.h"

int shim_start(const struct tlsshim_context *ctx, int signals_blocked);

#endif
