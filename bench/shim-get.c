/* The cost of one libtlsshim get, next to a native __thread access and a
 * __tls_get_addr call (a general-dynamic variable in a dlopen'ed library),
 * in one process, in one mode:
 *
 *   shim-get thread-pointer|thread-pointer-syscall|tid LIBTLSGD
 *
 * Prints "RESULT name ns" lines: nanoseconds per access, the best of many
 * short runs. The accesses take turns within each repetition, so that a
 * second in which the machine is busy elsewhere slows them all, and noise
 * only ever adds time. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include "tlsshim.h"

#define REPEAT 100
#define barrier() __asm__ volatile("" ::: "memory")

static __thread long native_counter;
static int handle;
static long *(*gd_address)(void);
static unsigned long sink;

/* Each access finds the variable and increments it. */
static void native(void) { native_counter++; }
static void tls_get_addr(void) { (*gd_address())++; }
static void shim_get(void) { (*(long *)tlsshim_get(handle))++; }
/* A claim: a release, then the next get takes a slot and zeroes it. */
static void shim_claim(void) { tlsshim_release(); (*(long *)tlsshim_get(handle))++; }
/* rdfsbase alone, the floor of a get in thread-pointer mode. */
static void rdfsbase(void)
{
	unsigned long v;
	__asm__ volatile("rdfsbase %0" : "=r"(v));
	sink += v;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Inlined into each runner below, so that `once` is a direct call that
 * is inlined in turn: every access is timed in the same loop. */
static inline __attribute__((always_inline)) double time_run(void (*once)(void), long n)
{
	double t0 = now_ns();
	for (long i = 0; i < n; i++) { once(); barrier(); }
	return (now_ns() - t0) / n;
}

/* run_native(n) and so on: one timed run of n accesses, in ns per access. */
#define RUNNER(f) static double run_##f(long n) { return time_run(f, n); }
RUNNER(native)
RUNNER(tls_get_addr)
RUNNER(shim_get)
RUNNER(shim_claim)
RUNNER(rdfsbase)

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: shim-get thread-pointer|thread-pointer-syscall|tid LIBTLSGD\n");
		return 2;
	}
	int tid = !strcmp(argv[1], "tid");
	struct tlsshim_context ctx = {
		.version = TLSSHIM_VERSION,
		.mode = tid ? TLSSHIM_MODE_TID : TLSSHIM_MODE_THREAD_POINTER,
		/* Without FSGSBASE the thread pointer comes from arch_prctl. */
		.hwcap2 = !strcmp(argv[1], "thread-pointer") ? getauxval(AT_HWCAP2) : 0,
	};
	if (tlsshim_start(&ctx)) return 1;
	handle = tlsshim_register(sizeof(long), sizeof(long), "bench");
	void *lib = dlopen(argv[2], RTLD_NOW);
	if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
	gd_address = (long *(*)(void))dlsym(lib, "gd_address");

	int syscalls = tid || !tlsshim_uses_rdfsbase();
	long fast = 1000000, slow = 50000;
	struct {
		const char *name;
		double (*run)(long n);
		long per_run; /* accesses per timed run, a few milliseconds' worth; 0: not timed */
		double best;
	} accesses[] = {
		{ "native", run_native, fast, 1e300 },
		{ "tls_get_addr", run_tls_get_addr, fast, 1e300 },
		{ "shim_get", run_shim_get, syscalls ? slow : fast, 1e300 },
		{ "shim_claim", run_shim_claim, slow / 5, 1e300 },
		/* Without FSGSBASE the instruction would fault. */
		{ "rdfsbase", run_rdfsbase, syscalls ? 0 : fast, 1e300 },
	};
	size_t count = sizeof accesses / sizeof accesses[0];
	for (int r = 0; r < REPEAT; r++) {
		for (size_t i = 0; i < count; i++) {
			if (!accesses[i].per_run) continue;
			double ns = accesses[i].run(accesses[i].per_run);
			if (ns < accesses[i].best) accesses[i].best = ns;
		}
	}
	for (size_t i = 0; i < count; i++)
		if (accesses[i].per_run) printf("RESULT %s %.2f\n", accesses[i].name, accesses[i].best);
	return native_counter > 0 ? 0 : 1;
}
