/* The cost of one libtlsshim get, next to a native __thread access and a
 * __tls_get_addr call (a general-dynamic variable in a dlopen'ed
 * library), in one process, in one mode:
 *
 *   shim-get thread-pointer|thread-pointer-syscall|tid LIBTLSGD
 *
 * Prints "RESULT name ns" lines: nanoseconds per access, the best of a
 * few repetitions (noise only ever adds time). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include "tlsshim.h"

#define REPEAT 10
#define barrier() __asm__ volatile("" ::: "memory")

static __thread long native_counter;

static inline unsigned long rdfsbase(void)
{
	unsigned long v;
	__asm__ volatile("rdfsbase %0" : "=r"(v));
	return v;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define MEASURE(name, n, body) do { \
	double best = 1e300; \
	for (int r = 0; r < REPEAT; r++) { \
		double t0 = now_ns(); \
		for (long i = 0; i < (n); i++) { body; barrier(); } \
		double ns = (now_ns() - t0) / (n); \
		if (ns < best) best = ns; \
	} \
	printf("RESULT %s %.2f\n", name, best); \
} while (0)

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
	int h = tlsshim_register(sizeof(long), sizeof(long), "bench");
	void *lib = dlopen(argv[2], RTLD_NOW);
	if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
	long *(*gd_address)(void) = (long *(*)(void))dlsym(lib, "gd_address");

	int syscalls = tid || !tlsshim_uses_rdfsbase();
	long fast = 20000000, slow = 1000000;
	/* Each access finds the variable and increments it. */
	MEASURE("native", fast, native_counter++);
	MEASURE("tls_get_addr", fast, (*gd_address())++);
	MEASURE("shim_get", syscalls ? slow : fast, (*(long *)tlsshim_get(h))++);
	/* A claim: a release, then the next get takes a slot and zeroes it. */
	MEASURE("shim_claim", slow / 4, (tlsshim_release(), (*(long *)tlsshim_get(h))++));
	/* rdfsbase alone, the floor of a get in thread-pointer mode. */
	if (!syscalls) {
		unsigned long sum = 0;
		MEASURE("rdfsbase", fast, sum += rdfsbase());
		if (sum == 1) return 1;
	}
	return native_counter > 0 ? 0 : 1;
}
