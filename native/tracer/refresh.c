/* Read one thread's FS base on demand by briefly interrupting it alone
 * (docs/architecture.md invariant 3). The answer comes from its next stop. */
#include <errno.h>
#include <sys/ptrace.h>

#include "arch.h"
#include "release.h"
#include "tracer.h"

void refresh_fs_base(uint32_t req, pid_t tid)
{
	struct thread *t = thread_find(tid);
	if (!t || !(t->flags & T_ANNOUNCED)) {
		send_reply((struct reply){ .req = req, .err = ESRCH, .pid = tid });
		return;
	}
	if (t->nrefresh == MAX_REFRESH_WAITERS) {
		send_reply((struct reply){ .req = req, .err = EBUSY, .pid = tid });
		return;
	}
	t->refresh[t->nrefresh++] = req;
	seize_for_a_stop(t); /* a released one: let go after it */
	if (t->flags & T_DETACH_LAST) { /* already in a ptrace-stop */
		uint64_t fs_base;
		if (arch_read_fs_base(tid, &fs_base) == 0)
			note_fs_base(t, fs_base);
		return;
	}
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0) {
		/* Gone, or past its exit event: it will not stop again. */
		t->nrefresh--;
		send_reply((struct reply){ .req = req, .err = errno, .pid = tid });
	}
}
