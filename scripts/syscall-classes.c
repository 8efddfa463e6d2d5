/* Makes (nearly) every x86-64 syscall number once, with arguments of 0,
 * no C library and no startup, then crashes. Under `strace -e trace=%CLASS`
 * it shows which calls strace puts in %CLASS; scripts/syscall-table.sh
 * uses that to write daemon/syscalls/table.ts. Skipped: the calls that,
 * made with zeros, would end the program, block it, fork it, or change
 * the machine (their classes are written in syscall-table.sh). */
static const short skipped[] = {
	15,  /* rt_sigreturn */
	23,  /* select: would block for ever */
	34,  /* pause */
	56, 57, 58, /* clone, fork, vfork */
	60,  /* exit */
	64, 68, /* semget, msgget: would make an IPC object */
	153, /* vhangup */
	170, 171, /* sethostname, setdomainname */
	231, /* exit_group */
	246, 320, /* kexec_load, kexec_file_load */
	270, 271, /* pselect6, ppoll: would block */
	313, /* finit_module */
	317, /* seccomp: 0 is strict mode */
	335, /* uretprobe: SIGILL outside a uretprobe trampoline */
};

void _start(void)
{
	for (long nr = 0; nr < 512; nr++) {
		int skip = 0;
		for (unsigned i = 0; i < sizeof skipped / sizeof skipped[0]; i++)
			skip |= skipped[i] == nr;
		if (skip)
			continue;
		long ret;
		__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(0), "S"(0), "d"(0) : "rcx", "r11", "memory");
	}
	*(volatile int *)0 = 0;
	for (;;)
		;
}
