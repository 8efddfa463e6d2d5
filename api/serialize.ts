/* Registry records -> the JSON forms of docs/api.md (addresses hex, times
 * ISO-8601, 64-bit values decimal strings). */
import type { ExitRecord, ProcessRecord, ThreadRecord } from '../daemon/registry.js';
import { readCmdline, readThreadStat } from '../daemon/procfs.js';
import type { Tcb } from '../daemon/tcb.js';
import { formatAddress } from '../daemon/types.js';
import type { ExitJson, ProcessJson, ThreadJson } from './schemas.js';

const iso = (d: Date) => d.toISOString();

export function processJson(p: ProcessRecord): ProcessJson {
  // A running process's command line as it reads now: children rename
  // themselves after a fork. The one kept is from its birth or exec.
  const argv = (p.state === 'running' && readCmdline(p.pid)) || p.argv;
  return {
    pid: p.pid, state: p.state, origin: p.origin, exe: p.exe, argv, libc: p.libc, linkage: p.linkage,
    threads: p.threads.size, startedAt: iso(p.startedAt),
    ...(p.parentPid ? { parentPid: p.parentPid } : {}),
    ...(p.stdout ? { stdout: p.stdout, stderr: p.stderr } : {}),
    gaps: p.gaps.map((g) => ({ from: iso(g.from), ...(g.to ? { to: iso(g.to) } : {}) })),
    ...(p.exit ? { exit: { ...endingJson(p.exit), at: iso(p.exit.at) } } : {}),
    ...(p.attach ? {
      attach: {
        passes: p.attach.passes, threads: p.attach.threads, interrupted: p.attach.interrupted,
        longestStopMicros: Number(p.attach.longestStopNs) / 1000,
      },
    } : {}),
  };
}

export function threadJson(t: ThreadRecord): ThreadJson {
  const stat = readThreadStat(t.pid, t.tid);
  return {
    tid: t.tid, pid: t.pid, name: stat?.name ?? '', state: stat?.state ?? 'gone',
    fsBase: formatAddress(t.fsBase), fsBaseSource: t.fsBaseSource, createdAt: iso(t.createdAt),
    ...(t.parentTid ? { parentTid: t.parentTid } : {}),
  };
}

export function tcbJson(tcb: Tcb | undefined) {
  return tcb ? { self: formatAddress(tcb.self), dtv: formatAddress(tcb.dtv), stackGuard: tcb.stackGuard.toString() } : null;
}

function endingJson(e: { code?: number; signal?: number; coreDumped?: boolean }) {
  return {
    ...(e.code !== undefined ? { code: e.code } : {}),
    ...(e.signal !== undefined ? { signal: e.signal, coreDumped: e.coreDumped ?? false } : {}),
  };
}

export function exitJson(x: ExitRecord, shim?: ExitJson['shim']): ExitJson {
  return { tid: x.tid, pid: x.pid, leader: x.leader, exitedAt: iso(x.exitedAt), ...endingJson(x), how: x.how, ...(shim ? { shim } : {}) };
}
