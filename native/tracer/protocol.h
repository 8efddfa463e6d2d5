/*
 * The tlsd-tracer wire protocol, version 10. This file is its one
 * definition: daemon/tracer/protocol.ts speaks it, and test/protocol.test.ts
 * checks that every number and every field list below is what the
 * TypeScript side reads and writes. docs/tracer-protocol.md tells how the
 * messages are used together.
 *
 * The daemon and the tracer share one SOCK_STREAM socketpair (fd 3 of the
 * tracer). Every message is a frame:
 *
 *     u32 length      bytes that follow this field
 *     u8  type        one of the TLSD_MSG_* / TLSD_CMD_* values below
 *     ...             the fields listed for that type, in order
 *
 * Integers are little-endian and unaligned. A string is a u32 byte count
 * followed by that many bytes (no terminating NUL). Times are CLOCK_REALTIME
 * nanoseconds. A wait status is the raw int that waitpid(2) stores.
 *
 * Each type's comment starts with its fields, in order, up to " -- "; what
 * the message means follows.
 *
 * exe and cmdline are read from /proc by the tracer while the process is
 * stopped, so a process that is gone a moment later is still described.
 *
 * The first frame the tracer sends is HELLO.
 */
#ifndef TLSD_PROTOCOL_H
#define TLSD_PROTOCOL_H

#define TLSD_PROTOCOL_VERSION 10
#define TLSD_MAX_FRAME (16u << 20) /* bounds a length read from the socket;
                                      a SETTLE of 1.4 million threads fits */

/* daemon -> tracer */
enum tlsd_command {
	TLSD_CMD_ATTACH = 1,  /* u32 req, u32 pid -- seize every thread without
	                         stopping any; answered when no pass over
	                         /proc/PID/task finds a new one. The attach
	                         goes on until SETTLE is answered. */
	TLSD_CMD_SPAWN = 2,   /* u32 req, str path, u32 argc, str argv[argc],
	                         u32 envc, str env[envc], str cwd,
	                         str stdout_path, str stderr_path, u8 shim_mode,
	                         u32 slot_count, u32 slot_bytes, str shim_path,
	                         str shim_socket, str trap, u8 kill_with_daemon,
	                         u32 nrules, nrules times { rule, as in RULES }
	                         -- start a command under the tracer, its rules
	                         in force from its exec. kill_with_daemon: it
	                         dies with the tracer (PTRACE_O_EXITKILL) and
	                         with the daemon, is never detached (EPERM),
	                         and its rules get a seccomp pre-filter.
	                         shim_mode 0: answered with REPLY at its exec;
	                         else the shim is injected there, before its
	                         first instruction, as INJECT does, and the
	                         answer is INJECTED (on failure the process is
	                         killed before it ran). trap, 64 bytes or
	                         empty: the calls the shim's syscall engine
	                         traps, which then starts there too; the
	                         process is then kept stopped at its exec
	                         until HANDOFF */
	TLSD_CMD_DETACH = 3,  /* u32 req, u32 pid, u8 kill, u8 keep_children --
	                         without keep_children, the processes it
	                         forked while supervised (and theirs) are
	                         detached too, each with its DETACHED, before
	                         the reply */
	TLSD_CMD_REFRESH = 4, /* u32 req, u32 tid -- interrupt that one thread
	                         and read its FS base */
	TLSD_CMD_SHIM = 5,    /* u32 req, u32 pid, u64 table -- the address of
	                         the process's libtlsshim table
	                         (native/shim/table.h); the tracer reads its
	                         geometry there and frees the slots of threads
	                         that end holding one. EINVAL: not a table it
	                         can walk */
	TLSD_CMD_SETTLE = 6,  /* u32 req, u32 pid, u32 n, n times { u32 tid,
	                         u64 fs_base } -- ends an attach: the thread
	                         pointers the daemon read in the C library's
	                         thread list; every seized thread whose FS base
	                         is still unknown after these is interrupted
	                         and read at its stop */
	TLSD_CMD_INJECT = 7,  /* u32 req, u32 pid, u8 shim_mode, u32 slot_count,
	                         u32 slot_bytes, str shim_path, str shim_socket,
	                         str trap -- load libtlsshim (shim_path) into the
	                         running process and start it in shim_mode
	                         (enum tlsshim_mode), its agent connecting to
	                         shim_socket; slot_count and slot_bytes 0 are
	                         the shim's defaults; trap must be empty (the
	                         engine starts only in a spawn). Answered
	                         with INJECTED */
	TLSD_CMD_TIDY = 8,    /* u32 req, u32 pid, str shim_path -- remove what
	                         a tracer killed during an injection left in
	                         the process: a stub page, a shim that never
	                         started. REPLY: threads = mappings removed,
	                         passes = injected shims that started, kept */
	TLSD_CMD_RULES = 9,   /* u32 req, u32 pid, u32 nrules, nrules times
	                         { u32 id, str syscalls, u32 ntids, u32 tid,
	                         str path, str path_args, u8 fault, u64 value,
	                         u8 signal, u32 delay_enter_us,
	                         u32 delay_exit_us, u32 first, u32 last,
	                         u32 step, u8 trace, u8 shim } -- replaces the
	                         process's syscall rules (syscalls.h says what
	                         each field means): syscalls is a bitmap of 64
	                         bytes (bit nr: call nr), path_args 512 bytes
	                         (1 + the index of call nr's path argument, 0:
	                         none) or empty, path empty for any; shim 1:
	                         the rule goes to the process's shim once it
	                         is up (HANDOFF), and is the tracer's until
	                         then and again from each exec. Its threads
	                         stop at their syscalls while it has rules in
	                         force here. EBUSY: those rules need it
	                         traced, and it is released with another
	                         program tracing it; its rules are
	                         unchanged. REPLY: threads */
	TLSD_CMD_COUNTS = 10, /* u32 req, u32 pid -- sends every SYSCALL_COUNT
	                         of the process not sent yet, then REPLY */
	TLSD_CMD_HANDOFF = 11, /* u32 req, u32 pid -- the process's shim applies
	                         its shim rules from now on, until its next
	                         exec: the tracer stops applying them and lets
	                         the process it kept at its exec go (its
	                         program has made no call yet: no count nor
	                         when= count to hand over). If the tracer
	                         then applies none of its rules, the process
	                         is released: its threads are
	                         detached, and followed through the kernel's
	                         process events (its shim's agent thread
	                         stays traced) until its execve or a RULES
	                         that gives the tracer rules. REPLY: threads */
	TLSD_CMD_ENGINE = 12, /* u32 req, u32 pid, str shim_path, str trap --
	                         starts the syscall engine of the shim loaded
	                         in the running process (shim_path: its file,
	                         for its layout), its filter trapping the calls
	                         in trap (64 bytes, bit nr: call nr): each
	                         thread but the shim's agent is given the
	                         filter, and from then on the tracer leaves
	                         the process's shim rules to the shim for that
	                         thread's calls (before any HANDOFF). Threads
	                         made since by one with the filter have it.
	                         Answered with INJECTED: tid is the first
	                         thread given the filter, base the shim's,
	                         stopped_ns the longest any thread was
	                         stopped, interrupted how many threads have
	                         the filter; on failure, the threads given
	                         the filter keep it */
};

/* tracer -> daemon */
enum tlsd_message {
	TLSD_MSG_HELLO = 1,          /* u32 version, u32 tracer_pid */
	TLSD_MSG_REPLY = 2,          /* u32 req, i32 errno, u32 pid, u32 threads,
	                                u64 value, u32 passes, u32 interrupted --
	                                errno 0 is success. ATTACH: threads
	                                seized and passes. SETTLE: threads,
	                                passes, interrupted (threads stopped to
	                                read their FS base) and value, the longest
	                                one of them can have been stopped (its
	                                stop minus the last time it was seen
	                                running), in ns. REFRESH: value is the FS
	                                base */
	TLSD_MSG_PROCESS_NEW = 3,    /* u32 pid, u8 origin, u32 parent_pid,
	                                u32 parent_tid, u8 shim, u64 time,
	                                str exe, str cmdline -- shim is 1 when it
	                                has a copy of its parent's libtlsshim
	                                table, which the tracer fixes at its
	                                first stop; cmdline is NUL-separated, as
	                                in /proc */
	TLSD_MSG_THREAD_NEW = 4,     /* u32 pid, u32 tid, u32 parent_tid,
	                                u64 fs_base, u8 source, u64 time */
	TLSD_MSG_THREAD_FSBASE = 5,  /* u32 pid, u32 tid, u64 fs_base, u8 source */
	TLSD_MSG_THREAD_EXITING = 6, /* u32 pid, u32 tid, i32 exit_status,
	                                u8 exit_call, u64 time, u8 shim -- its
	                                PTRACE_EVENT_EXIT; shim is 1 when it held
	                                a libtlsshim slot, which the tracer
	                                freed */
	TLSD_MSG_THREAD_GONE = 7,    /* u32 pid, u32 tid, i32 wait_status,
	                                u64 time -- reaped; tid == pid ends the
	                                process */
	TLSD_MSG_EXEC = 8,           /* u32 pid, u32 former_tid, u64 fs_base,
	                                u64 time, str exe, str cmdline */
	TLSD_MSG_DETACHED = 9,       /* u32 pid */
	TLSD_MSG_LOG = 10,           /* u8 level, str text */
	TLSD_MSG_INJECTED = 11,      /* u32 req, i32 errno, u32 pid, u32 tid,
	                                u64 base, u64 stopped_ns, u32 interrupted,
	                                u8 step, str reason -- the answer to
	                                INJECT (and to a SPAWN with a shim, and
	                                to ENGINE, which says what its fields
	                                are): errno 0 when the shim started, loaded at
	                                base; tid is the thread borrowed,
	                                stopped_ns how long it was stopped,
	                                interrupted how many threads were
	                                stopped to choose it; else step is how
	                                far it went (enum tlsd_inject_step) and
	                                reason says why, for a person */
	TLSD_MSG_SYSCALL = 12,       /* u32 pid, u32 tid, u32 rule, u32 nr,
	                                u64 arg0, u64 arg1, u64 arg2, u64 arg3,
	                                u64 arg4, u64 arg5, u64 retval,
	                                u64 duration_ns, u8 flags, u64 time,
	                                str path -- one call a rule with trace
	                                selected, at its exit (flags:
	                                enum tlsd_syscall_flag); retval is
	                                what the program got, path its path
	                                argument if it has one */
	TLSD_MSG_SYSCALL_COUNT = 13, /* u32 pid, u32 tid, u32 nr, u32 calls,
	                                u32 errors, u64 time_ns -- calls of nr
	                                by tid that rules selected since the
	                                last SYSCALL_COUNT of the same tid and
	                                nr: sent at least every 250 ms, at the
	                                thread's end, and on COUNTS */
};

/* SYSCALL flags: what was done to the call */
enum tlsd_syscall_flag {
	TLSD_SYSCALL_INJECTED = 1,  /* its result was injected (error or retval) */
	TLSD_SYSCALL_SIGNALED = 2,  /* a signal was sent at its entry */
	TLSD_SYSCALL_DELAYED = 4,
	TLSD_SYSCALL_NO_RETURN = 8, /* exit or exit_group: it never returned */
};

/* PROCESS_NEW origin */
enum tlsd_origin {
	TLSD_ORIGIN_ATTACH = 0,
	TLSD_ORIGIN_SPAWN = 1,
	TLSD_ORIGIN_FORK = 2,
	TLSD_ORIGIN_VFORK = 3,
	TLSD_ORIGIN_CLONE = 4, /* clone() without CLONE_THREAD */
};

/* where an FS base value came from (Thread.fsBaseSource, docs/api.md) */
enum tlsd_fs_source {
	TLSD_FS_ATTACH = 0,
	TLSD_FS_CLONE = 1,
	TLSD_FS_EXEC = 2,
	TLSD_FS_STOP = 3,
	TLSD_FS_REFRESH = 4,
};

/* THREAD_EXITING exit_call: the call of its own the thread ends in */
enum tlsd_exit_call {
	TLSD_EXIT_CALL_NONE = 0, /* a signal, another thread's exit_group or exec */
	TLSD_EXIT_CALL_EXIT = 1,
	TLSD_EXIT_CALL_EXIT_GROUP = 2,
};

/* INJECTED step: how far an injection went (native/tracer/inject.c) */
enum tlsd_inject_step {
	TLSD_INJECT_CHECKS = 0, /* before any thread was stopped */
	TLSD_INJECT_BORROW = 1,
	TLSD_INJECT_STUB = 2,
	TLSD_INJECT_MEMFD = 3,
	TLSD_INJECT_IMAGE = 4,
	TLSD_INJECT_MAP = 5,
	TLSD_INJECT_START = 6,
	TLSD_INJECT_CLEANUP = 7,
	TLSD_INJECT_DONE = 8,
};

enum tlsd_log_level {
	TLSD_LOG_DEBUG = 0,
	TLSD_LOG_INFO = 1,
	TLSD_LOG_WARN = 2,
	TLSD_LOG_ERROR = 3,
};

#endif
