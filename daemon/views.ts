/* A record with what is read live from /proc when it is shown: a running
 * process's command line as it reads now (children rename themselves after
 * a fork; the one kept is from its birth or exec), a thread's name and
 * scheduler state. */
import type { Goroutine } from './go.js';
import { readCmdline, readThreadStat } from './procfs.js';
import type { ProcessRecord, ThreadRecord } from './registry.js';

export interface ProcessView {
  record: ProcessRecord;
  argv: string[];
  /** This run of the daemon: a record of another is from an earlier one. */
  currentRun: number;
}

export interface ThreadView {
  record: ThreadRecord;
  name: string;
  /** running, sleeping, stopped, ...; gone once it has ended. */
  state: string;
  /** In a static Go program, what it runs (daemon/go.ts). */
  goroutine?: Goroutine;
}

export function viewProcess(p: ProcessRecord, currentRun: number): ProcessView {
  const live = p.state === 'running' || p.state === 'unsupervised';
  return { record: p, argv: (live && readCmdline(p.pid)) || p.argv, currentRun };
}

export function viewThread(t: ThreadRecord, goroutine?: Goroutine): ThreadView {
  const stat = readThreadStat(t.pid, t.tid);
  return { record: t, name: stat?.name ?? '', state: stat?.state ?? 'gone', ...(goroutine ? { goroutine } : {}) };
}
