/* Start a command under the tracer (docs/ptrace.md "Spawn"): the child waits on
 * a pipe until it is seized, so it can never be leaked stopped; if the
 * tracer dies before saying go, the child reads EOF and exits. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "inject.h"
#include "protocol.h"
#include "syscalls.h"
#include "tracer.h"

static int open_output(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void report_and_exit(int fd, int err)
{
	(void)!write(fd, &err, sizeof err);
	_exit(127);
}

static void run_child(int go, int failed, int out_fd, int err_fd,
		      const char *path, char **argv, char **envp, const char *cwd, const uint8_t *prefilter)
{
	/* Undo what the tracer set up for itself: the child starts as a
	 * process started from a shell would. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	restore_scheduling();
	setsid();
	int null_fd = open("/dev/null", O_RDONLY);
	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		report_and_exit(failed, errno);
	/* Nothing of the tracer's (its daemon socket above all) may survive
	 * the exec; the pipes are needed until then, so close on exec only. */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	char go_byte;
	if (read(go, &go_byte, 1) != 1)
		_exit(127); /* the tracer is gone: never run untraced */
	if (cwd[0] && chdir(cwd) < 0)
		report_and_exit(failed, errno);
	if (prefilter && install_prefilter(prefilter) < 0)
		report_and_exit(failed, errno);
	execve(path, argv, envp);
	report_and_exit(failed, errno);
}

void spawn_process(uint32_t req, const char *path, char **argv, char **envp, const char *cwd,
		   const char *out_path, const char *err_path, const struct inject_request *inject,
		   struct ruleset *rules, int kill_with_daemon)
{
	/* The pre-filter, only for a process that dies with the tracer. */
	uint8_t prefilter[SYSCALL_NR_MAX / 8];
	ruleset_union(rules, prefilter);
	int filtered = kill_with_daemon && rules && rules->n;
	long options = TRACE_OPTIONS | (kill_with_daemon ? PTRACE_O_EXITKILL | PTRACE_O_TRACESECCOMP : 0);
	int go[2] = { -1, -1 }, failed[2] = { -1, -1 };
	int out_fd = open_output(out_path);
	int err_fd = out_fd < 0 ? -1 : open_output(err_path);
	if (out_fd < 0 || err_fd < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(failed, O_CLOEXEC) < 0) {
		int err = errno;
		send_reply((struct reply){ .req = req, .err = err });
		goto out;
	}
	pid_t pid = fork();
	if (pid < 0) {
		send_reply((struct reply){ .req = req, .err = errno });
		goto out;
	}
	if (pid == 0)
		run_child(go[0], failed[1], out_fd, err_fd, path, argv, envp, cwd, filtered ? prefilter : NULL);

	close(go[0]);
	close(failed[1]);
	go[0] = failed[1] = -1;
	if (ptrace(PTRACE_SEIZE, pid, 0, (void *)options) < 0) {
		int err = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, __WALL);
		send_reply((struct reply){ .req = req, .err = err });
		goto out;
	}
	struct process *p = process_add(pid);
	p->flags = P_SPAWNING | P_SPAWNED;
	p->req = req;
	if (inject)
		p->inject = inject_request_copy(inject);
	p->rules = rules; /* its threads stop at syscalls from its exec stop */
	rules = NULL;
	if (kill_with_daemon)
		p->flags |= P_KILL_WITH_DAEMON;
	if (filtered) {
		p->flags |= P_PREFILTER;
		memcpy(p->prefilter, prefilter, sizeof prefilter);
		p->prefilter_covers = 1; /* the filter is made of its rules */
	}
	struct thread *t = thread_add(pid);
	thread_claim(t, pid);
	t->source = TLSD_FS_EXEC;

	(void)!write(go[1], "g", 1);
	/* EOF: the exec happened (the pipe is close-on-exec, closed before the
	 * exec event stop, so this cannot wait on a stopped child). */
	int err = 0;
	ssize_t n;
	do
		n = read(failed[0], &err, sizeof err);
	while (n < 0 && errno == EINTR);
	if (n == sizeof err) {
		p->flags = P_SILENT; /* it exits at once; reap it quietly */
		send_reply((struct reply){ .req = req, .err = err });
	}
	/* Otherwise the reply is sent at its exec stop (events.c). */
out:
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (failed[i] >= 0)
			close(failed[i]);
	}
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	ruleset_free(rules); /* not taken: the spawn failed */
}
