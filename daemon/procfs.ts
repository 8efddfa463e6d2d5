/* What /proc says about a process or thread (proc(5)). */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { asPid, type Pid, type Tid } from './types.js';

export interface ProcStatus {
  tgid: number;
  tracerPid: Pid; // 0: not traced
  uid: number;
  kernelThread: boolean;
  /** A zombie, or dead: its threads have all exited. */
  exiting: boolean;
}

/** Throws ENOENT when the process does not exist. */
export function readStatus(pid: Pid): ProcStatus {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => text.match(new RegExp(`^${name}:\\s*(\\d+)`, 'm'))?.[1];
  const kthread = text.match(/^Kthread:\s*(\d)/m)?.[1];
  return {
    tgid: asPid(Number(field('Tgid'))),
    tracerPid: asPid(Number(field('TracerPid') ?? 0)),
    uid: Number(field('Uid')),
    // Kernel threads have no executable (docs/ptrace.md "Attach to a
    // running process", step 1).
    kernelThread: kthread !== undefined ? kthread === '1' : readExe(pid) === undefined,
    exiting: /^State:\s*[ZX]/m.test(text),
  };
}

export function readExe(pid: Pid): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

export interface ThreadStat {
  name: string;
  state: string;
}

const stateNames: Record<string, string> = {
  R: 'running', S: 'sleeping', D: 'disk-sleep', T: 'stopped', t: 'tracing-stop',
  Z: 'zombie', X: 'dead', I: 'idle', P: 'parked', W: 'waking',
};

/** A /proc/.../stat line split into fields, from field 1 (pid) on (proc(5)):
 * fields[n - 1] is field n. comm (field 2) is in parentheses and may itself
 * contain ')' or spaces, so the rest is split after its last ')'. */
export function statFields(text: string): string[] {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  return [text.slice(0, open - 1), text.slice(open + 1, close), ...text.slice(close + 2).split(' ')];
}

/** Name and scheduler state of a thread, or undefined once it is gone. */
export function readThreadStat(pid: Pid, tid: Tid): ThreadStat | undefined {
  try {
    const [, name = '', letter = ''] = statFields(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
    return { name, state: stateNames[letter] ?? letter };
  } catch {
    return undefined;
  }
}

/* USER_HZ: the unit of /proc/PID/stat times, 100 on every Linux ABI. */
const CLOCK_TICKS_PER_SECOND = 100;
let bootTimeMs: number | undefined;

/** When the process started (proc(5): stat field 22, ticks since boot). */
export function readStartTime(pid: Pid): Date | undefined {
  try {
    bootTimeMs ??= Number(readFileSync('/proc/stat', 'utf8').match(/^btime (\d+)/m)?.[1]) * 1000;
    const ticks = Number(statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[22 - 1]);
    return Number.isFinite(ticks) ? new Date(bootTimeMs + (ticks * 1000) / CLOCK_TICKS_PER_SECOND) : undefined;
  } catch {
    return undefined;
  }
}

/** The auxiliary vector the kernel gave the program at exec (getauxval(3)). */
export function readAuxv(pid: Pid): Map<bigint, bigint> {
  const raw = readFileSync(`/proc/${pid}/auxv`);
  const auxv = new Map<bigint, bigint>();
  for (let at = 0; at + 16 <= raw.length; at += 16) {
    const type = raw.readBigUInt64LE(at);
    if (type === 0n) break; // AT_NULL
    auxv.set(type, raw.readBigUInt64LE(at + 8));
  }
  return auxv;
}

/** The stack pointer of a thread blocked in the kernel, from
 * /proc/PID/task/TID/syscall ("NR six-args sp pc", or "-1 sp pc" when
 * blocked outside a syscall); undefined while it runs, or once it is gone.
 * Reading it does not stop the thread. */
export function blockedStackPointer(pid: Pid, tid: Tid): bigint | undefined {
  let fields: string[];
  try {
    fields = readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').trim().split(' ');
  } catch {
    return undefined;
  }
  const sp = fields.length === 9 ? fields[7] : fields.length === 3 ? fields[1] : undefined;
  return sp?.startsWith('0x') ? BigInt(sp) : undefined;
}

export interface Mapping {
  start: bigint;
  end: bigint;
  /** e.g. rw-p */
  perms: string;
}

/** /proc/PID/maps, in address order. */
export function readMappings(pid: Pid): Mapping[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').flatMap((line) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+)/.exec(line);
    return m ? [{ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3]! }] : [];
  });
}

/** The tids in /proc/PID/task; empty once the process is gone. */
export function readTaskIds(pid: Pid): Set<Tid> {
  try {
    return new Set(readdirSync(`/proc/${pid}/task`).map((name) => Number(name) as Tid));
  } catch {
    return new Set();
  }
}

const CAP_SYS_PTRACE = 19n; // <linux/capability.h>
const YAMA_NO_ATTACH = 3; // kernel.yama.ptrace_scope: no process may be traced

/** Whether this daemon may trace any process it is allowed to ask for: it
 * has CAP_SYS_PTRACE and Yama does not forbid tracing altogether. Then a
 * refused seize is about the target (it is exiting), not about us. */
export function mayTraceAnything(): boolean {
  const capEff = readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s*([0-9a-f]+)/m)?.[1];
  if (!capEff || !((BigInt(`0x${capEff}`) >> CAP_SYS_PTRACE) & 1n)) return false;
  try {
    return Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8')) < YAMA_NO_ATTACH;
  } catch {
    return true; // no Yama
  }
}

/** What /proc/PID/cmdline says now: a program may have rewritten it
 * (nginx's "nginx: worker process", postgres's backends). The NULs that
 * pad a rewritten one are trimmed; empty arguments between are kept.
 * Undefined once the process is gone (or a zombie, whose is empty). */
export function readCmdline(pid: Pid): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '');
    return text ? text.split('\0') : undefined;
  } catch {
    return undefined;
  }
}
