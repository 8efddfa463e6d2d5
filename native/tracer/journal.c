/* The undo journal (journal.h): a list of saved bytes and registers,
 * newest first. Operations are few and short, so a list is enough. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum entry_kind { MEMORY, REGISTERS };

struct entry {
	struct entry *next;
	pid_t tid;          /* whose operation made it */
	pid_t pid;          /* MEMORY: whose memory */
	enum entry_kind kind;
	uint64_t address;   /* MEMORY */
	size_t len;
	arch_regs regs;     /* REGISTERS: as they were */
	unsigned char old[]; /* MEMORY: as it was */
};

static struct entry *entries;

static int mem_fd(pid_t pid, int flags)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", pid);
	return open(path, flags | O_CLOEXEC);
}

static int mem_io(pid_t pid, uint64_t address, void *buf, size_t len, int writing)
{
	int fd = mem_fd(pid, writing ? O_RDWR : O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = writing ? pwrite(fd, buf, len, (off_t)address) : pread(fd, buf, len, (off_t)address);
	int saved = errno;
	close(fd);
	if (n == (ssize_t)len)
		return 0;
	errno = n < 0 ? saved : EIO;
	return -1;
}

static struct entry *add(pid_t tid, enum entry_kind kind, size_t len)
{
	struct entry *e = calloc(1, sizeof *e + len);
	if (!e)
		abort(); /* out of memory: dying detaches every tracee */
	e->tid = tid;
	e->kind = kind;
	e->len = len;
	e->next = entries;
	entries = e;
	return e;
}

static void drop_newest(void)
{
	struct entry *e = entries;
	entries = e->next;
	free(e);
}

int journal_write_memory(pid_t tid, pid_t pid, uint64_t address, const void *bytes, size_t len)
{
	struct entry *e = add(tid, MEMORY, len);
	e->pid = pid;
	e->address = address;
	if (mem_io(pid, address, e->old, len, 0) < 0 || mem_io(pid, address, (void *)bytes, len, 1) < 0) {
		int saved = errno;
		drop_newest();
		errno = saved;
		return -1;
	}
	return 0;
}

static int has_registers(pid_t tid)
{
	for (struct entry *e = entries; e; e = e->next)
		if (e->tid == tid && e->kind == REGISTERS)
			return 1;
	return 0;
}

int journal_set_regs(pid_t tid, const arch_regs *r)
{
	if (!has_registers(tid)) {
		struct entry *e = add(tid, REGISTERS, 0);
		if (arch_get_regs(tid, &e->regs) < 0) {
			int saved = errno;
			drop_newest();
			errno = saved;
			return -1;
		}
	}
	return arch_set_regs(tid, r);
}

/* Removes tid's entries from the list, newest first, and gives each to fn. */
static int take(pid_t tid, int (*fn)(struct entry *))
{
	int result = 0;
	for (struct entry **at = &entries; *at;) {
		struct entry *e = *at;
		if (e->tid != tid) {
			at = &e->next;
			continue;
		}
		*at = e->next;
		if (fn && fn(e) < 0)
			result = -1;
		free(e);
	}
	return result;
}

static int undo_one(struct entry *e)
{
	return e->kind == MEMORY ? mem_io(e->pid, e->address, e->old, e->len, 1) : arch_set_regs(e->tid, &e->regs);
}

int journal_undo(pid_t tid) { return take(tid, undo_one); }

void journal_keep(pid_t tid) { take(tid, NULL); }

int journal_holds(pid_t tid)
{
	for (struct entry *e = entries; e; e = e->next)
		if (e->tid == tid)
			return 1;
	return 0;
}
