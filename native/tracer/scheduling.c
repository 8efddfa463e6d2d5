/* The tracer runs at a higher priority (main.c says why); a process it
 * spawns gets the original priority back before its exec, since fork
 * copies it. */
#include <errno.h>
#include <sys/resource.h>

#include "tracer.h"

static int original_nice;
static int remembered;

void remember_scheduling(void)
{
	errno = 0;
	original_nice = getpriority(PRIO_PROCESS, 0);
	remembered = errno == 0;
}

void restore_scheduling(void)
{
	if (remembered)
		setpriority(PRIO_PROCESS, 0, original_nice);
}
