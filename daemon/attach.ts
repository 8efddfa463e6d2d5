/* Attaching to a running process: what is refused before the tracer is
 * asked (docs/ptrace.md "Attach to a running process", step 1), the
 * attach itself (seize every thread without stopping one, then settle the
 * thread pointers the C library's own list gives), and what the tracer's
 * errno means. */
import os from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { Logger } from 'pino';
import type { AttachPolicy } from './attach-policy.js';
import { TlsdError } from './errors.js';
import { mayTraceAnything, readExe, readStatus, readTaskIds } from './procfs.js';
import type { Registry } from './registry.js';
import { readThreadList } from './thread-list/thread-list.js';
import type { TracerReply } from './tracer/client.js';
import type { TracerRequest } from './tracer/keeper.js';
import type { Address, Pid, Tid } from './types.js';

const { ESRCH, EPERM, EEXIST } = os.constants.errno;

export interface Preflight {
  policy: AttachPolicy;
  tracerPid: Pid | undefined;
  /** tlsd supervises it already, or is attaching to it now. */
  supervised(pid: Pid): boolean;
}

/** Refuses what must not be traced, with the reason. */
export function preflightAttach(pid: Pid, { policy, tracerPid, supervised }: Preflight): void {
  if (pid === 1) throw new TlsdError('FORBIDDEN', 'pid 1 (init) is never traced');
  if (pid === process.pid) throw new TlsdError('FORBIDDEN', `pid ${pid} is the tlsd daemon itself`);
  if (pid === tracerPid) throw new TlsdError('FORBIDDEN', `pid ${pid} is tlsd's own tracer`);
  let status;
  try {
    status = readStatus(pid);
  } catch {
    throw new TlsdError('NOT_FOUND', `no process ${pid}`);
  }
  if (status.kernelThread) throw new TlsdError('FORBIDDEN', `pid ${pid} is a kernel thread`);
  if (status.tgid !== pid) throw new TlsdError('INVALID_ARGUMENT', `${pid} is a thread of process ${status.tgid}, not a process`);
  policy.checkAttach(pid, status.uid, readExe(pid));
  if (supervised(pid)) throw new TlsdError('ALREADY_TRACED', `process ${pid} is already supervised by tlsd (tracer pid ${tracerPid})`);
  if (status.tracerPid !== 0) throw new TlsdError('ALREADY_TRACED', `process ${pid} is already traced by pid ${status.tracerPid}`);
}

/** Seizes every thread without stopping one, then gives the tracer the
 * thread pointers the C library's own list accounts for: only the others
 * are interrupted (native/tracer/attach.c). */
export async function attachThreads(request: (c: TracerRequest) => Promise<TracerReply>, registry: Registry, pid: Pid, log: Logger): Promise<TracerReply> {
  const seized = await request({ type: 'attach', pid });
  if (seized.errno !== 0) return seized;
  return request({ type: 'settle', pid, threadPointers: threadList(registry, pid, log) });
}

function threadList(registry: Registry, pid: Pid, log: Logger): Map<Tid, Address> {
  const p = registry.get(pid);
  if (!p) return new Map();
  try {
    return readThreadList(pid, p.exe, p, readTaskIds(pid));
  } catch (e) {
    log.debug({ err: e, tracee: pid }, 'no thread list: every thread is read at a stop');
    return new Map();
  }
}

/** What a failed attach's errno means for the caller. */
export function attachError(pid: Pid, errno: number): TlsdError {
  const exited = new TlsdError('NOT_FOUND', `process ${pid} exited before it could be attached`);
  if (errno === ESRCH) return exited;
  if (errno === EEXIST) return new TlsdError('ALREADY_TRACED', `process ${pid} is already supervised by tlsd`);
  if (errno === EPERM) {
    // The kernel refuses to seize a thread that is exiting with EPERM
    // too: that is not a matter of permission.
    let status;
    try { status = readStatus(pid); } catch { return exited; }
    if (status.tracerPid) return new TlsdError('ALREADY_TRACED', `process ${pid} is already traced by pid ${status.tracerPid}`);
    if (status.exiting || mayTraceAnything()) return new TlsdError('NOT_FOUND', `process ${pid} is exiting: there is nothing left to attach`);
    return new TlsdError('FORBIDDEN', `not permitted to trace process ${pid} (needs root or CAP_SYS_PTRACE)`);
  }
  return new TlsdError('INTERNAL', `attach to ${pid} failed: ${getSystemErrorName(-errno)}`);
}
