/* Raw system calls, thread-pointer reads and a raw clone: the shim has
 * no libc.
 *
 * x86-64 only (the syscall instruction; rdfsbase; the clone gadget's
 * registers). An aarch64 port replaces this file: svc #0, and tpidr_el0
 * for the thread pointer. */
#ifndef TLSSHIM_SYS_H
#define TLSSHIM_SYS_H

#include <stdint.h>

/* The kernel's own user-space headers (no libc in them): syscall numbers,
 * flags and constants come from the same place as the kernel's. */
#include <asm/hwcap2.h>      /* HWCAP2_FSGSBASE */
#include <linux/mman.h>      /* PROT_*, MAP_* */
#include <asm/prctl.h>       /* ARCH_GET_FS */
#include <asm/signal.h>      /* SIG_SETMASK */
#include <asm/unistd.h>      /* __NR_* */
#include <linux/auxvec.h>    /* AT_HWCAP2 */
#include <linux/errno.h>     /* EINTR */
#include <linux/fcntl.h>     /* AT_FDCWD, O_* */

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define sys0(n) sys6((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* A failed raw syscall returns -errno, in [-4095, -1]. */
static inline int sys_failed(long ret) { return (unsigned long)ret > -4096ul; }

/* The FS base with the rdfsbase instruction: only when AT_HWCAP2 says the
 * kernel enabled it (CR4.FSGSBASE), or it raises #UD. */
static inline uint64_t read_fs_base_insn(void)
{
	uint64_t v;
	__asm__ volatile("rdfsbase %0" : "=r"(v));
	return v;
}

static inline uint64_t read_fs_base_syscall(void)
{
	uint64_t v = 0;
	if (sys_failed(sys2(__NR_arch_prctl, ARCH_GET_FS, &v))) return 0;
	return v;
}

/* All signals blocked (the kernel ignores SIGKILL and SIGSTOP in the set);
 * `old` gets the mask to restore. The kernel's sigset is 8 bytes. */
static inline void block_signals(uint64_t *old)
{
	uint64_t all = ~0ull;
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, &all, old, sizeof all);
}

static inline void restore_signals(const uint64_t *old)
{
	sys4(__NR_rt_sigprocmask, SIG_SETMASK, old, 0, sizeof *old);
}

/* clone(2) without libc: the child starts on `stack` with the parent's
 * registers, so `fn` travels in a callee-saved register; it calls fn and
 * ends itself with __NR_exit. */
static inline long raw_clone(unsigned long flags, void *stack_top, void *tls, int (*fn)(void))
{
	register long r10 __asm__("r10") = 0; /* child_tid */
	register long r8 __asm__("r8") = (long)tls;
	register int (*r12)(void) __asm__("r12") = fn;
	long ret;
	__asm__ volatile(
		"syscall\n\t"
		"test %%rax, %%rax\n\t"
		"jnz 1f\n\t"
		"xor %%ebp, %%ebp\n\t" /* the outermost frame */
		"call *%%r12\n\t"
		"mov %%eax, %%edi\n\t"
		"mov %[exit], %%eax\n\t" /* this thread only */
		"syscall\n\t"
		"hlt\n"
		"1:"
		: "=a"(ret)
		: "a"(__NR_clone), "D"(flags), "S"(stack_top), "d"(0), "r"(r10), "r"(r8), "r"(r12), [exit] "i"(__NR_exit)
		: "rcx", "r11", "memory");
	return ret;
}

#endif
