/* Loading the shim into a process that is already running, or that was
 * started from a static program (native/tracer/inject.c does it): what
 * the tracer is asked, and what its answer means to an API user. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { TlsdError } from '../errors.js';
import { shimLibrary } from '../paths.js';
import type { InjectRequest } from '../tracer/protocol.js';
import type { TracerInjected } from '../tracer/client.js';
import type { Pid, ShimMode } from '../types.js';
import type { Injection } from './server.js';

/** What a user may ask for; slot counts left out are the shim's defaults. */
export interface ShimRequest {
  mode: ShimMode;
  slots?: number;
  slotBytes?: number;
}

export function injectRequest(req: ShimRequest, shimSocket: string): InjectRequest {
  if (req.slots !== undefined && (req.slots & (req.slots - 1)) !== 0) throw new TlsdError('INVALID_ARGUMENT', `slots must be a power of two, not ${req.slots}`);
  return { mode: req.mode, slotCount: req.slots ?? 0, slotBytes: req.slotBytes ?? 0, shimPath: shimLibrary, shimSocket };
}

const { EEXIST, ESRCH, EAGAIN, ENOEXEC, EPERM, EINVAL } = os.constants.errno;

/** The error for an injection that did not complete (errno != 0), or an
 * engine start (ENGINE); the tracer's reason says what happened, for a
 * person. The process is as it was, but for a shim that had started (step
 * cleanup), or threads given the engine's filter. */
export function injectionError(pid: Pid, a: TracerInjected, what = 'load the shim into'): TlsdError {
  const why = `cannot ${what} process ${pid}: ${a.reason || `errno ${a.errno}`}`;
  switch (a.errno) {
    case EEXIST: return new TlsdError('SHIM_LOADED', why);
    case ESRCH: return new TlsdError('GONE', why);
    case EAGAIN: return new TlsdError('PROCESS_STOPPED', why);
    case ENOEXEC: return new TlsdError('UNSUPPORTED_TARGET', why);
    case EPERM: return new TlsdError('SECCOMP_FORBIDS', why);
    case EINVAL: return new TlsdError('INTERNAL', why); // our own shim file is not one the tracer can load
    default: return new TlsdError('INJECTION_FAILED', why);
  }
}

export function injectionOf(a: TracerInjected): Injection {
  return { base: a.base, tid: a.tid, stoppedNs: a.stoppedNs, threadsStopped: a.interrupted };
}

/** A process's /proc/PID/maps, or '' when it is gone. */
function maps(pid: Pid): string {
  try {
    return readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return '';
  }
}

/** Whether a process may have mappings an injection leaves (a live
 * shim's, or what a killed tracer left): then the tracer is asked to tidy
 * it. A stub page is named where the kernel can name anonymous memory,
 * else it is an unnamed read+execute one, which the tracer tells by its
 * contents (native/tracer/inject.c). */
export function hasInjectionMappings(pid: Pid): boolean {
  return /\/memfd:tlsshim |\[anon:tlsshim-stub\]| r-xp 00000000 00:00 0 *$/m.test(maps(pid));
}

/** How a shim came into its process: the dynamic linker's LD_PRELOAD, or
 * tlsd's tracer, whose mapping is named /memfd:tlsshim. */
export type ShimOrigin = 'preload' | 'injected';

export function shimOrigin(pid: Pid): ShimOrigin {
  return maps(pid).includes('/memfd:tlsshim ') ? 'injected' : 'preload';
}
