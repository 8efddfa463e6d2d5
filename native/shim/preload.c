/* Starting the shim when a dynamic linker loads it (LD_PRELOAD): a
 * constructor in .init_array builds the context from the environment and
 * the auxiliary vector, and calls tlsshim_start like any other loader.
 *
 * Both are read from /proc/self: musl calls constructors without
 * arguments (glibc passes argc, argv, envp), and the shim has no environ.
 * Nothing happens unless TLSSHIM_MODE is set: a program may link the shim
 * and start it itself. */
#include <stdint.h>
#include "sys.h"
#include "tlsshim.h"

/* execve takes at most 3/4 of _STK_LIM (8 MiB) for argv and the
 * environment together, however large the stack limit (fs/exec.c,
 * bprm_stack_limits, since Linux 4.13); the TLSSHIM_* variables a spawn
 * appends come last, so the whole of it must fit. The mapping is backed
 * only as far as it is written. */
#define PROC_BUFFER (6 * 1024 * 1024 + 4096)

struct proc_file {
	char *data;
	long length;
};

/* The whole of a /proc/self file, in a private mapping (the shim has no
 * heap and its callers' stacks may be small). */
static int read_proc(const char *path, struct proc_file *f)
{
	long m = sys6(__NR_mmap, 0, PROC_BUFFER, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sys_failed(m)) return -1;
	long fd = sys4(__NR_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (sys_failed(fd)) {
		sys2(__NR_munmap, m, PROC_BUFFER);
		return -1;
	}
	f->data = (char *)m;
	f->length = 0;
	for (;;) {
		long n = sys3(__NR_read, fd, f->data + f->length, PROC_BUFFER - 1 - f->length);
		if (n <= 0) break;
		f->length += n;
	}
	sys1(__NR_close, fd);
	f->data[f->length] = 0;
	return 0;
}

static void free_proc(struct proc_file *f) { sys2(__NR_munmap, f->data, PROC_BUFFER); }

/* The value of NAME in a NUL-separated environment block, or NULL. */
static const char *env_value(const struct proc_file *env, const char *name)
{
	for (long at = 0; at < env->length;) {
		const char *entry = env->data + at;
		long i = 0;
		while (name[i] && entry[i] == name[i]) i++;
		if (!name[i] && entry[i] == '=') return entry + i + 1;
		while (at < env->length && env->data[at]) at++;
		at++;
	}
	return 0;
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b) a++, b++;
	return *a == *b;
}

static uint32_t decimal(const char *s)
{
	uint64_t v = 0;
	for (; s && *s >= '0' && *s <= '9' && v <= UINT32_MAX; s++) v = v * 10 + (uint64_t)(*s - '0');
	return v > UINT32_MAX || (s && *s) ? UINT32_MAX : (uint32_t)v; /* junk: refused by tlsshim_start */
}

static uint64_t hwcap2(void)
{
	struct proc_file auxv;
	uint64_t value = 0;
	if (read_proc("/proc/self/auxv", &auxv)) return 0;
	const uint64_t *a = (const uint64_t *)auxv.data;
	for (long i = 0; (i + 2) * 8 <= auxv.length && a[i]; i += 2) {
		if (a[i] == AT_HWCAP2) value = a[i + 1];
	}
	free_proc(&auxv);
	return value;
}

__attribute__((constructor)) static void tlsshim_preload(void)
{
	struct proc_file env;
	if (read_proc("/proc/self/environ", &env)) return;
	const char *mode = env_value(&env, "TLSSHIM_MODE");
	if (mode) {
		struct tlsshim_context ctx = {
			.version = TLSSHIM_VERSION,
			.mode = same(mode, "tid") ? TLSSHIM_MODE_TID : same(mode, "thread-pointer") ? TLSSHIM_MODE_THREAD_POINTER : 0,
			.slot_count = env_value(&env, "TLSSHIM_SLOTS") ? decimal(env_value(&env, "TLSSHIM_SLOTS")) : 0,
			.slot_bytes = env_value(&env, "TLSSHIM_SLOT_BYTES") ? decimal(env_value(&env, "TLSSHIM_SLOT_BYTES")) : 0,
			.hwcap2 = hwcap2(),
			.socket_path = env_value(&env, "TLSSHIM_SOCKET"),
		};
		/* A bad setting leaves the shim unstarted (its calls then say
		 * TLSSHIM_ENOTSTARTED); the host runs on either way. */
		tlsshim_start(&ctx);
	}
	free_proc(&env);
}
