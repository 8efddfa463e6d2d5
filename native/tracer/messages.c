/* Every tracer -> daemon message, encoded as protocol.h describes. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "protocol.h"
#include "tracer.h"

void send_syscall(pid_t pid, pid_t tid, uint32_t rule, uint16_t nr, const uint64_t args[6], int64_t retval,
		  uint64_t duration_ns, uint8_t flags, const char *path)
{
	out_begin(&out, TLSD_MSG_SYSCALL);
	out_u32(&out, (uint32_t)pid);
	out_u32(&out, (uint32_t)tid);
	out_u32(&out, rule);
	out_u32(&out, nr);
	for (int i = 0; i < 6; i++)
		out_u64(&out, args[i]);
	out_u64(&out, (uint64_t)retval);
	out_u64(&out, duration_ns);
	out_u8(&out, flags);
	out_u64(&out, now_ns());
	out_str(&out, path ? path : "", path ? strlen(path) : 0);
	out_end(&out);
}

void send_syscall_count(pid_t pid, pid_t tid, uint16_t nr, uint32_t calls, uint32_t errors, uint64_t time_ns)
{
	out_begin(&out, TLSD_MSG_SYSCALL_COUNT);
	out_u32(&out, (uint32_t)pid);
	out_u32(&out, (uint32_t)tid);
	out_u32(&out, nr);
	out_u32(&out, calls);
	out_u32(&out, errors);
	out_u64(&out, time_ns);
	out_end(&out);
}

void send_injected(uint32_t req, int err, pid_t pid, pid_t tid, uint64_t base, uint64_t stopped_ns,
		   uint32_t interrupted, uint8_t step, const char *reason)
{
	out_begin(&out, TLSD_MSG_INJECTED);
	out_u32(&out, req);
	out_u32(&out, (uint32_t)err);
	out_u32(&out, (uint32_t)pid);
	out_u32(&out, (uint32_t)tid);
	out_u64(&out, base);
	out_u64(&out, stopped_ns);
	out_u32(&out, interrupted);
	out_u8(&out, step);
	out_str(&out, reason, strlen(reason));
	out_end(&out);
	out_urgent(&out);
}

/* What the process runs: /proc/PID/exe and /proc/PID/cmdline, read now
 * (the caller has it stopped, or knows it cannot have been reaped). */
static void out_process_image(pid_t pid)
{
	char path[64], exe[4096], cmdline[8192];
	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	ssize_t n = readlink(path, exe, sizeof exe);
	out_str(&out, exe, n > 0 ? (size_t)n : 0);
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? 0 : read(fd, cmdline, sizeof cmdline);
	if (fd >= 0)
		close(fd);
	out_str(&out, cmdline, n > 0 ? (size_t)n : 0);
}

void send_reply(struct reply r)
{
	out_begin(&out, TLSD_MSG_REPLY);
	out_u32(&out, r.req);
	out_u32(&out, (uint32_t)r.err);
	out_u32(&out, (uint32_t)r.pid);
	out_u32(&out, r.threads);
	out_u64(&out, r.value);
	out_u32(&out, r.passes);
	out_u32(&out, r.interrupted);
	out_end(&out);
	out_urgent(&out);
}

void send_process_new(pid_t pid, int origin, pid_t parent_pid, pid_t parent_tid, int shim)
{
	out_begin(&out, TLSD_MSG_PROCESS_NEW);
	out_u32(&out, (uint32_t)pid);
	out_u8(&out, (uint8_t)origin);
	out_u32(&out, (uint32_t)parent_pid);
	out_u32(&out, (uint32_t)parent_tid);
	out_u8(&out, (uint8_t)shim);
	out_u64(&out, now_ns());
	out_process_image(pid);
	out_end(&out);
}

void send_thread_new(const struct thread *t)
{
	out_begin(&out, TLSD_MSG_THREAD_NEW);
	out_u32(&out, (uint32_t)t->pid);
	out_u32(&out, (uint32_t)t->tid);
	out_u32(&out, (uint32_t)t->parent_tid);
	out_u64(&out, t->fs_base);
	out_u8(&out, t->source);
	out_u64(&out, now_ns());
	out_end(&out);
}

void send_fs_base(const struct thread *t, int source)
{
	out_begin(&out, TLSD_MSG_THREAD_FSBASE);
	out_u32(&out, (uint32_t)t->pid);
	out_u32(&out, (uint32_t)t->tid);
	out_u64(&out, t->fs_base);
	out_u8(&out, (uint8_t)source);
	out_end(&out);
}

void send_thread_exiting(const struct thread *t, int exit_status, uint8_t exit_call, int shim_reclaimed)
{
	out_begin(&out, TLSD_MSG_THREAD_EXITING);
	out_u32(&out, (uint32_t)t->pid);
	out_u32(&out, (uint32_t)t->tid);
	out_u32(&out, (uint32_t)exit_status);
	out_u8(&out, exit_call);
	out_u64(&out, now_ns());
	out_u8(&out, shim_reclaimed ? 1 : 0);
	out_end(&out);
}

void send_thread_gone(pid_t pid, pid_t tid, int wait_status)
{
	out_begin(&out, TLSD_MSG_THREAD_GONE);
	out_u32(&out, (uint32_t)pid);
	out_u32(&out, (uint32_t)tid);
	out_u32(&out, (uint32_t)wait_status);
	out_u64(&out, now_ns());
	out_end(&out);
}

void send_exec(pid_t pid, pid_t former_tid, uint64_t fs_base)
{
	out_begin(&out, TLSD_MSG_EXEC);
	out_u32(&out, (uint32_t)pid);
	out_u32(&out, (uint32_t)former_tid);
	out_u64(&out, fs_base);
	out_u64(&out, now_ns());
	out_process_image(pid);
	out_end(&out);
}

void send_detached(pid_t pid)
{
	out_begin(&out, TLSD_MSG_DETACHED);
	out_u32(&out, (uint32_t)pid);
	out_end(&out);
}
