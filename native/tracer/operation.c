/* Operations in progress (operation.h). */
#include "operation.h"

#include "journal.h"
#include "protocol.h"
#include "tracer.h"

void operation_begin(struct thread *t, struct operation *op) { t->op = op; }

void operation_end(struct thread *t) { t->op = NULL; }

int operation_stop(struct thread *t, int status)
{
	return t->op && t->op->on_stop(t, status, t->op->state);
}

void operation_abandon(struct thread *t)
{
	struct operation *op = t->op;
	t->op = NULL;
	if (op && op->on_abandon)
		op->on_abandon(t, op->state);
	if (journal_holds(t->tid) && journal_undo(t->tid) < 0)
		tlog(TLSD_LOG_WARN, "could not undo every change to thread %d", t->tid);
}
