/* x86-64 only. */
#include "arch.h"
#include "protocol.h"

#include <errno.h>
#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <elf.h> /* NT_PRSTATUS, NT_X86_XSTATE */
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

#ifndef __x86_64__
#error "arch_x86_64.c is for x86-64; write arch_<your arch>.c"
#endif

/* clone3(2): struct clone_args (linux/sched.h), flags at 0, tls at 56. */
struct clone_args_head {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void read_clone3_args(pid_t tid, uint64_t args, struct stop_regs *r)
{
	struct clone_args_head head = { 0 };
	struct iovec local = { &head, sizeof head };
	struct iovec remote = { (void *)args, sizeof head };
	if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != sizeof head)
		return;
	r->clone_flags = head.flags;
	r->clone_tls = head.tls;
}

int arch_get_regs(pid_t tid, arch_regs *r)
{
	struct iovec v = { r, sizeof *r };
	return ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &v) < 0 ? -1 : 0;
}

int arch_set_regs(pid_t tid, const arch_regs *r)
{
	struct iovec v = { (void *)r, sizeof *r };
	return ptrace(PTRACE_SETREGSET, tid, (void *)NT_PRSTATUS, &v) < 0 ? -1 : 0;
}

int arch_read_regs(pid_t tid, struct stop_regs *r)
{
	arch_regs regs;
	if (arch_get_regs(tid, &regs) < 0)
		return -1;
	r->fs_base = regs.fs_base;
	r->exit_call = regs.orig_rax == SYS_exit ? TLSD_EXIT_CALL_EXIT
		       : regs.orig_rax == SYS_exit_group ? TLSD_EXIT_CALL_EXIT_GROUP
							  : TLSD_EXIT_CALL_NONE;
	r->arg0 = regs.rdi;
	r->clone_flags = r->clone_tls = 0;
	/* docs/ptrace.md: at a clone event stop the parent's registers still hold
	 * the arguments: clone(flags = rdi, ..., tls = r8), clone3(&args = rdi). */
	if (regs.orig_rax == SYS_clone) {
		r->clone_flags = regs.rdi;
		r->clone_tls = regs.r8;
	} else if (regs.orig_rax == SYS_clone3) {
		read_clone3_args(tid, regs.rdi, r);
	}
	return 0;
}

/* One register of a stopped thread, by its place in struct user. */
static int poke_reg(pid_t tid, size_t offset, uint64_t value)
{
	return ptrace(PTRACE_POKEUSER, tid, (void *)(offsetof(struct user, regs) + offset), (void *)value) < 0 ? -1 : 0;
}

int arch_set_syscall_nr(pid_t tid, long nr)
{
	return poke_reg(tid, offsetof(struct user_regs_struct, orig_rax), (uint64_t)nr);
}

int arch_set_syscall_result(pid_t tid, int64_t value)
{
	return poke_reg(tid, offsetof(struct user_regs_struct, rax), (uint64_t)value);
}

int arch_read_fs_base(pid_t tid, uint64_t *fs_base)
{
	errno = 0;
	long v = ptrace(PTRACE_PEEKUSER, tid,
			(void *)offsetof(struct user_regs_struct, fs_base), 0);
	if (errno)
		return -1;
	*fs_base = (uint64_t)v;
	return 0;
}

/* The calls a stop makes fail with EINTR even without a signal handler
 * (signal(7), "Interruption of system calls and library functions by stop
 * signals"), with where their timeout is: restarted only when they have
 * none, for a restart cannot know how much of one is left. Arguments are
 * in rdi, rsi, rdx, r10, r8, r9 (asm/unistd_64.h numbers). */
enum timeout_kind { NO_TIMEOUT, NEGATIVE_MS_IS_NONE, NULL_POINTER_IS_NONE };
static const struct { long nr; int arg; enum timeout_kind kind; } stop_interrupted_waits[] = {
	{ SYS_epoll_wait, 3, NEGATIVE_MS_IS_NONE },
	{ SYS_epoll_pwait, 3, NEGATIVE_MS_IS_NONE },
	{ SYS_epoll_pwait2, 3, NULL_POINTER_IS_NONE },
	{ SYS_rt_sigtimedwait, 2, NULL_POINTER_IS_NONE },
	{ SYS_semop, 0, NO_TIMEOUT },
	{ SYS_semtimedop, 3, NULL_POINTER_IS_NONE },
};

static unsigned long long syscall_arg(const struct user_regs_struct *r, int i)
{
	const unsigned long long args[] = { r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9 };
	return args[i];
}

static int waits_without_timeout(const struct user_regs_struct *r)
{
	for (size_t i = 0; i < sizeof stop_interrupted_waits / sizeof stop_interrupted_waits[0]; i++) {
		if ((long long)r->orig_rax != stop_interrupted_waits[i].nr)
			continue;
		unsigned long long timeout = syscall_arg(r, stop_interrupted_waits[i].arg);
		switch (stop_interrupted_waits[i].kind) {
		case NO_TIMEOUT: return 1;
		case NEGATIVE_MS_IS_NONE: return (int)timeout < 0;
		case NULL_POINTER_IS_NONE: return timeout == 0;
		}
	}
	return 0;
}

int arch_restart_interrupted_wait(pid_t tid, int sig, int (*may_restart)(pid_t tid, int sig))
{
	arch_regs r;
	if (arch_get_regs(tid, &r) < 0)
		return 0;
	/* The call has returned: rax holds -EINTR, orig_rax the call. */
	if ((long long)r.rax != -EINTR || !waits_without_timeout(&r) || !may_restart(tid, sig))
		return 0;
	/* What the kernel does for a call it restarts by itself: the call
	 * number back in rax, and rip back onto the 2-byte `syscall`. */
	errno = 0;
	long code = ptrace(PTRACE_PEEKTEXT, tid, (void *)(r.rip - 2), 0);
	if (errno || (code & 0xffff) != 0x050f)
		return 0;
	r.rax = r.orig_rax;
	r.rip -= 2;
	return arch_set_regs(tid, &r) == 0;
}

/* --- Running code in a tracee --- */

int arch_get_xstate(pid_t tid, struct arch_xstate *x)
{
	/* Asked with room to spare: a buffer of the wrong size is EFAULT
	 * on some kernels, and the size is the machine's (docs/ptrace.md). */
	enum { ROOM = 64 * 1024 };
	x->bytes = malloc(ROOM);
	if (!x->bytes)
		abort();
	struct iovec v = { x->bytes, ROOM };
	if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &v) < 0) {
		free(x->bytes);
		x->bytes = NULL;
		return -1;
	}
	x->len = v.iov_len;
	return 0;
}

int arch_set_xstate(pid_t tid, const struct arch_xstate *x)
{
	struct iovec v = { x->bytes, x->len };
	return ptrace(PTRACE_SETREGSET, tid, (void *)NT_X86_XSTATE, &v) < 0 ? -1 : 0;
}

/* Kernel-internal results that mean "restart me" (include/linux/errno.h);
 * they reach user space only when nothing restarts the call. */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

int arch_in_syscall(const arch_regs *r) { return (long long)r->orig_rax >= 0; }

arch_regs arch_restart_form(const arch_regs *r)
{
	arch_regs f = *r;
	f.orig_rax = (unsigned long long)-1;
	if (!arch_in_syscall(r))
		return f;
	switch (-(long long)r->rax) {
	case ERESTARTSYS:
	case ERESTARTNOINTR:
	case ERESTARTNOHAND:
		/* No handler runs: each of these restarts (signal(7)). */
		f.rax = r->orig_rax;
		f.rip -= ARCH_SYSCALL_INSN_LEN;
		break;
	case ERESTART_RESTARTBLOCK:
		/* Goes on from the thread's restart block (a sleep's end time):
		 * what arch/x86/kernel/signal.c does with no handler to run. */
		f.rax = SYS_restart_syscall;
		f.rip -= ARCH_SYSCALL_INSN_LEN;
		break;
	}
	return f;
}

void arch_set_syscall(arch_regs *r, uint64_t at, uint64_t sp, long nr, const uint64_t args[6])
{
	r->rip = at;
	r->rsp = sp;
	r->rax = (unsigned long long)nr;
	r->orig_rax = (unsigned long long)-1; /* in no call: none to restart */
	r->rdi = args[0];
	r->rsi = args[1];
	r->rdx = args[2];
	r->r10 = args[3];
	r->r8 = args[4];
	r->r9 = args[5];
}

void arch_set_call(arch_regs *r, uint64_t fn, uint64_t sp, uint64_t arg)
{
	r->rip = fn;
	r->rsp = sp;
	r->rdi = arg;
	r->rax = 0;
	r->orig_rax = (unsigned long long)-1;
	r->eflags &= ~(1ull << 10); /* DF clear at a call (SysV ABI 3.2.1) */
}

long arch_syscall_result(const arch_regs *r) { return (long)r->rax; }

uint64_t arch_program_counter(const arch_regs *r) { return r->rip; }

/* The 64-bit user code segment (arch/x86/include/asm/segment.h). */
#define USER_CS 0x33

int arch_is_native(const arch_regs *r) { return r->cs == USER_CS; }

/* The kernel's signal frame on x86-64 (arch/x86/include/asm/sigframe.h,
 * uapi/asm/sigcontext.h, uapi/asm/ucontext.h), written out so that every
 * offset is visible. */
struct k_sigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint64_t fpstate; /* the extended state's address, 64-byte aligned */
	uint64_t reserved1[8];
};
struct k_ucontext {
	uint64_t uc_flags;
	uint64_t uc_link;
	struct { uint64_t ss_sp; int32_t ss_flags; int32_t pad; uint64_t ss_size; } uc_stack;
	struct k_sigcontext uc_mcontext;
	uint64_t uc_sigmask; /* the kernel's sigset_t: 64 signals */
};
struct k_rt_sigframe {
	uint64_t pretcode;
	struct k_ucontext uc;
	uint8_t info[128]; /* siginfo_t */
};
_Static_assert(sizeof(struct k_sigcontext) == 256, "struct sigcontext is 256 bytes");
_Static_assert(sizeof(struct k_rt_sigframe) == 440, "struct rt_sigframe is 440 bytes");

#define UC_FP_XSTATE 0x1
#define UC_SIGCONTEXT_SS 0x2
#define UC_STRICT_RESTORE_SS 0x4
#define FP_XSTATE_MAGIC1 0x46505853u
#define FP_XSTATE_MAGIC2 0x46505845u
/* struct _fpx_sw_bytes lies in the FXSAVE area's software-reserved bytes. */
#define FPX_SW_BYTES 464
#define XSAVE_HEADER 512
#define XSAVE_LEGACY_AND_HEADER 576
/* AMX tile data: a feature a process must ask for (arch_prctl
 * ARCH_REQ_XCOMP_PERM); a thread that never did has a smaller signal
 * frame, and the kernel refuses a larger one (it then restores only the
 * FXSAVE part, silently). */
#define XFEATURE_XTILE_DATA 18

/* Where the frame lies from `at`: the return address at 56 (8 mod 16, as
 * a function expects its stack at entry), the extended state at 512. */
#define FRAME_AT 56
#define FPSTATE_AT 512

/* The size of the extended state in a signal frame of this thread: the
 * end of the last feature it has, by CPUID leaf 0xD (the standard format's
 * offsets). */
static size_t frame_xstate_size(const struct arch_xstate *x)
{
	uint64_t xcr0, xstate_bv;
	memcpy(&xcr0, x->bytes + FPX_SW_BYTES, sizeof xcr0); /* ptrace puts XCR0 there */
	memcpy(&xstate_bv, x->bytes + XSAVE_HEADER, sizeof xstate_bv);
	if (xstate_bv & (1ull << XFEATURE_XTILE_DATA))
		return x->len; /* it has the permission, and its frames are full size */
	size_t end = XSAVE_LEGACY_AND_HEADER;
	for (unsigned i = 2; i < 63; i++) {
		if (!(xcr0 & (1ull << i)) || i == XFEATURE_XTILE_DATA)
			continue;
		unsigned eax, ebx, ecx, edx;
		__cpuid_count(0xd, i, eax, ebx, ecx, edx);
		(void)ecx, (void)edx;
		if (ebx + eax > end)
			end = ebx + eax;
	}
	return end < x->len ? end : x->len;
}

size_t arch_sigframe_size(const struct arch_xstate *x)
{
	return (FPSTATE_AT + frame_xstate_size(x) + sizeof(uint32_t) + 63) & ~(size_t)63;
}

int arch_build_sigframe(uint8_t *buf, uint64_t at, const arch_regs *r, const struct arch_xstate *x,
			uint64_t sigmask, uint64_t return_to, struct arch_sigframe_sp *sp)
{
	size_t xsize = frame_xstate_size(x);
	if ((at & 63) || x->len < XSAVE_LEGACY_AND_HEADER) {
		errno = EINVAL;
		return -1;
	}
	memset(buf, 0, arch_sigframe_size(x));
	struct k_rt_sigframe f = { .pretcode = return_to };
	f.uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
	/* uc_stack zero: rt_sigreturn then keeps the thread's alternate
	 * stack as it is (it ignores the error of setting an empty one). */
	struct k_sigcontext *c = &f.uc.uc_mcontext;
	*c = (struct k_sigcontext){
		.r8 = r->r8, .r9 = r->r9, .r10 = r->r10, .r11 = r->r11, .r12 = r->r12, .r13 = r->r13,
		.r14 = r->r14, .r15 = r->r15, .rdi = r->rdi, .rsi = r->rsi, .rbp = r->rbp, .rbx = r->rbx,
		.rdx = r->rdx, .rax = r->rax, .rcx = r->rcx, .rsp = r->rsp, .rip = r->rip, .eflags = r->eflags,
		.cs = (uint16_t)r->cs, .ss = (uint16_t)r->ss, .fpstate = at + FPSTATE_AT,
	};
	f.uc.uc_sigmask = sigmask;
	memcpy(buf + FRAME_AT, &f, sizeof f);

	/* The extended state as a signal frame has it: the software bytes
	 * say how much follows, and a second magic word ends it. */
	uint8_t *fp = buf + FPSTATE_AT;
	memcpy(fp, x->bytes, xsize);
	uint64_t xcr0;
	memcpy(&xcr0, x->bytes + FPX_SW_BYTES, sizeof xcr0);
	if (xsize < x->len)
		xcr0 &= ~(1ull << XFEATURE_XTILE_DATA);
	struct { uint32_t magic1, extended_size; uint64_t xfeatures; uint32_t xstate_size, padding[7]; } sw = {
		.magic1 = FP_XSTATE_MAGIC1, .extended_size = (uint32_t)(xsize + sizeof(uint32_t)),
		.xfeatures = xcr0, .xstate_size = (uint32_t)xsize,
	};
	_Static_assert(sizeof sw == 48, "struct _fpx_sw_bytes is 48 bytes");
	memcpy(fp + FPX_SW_BYTES, &sw, sizeof sw);
	uint32_t magic2 = FP_XSTATE_MAGIC2;
	memcpy(fp + xsize, &magic2, sizeof magic2);

	sp->call_sp = at + FRAME_AT;
	sp->sigreturn_sp = at + FRAME_AT + sizeof f.pretcode;
	return 0;
}
