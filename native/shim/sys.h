/* Raw system calls, thread-pointer reads and a raw clone: the shim has
 * no libc.
 *
 * x86-64 only (the syscall instruction; numbers from
 * arch/x86/entry/syscalls/syscall_64.tbl; rdfsbase; the clone gadget's
 * registers). An aarch64 port replaces this file: svc #0, and tpidr_el0
 * for the thread pointer. */
#ifndef TLSSHIM_SYS_H
#define TLSSHIM_SYS_H

#include <stdint.h>

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_poll 7
#define SYS_mmap 9
#define SYS_munmap 11
#define SYS_rt_sigprocmask 14
#define SYS_getpid 39
#define SYS_socket 41
#define SYS_connect 42
#define SYS_clone 56
#define SYS_exit 60
#define SYS_arch_prctl 158
#define SYS_gettid 186
#define SYS_openat 257
#define SYS_eventfd2 290

#define AT_FDCWD -100
#define O_RDONLY 0
#define O_CLOEXEC 02000000
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_NORESERVE 0x4000
#define SIG_SETMASK 2
#define ARCH_GET_FS 0x1003
#define AT_HWCAP2 26
#define HWCAP2_FSGSBASE (1u << 1)

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
	if (sys_failed(sys2(SYS_arch_prctl, ARCH_GET_FS, &v))) return 0;
	return v;
}

/* All signals blocked (the kernel ignores SIGKILL and SIGSTOP in the set);
 * `old` gets the mask to restore. The kernel's sigset is 8 bytes. */
static inline void block_signals(uint64_t *old)
{
	uint64_t all = ~0ull;
	sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, old, sizeof all);
}

static inline void restore_signals(const uint64_t *old)
{
	sys4(SYS_rt_sigprocmask, SIG_SETMASK, old, 0, sizeof *old);
}

/* clone(2) without libc: the child starts on `stack` with the parent's
 * registers, so `fn` travels in a callee-saved register; it calls fn and
 * ends itself with SYS_exit. */
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
		"mov $60, %%eax\n\t" /* SYS_exit: this thread only */
		"syscall\n\t"
		"hlt\n"
		"1:"
		: "=a"(ret)
		: "a"(SYS_clone), "D"(flags), "S"(stack_top), "d"(0), "r"(r10), "r"(r8), "r"(r12)
		: "rcx", "r11", "memory");
	return ret;
}

#endif
