/* The live record of every supervised process and thread, and the exit
 * ledger (docs/architecture.md invariant 4), built from the tracer's
 * messages. What is running is held here; what has ended is in the
 * records on disk (records/records.ts), which every change goes to. */
import type { Logger } from 'pino';
import type { Records } from './records/records.js';
import type { EventBus } from './event-bus.js';
import type { EventData } from './events.js';
import type { TracerEvent } from './tracer/client.js';
import type { WireTime } from './tracer/protocol.js';
import { binaryKind, type Libc, type Linkage } from './binary-kind.js';
import { readStartTime, readThreadStat } from './procfs.js';
import type { ProcessImage } from './tracer/protocol.js';
import { decodeWaitStatus, killedBySignal, type Ending } from './wait-status.js';
import {
  formatAddress, isLeader, leaderTid, type Address, type ExitHow, type FsBaseSource, type Pid,
  type ProcessOrigin, type ProcessState, type Tid,
} from './types.js';

export interface ThreadRecord {
  tid: Tid;
  pid: Pid;
  fsBase: Address;
  fsBaseSource: FsBaseSource;
  createdAt: Date;
  parentTid?: Tid;
}

/** What became of an ended thread's libtlsshim slot: freed by the tracer
 * at its exit, released by the thread itself, or it held none. */
export type ShimFate = 'reclaimed' | 'released' | 'none';

export interface ExitRecord extends Ending {
  /** 1, 2, 3, ... in the process's ledger: the order of the ledger. */
  seq: number;
  tid: Tid;
  pid: Pid;
  leader: boolean;
  exitedAt: Date;
  how: ExitHow;
  /** The tracer freed the thread's shim slot at its exit. */
  shimReclaimed?: true;
  /** For a process with the shim, as recorded. */
  shim?: ShimFate;
}

/** A span of time in which no tracer watched the process. */
export interface Gap {
  from: Date;
  to?: Date;
}

export interface ProcessRecord {
  /** 1, 2, 3, ... in the order the daemon learnt of processes, across
   * its runs: a process's identity in the records (pids are reused). */
  serial: number;
  /** The run of the daemon that supervised it (records/records.ts). */
  run: number;
  pid: Pid;
  state: ProcessState;
  origin: ProcessOrigin;
  exe: string;
  argv: string[];
  libc: Libc;
  linkage: Linkage;
  /** Which program image: 1 from birth, one more at every exec. What was
   * learnt about the old image (its TLS modules) is stale after it. */
  image: number;
  startedAt: Date;
  parentPid?: Pid;
  stdout?: string;
  /** Spawned with killWithDaemon, or forked by such a process. */
  killWithDaemon?: true;
  stderr?: string;
  exit?: Ending & { at: Date };
  /** When it was no longer supervised: exited, detached or found lost. */
  endedAt?: Date;
  /** How the (latest) attach went, as the tracer measured it. */
  attach?: {
    passes: number; threads: number; longestStopNs: bigint; interrupted: number;
    /** What injections by an earlier tracer left, found at this attach. */
    leftovers?: { removed: number; startedShims: number };
  };
  /** Threads whose libtlsshim slot the tracer freed at their exit, until
   * their end is in the ledger. */
  shimReclaimed?: Set<Tid>;
  threads: Map<Tid, ThreadRecord>;
  /** Threads in the ledger: the last ledger seq. */
  threadsExited: number;
  /** Ledger rows that retention dropped (records/retention.ts); the
   * count above stays exact. */
  exitsDropped: number;
  gaps: Gap[];
  /** Threads reaped with an exit code but no exit syscall of their own:
   * killed by another thread's exit_group or by an exec, which one is
   * known only when that thread's event arrives (the order is not fixed). */
  unresolved: Map<Tid, { status: number; at: Date }>;
  groupExitSeen: boolean;
  /** While a restarted tracer re-attaches: the threads it found. */
  reattachSeen?: Set<Tid>;
}

/** Ended and detached processes also kept in memory, without their
 * ledgers: a detach finds the children it took along among them. */
const RECENTLY_ENDED = 1000;

const toDate = (t: WireTime): Date => new Date(Number(t) / 1e6);

/** /proc's start times are in clock ticks (10 ms). */
const START_TIME_SLACK_MS = 20;

const origins: Record<string, ProcessOrigin> = {
  attach: 'attached', spawn: 'spawned', fork: 'forked', vfork: 'forked', clone: 'forked',
};

export class Registry {
  /** In the order of their serials: a pid reused is a new record, last. */
  private readonly processes = new Map<Pid, ProcessRecord>();
  private lastSerial: number;

  /** `run` is this run of the daemon (Records.beginRun). */
  constructor(private readonly bus: EventBus, readonly records: Records, readonly run: number, private readonly log: Logger) {
    this.lastSerial = records.lastSerial;
  }

  /** The latest process with this pid: in memory, or in the records. */
  get(pid: Pid): ProcessRecord | undefined { return this.processes.get(pid) ?? this.records.latest(pid); }
  /** The processes held in memory: every running one, and the last ended. */
  list(): ProcessRecord[] { return [...this.processes.values()]; }
  /** The record held in memory for this pid and serial, if it is. */
  held(pid: Pid, serial: number): ProcessRecord | undefined {
    const p = this.processes.get(pid);
    return p?.serial === serial ? p : undefined;
  }

  /** The processes followed from pid: its forks, theirs, and so on. */
  descendants(pid: Pid): ProcessRecord[] {
    const descends = (p: ProcessRecord): boolean => {
      const seen = new Set<Pid>();
      for (let q: ProcessRecord | undefined = p; q?.parentPid !== undefined && !seen.has(q.pid); q = this.processes.get(q.parentPid)) {
        if (q.parentPid === pid) return true;
        seen.add(q.pid);
      }
      return false;
    };
    return this.list().filter(descends);
  }

  get liveThreadCount(): number {
    let n = 0;
    for (const p of this.processes.values()) n += p.threads.size;
    return n;
  }

  apply(e: TracerEvent): void {
    const p = this.processes.get(e.pid);
    if (e.type === 'processNew') return this.processNew(e, p);
    if (!p) {
      this.log.debug({ event: e }, 'event for an unknown process');
      return;
    }
    switch (e.type) {
      case 'threadNew': return this.threadNew(p, e);
      case 'threadFsBase': {
        const t = p.threads.get(e.tid);
        if (t) Object.assign(t, { fsBase: e.fsBase, fsBaseSource: e.source });
        return;
      }
      case 'threadExiting': return this.threadExiting(p, e);
      case 'threadGone': return this.threadGone(p, e);
      case 'exec': return this.exec(p, e);
      case 'detached': return this.detached(p);
    }
  }

  private processNew(e: Extract<TracerEvent, { type: 'processNew' }>, existing?: ProcessRecord): void {
    if (existing?.state === 'running') return; // a restarted tracer re-attaching
    const p: ProcessRecord = {
      serial: ++this.lastSerial, run: this.run, pid: e.pid, state: 'running', origin: origins[e.origin] ?? 'attached',
      exe: '', argv: [], libc: 'unknown', linkage: 'dynamic', image: 0, startedAt: toDate(e.at),
      threads: new Map(), threadsExited: 0, exitsDropped: 0, gaps: [], unresolved: new Map(), groupExitSeen: false,
    };
    if (e.parentPid) p.parentPid = e.parentPid;
    // What the tracer does to the parent (EXITKILL, its pre-filter) the
    // child inherits.
    if (e.parentPid && this.processes.get(e.parentPid)?.killWithDaemon) p.killWithDaemon = true;
    this.describe(p, e);
    p.startedAt = readStartTime(p.pid) ?? p.startedAt;
    this.processes.delete(e.pid); // a reused pid: the new one goes last
    this.processes.set(e.pid, p); // describe() marked it changed
    this.dropOldEnded();
    if (p.origin === 'forked') this.bus.publish('process.spawned', this.summary(p), p.startedAt);
  }

  /** A record changed: the records get it in their next batch. */
  changed(p: ProcessRecord): void {
    this.records.processChanged(p);
  }

  /** Drops the oldest ended or detached processes beyond the limit from
   * memory (a Map iterates in insertion order: oldest first). */
  private dropOldEnded(): void {
    let ended = 0;
    for (const p of this.processes.values()) if (p.state !== 'running') ended++;
    for (const [pid, p] of this.processes) {
      if (ended <= RECENTLY_ENDED) break;
      if (p.state !== 'running') {
        this.processes.delete(pid);
        ended--;
      }
    }
  }

  /** What the process runs: at its birth and at its exec. */
  private describe(p: ProcessRecord, image: ProcessImage): void {
    p.exe = image.exe;
    p.argv = image.argv;
    p.image++;
    Object.assign(p, binaryKind(p.pid, image.exe));
    this.changed(p);
  }

  /** Lets go of a record held in memory (it stays in the records). */
  release(p: ProcessRecord): void {
    if (this.processes.get(p.pid) === p) this.processes.delete(p.pid);
  }

  /** Forgets an ended process: from memory and from the records. */
  forget(p: ProcessRecord): void {
    this.release(p);
    this.records.forget([p.serial]);
  }

  /** Processes an earlier run left running: those still running (the same
   * pid, started at the same time) are unsupervised now, the others lost. */
  settleEarlierRuns(at: Date): void {
    for (const p of this.records.leftRunning(this.run)) {
      const started = readStartTime(p.pid);
      const zombie = readThreadStat(p.pid, leaderTid(p.pid))?.state === 'zombie';
      const same = !zombie && started !== undefined && Math.abs(started.getTime() - p.startedAt.getTime()) < START_TIME_SLACK_MS;
      p.state = same ? 'unsupervised' : 'lost';
      if (!same) p.endedAt = at;
      this.changed(p);
    }
  }

  summary(p: ProcessRecord): EventData<'process.spawned'> {
    return { pid: p.pid, origin: p.origin, exe: p.exe, argv: p.argv, ...(p.parentPid ? { parentPid: p.parentPid } : {}) };
  }

  private threadNew(p: ProcessRecord, e: Extract<TracerEvent, { type: 'threadNew' }>): void {
    p.reattachSeen?.add(e.tid);
    const known = p.threads.get(e.tid);
    if (known) {
      Object.assign(known, { fsBase: e.fsBase, fsBaseSource: e.source });
      return;
    }
    const t: ThreadRecord = { tid: e.tid, pid: p.pid, fsBase: e.fsBase, fsBaseSource: e.source, createdAt: toDate(e.at) };
    if (e.parentTid) t.parentTid = e.parentTid;
    p.threads.set(e.tid, t);
    this.bus.publish('thread.created', {
      pid: p.pid, tid: e.tid, fsBase: formatAddress(e.fsBase), fsBaseSource: e.source,
      ...(e.parentTid ? { parentTid: e.parentTid } : {}),
    }, t.createdAt);
  }

  private threadExiting(p: ProcessRecord, e: Extract<TracerEvent, { type: 'threadExiting' }>): void {
    if (!p.threads.has(e.tid)) return;
    if (e.shimReclaimed) (p.shimReclaimed ??= new Set()).add(e.tid);
    const at = toDate(e.at);
    if (e.exitCall === 'exit') {
      this.ledger(p, e.tid, 'exit', decodeWaitStatus(e.exitStatus), at);
    } else if (e.exitCall === 'exit_group') {
      p.groupExitSeen = true;
      this.ledger(p, e.tid, 'exit_group', decodeWaitStatus(e.exitStatus), at);
      this.resolve(p, 'exit_group');
    } else if (killedBySignal(e.exitStatus)) {
      this.ledger(p, e.tid, 'signal', decodeWaitStatus(e.exitStatus), at);
    }
    // Otherwise another thread's exit_group or exec is ending it: wait
    // for its reap, where the cause may be known.
  }

  private threadGone(p: ProcessRecord, e: Extract<TracerEvent, { type: 'threadGone' }>): void {
    const at = toDate(e.at);
    const ending = decodeWaitStatus(e.waitStatus);
    if (p.threads.has(e.tid)) {
      if (killedBySignal(e.waitStatus)) this.ledger(p, e.tid, 'signal', ending, at);
      else if (p.groupExitSeen || isLeader(e.tid, p.pid)) this.ledger(p, e.tid, 'exit_group', ending, at);
      else {
        p.threads.delete(e.tid);
        p.unresolved.set(e.tid, { status: e.waitStatus, at });
      }
    }
    if (!isLeader(e.tid, p.pid)) return;
    // The leader is reaped last: the process is over.
    this.resolve(p, killedBySignal(e.waitStatus) ? 'signal' : 'exit_group');
    for (const tid of p.threads.keys()) this.ledger(p, tid, 'unknown', {}, at);
    this.end(p, 'exited', at, ending);
  }

  /** The process is no longer supervised: its record is final. */
  private end(p: ProcessRecord, state: 'exited' | 'detached', at: Date, ending?: Ending): void {
    p.state = state;
    p.endedAt = at;
    if (ending) p.exit = { ...ending, at };
    p.threads.clear();
    delete p.shimReclaimed;
    this.changed(p);
    if (state === 'exited') this.bus.publish('process.exited', { pid: p.pid, ...ending }, at);
    else this.bus.publish('process.detached', { pid: p.pid });
  }

  private exec(p: ProcessRecord, e: Extract<TracerEvent, { type: 'exec' }>): void {
    const at = toDate(e.at);
    this.resolve(p, 'exec');
    // Every thread of the old image ends, the caller of exec too: it goes
    // on under the leader's tid, as a new thread of the new image.
    for (const tid of [...p.threads.keys()]) this.ledger(p, tid, 'exec', {}, at);
    p.groupExitSeen = false;
    this.describe(p, e);
    this.bus.publish('process.exec', { pid: p.pid, formerTid: e.formerTid, exe: p.exe, argv: p.argv }, at);
    this.threadNew(p, { type: 'threadNew', pid: p.pid, tid: leaderTid(p.pid), parentTid: e.formerTid, fsBase: e.fsBase, source: 'exec', at: e.at });
  }

  private detached(p: ProcessRecord): void {
    this.resolve(p, 'unknown');
    this.end(p, 'detached', new Date());
  }

  /** Settles threads whose way of ending was waiting on this news. */
  private resolve(p: ProcessRecord, how: ExitHow): void {
    for (const [tid, { status, at }] of p.unresolved) {
      this.record(p, { tid, pid: p.pid, leader: isLeader(tid, p.pid), exitedAt: at, how, ...(how === 'exec' ? {} : decodeWaitStatus(status)) });
    }
    p.unresolved.clear();
  }

  private ledger(p: ProcessRecord, tid: Tid, how: ExitHow, ending: Ending, at: Date): void {
    p.threads.delete(tid);
    this.record(p, { tid, pid: p.pid, leader: isLeader(tid, p.pid), exitedAt: at, how, ...ending });
  }

  private record(p: ProcessRecord, ending: Omit<ExitRecord, 'seq'>): void {
    const x: ExitRecord = { seq: ++p.threadsExited, ...ending };
    if (p.shimReclaimed?.delete(x.tid)) x.shimReclaimed = true;
    this.records.exit(p, x);
    this.bus.publish('thread.exited', { ...ending, exitedAt: x.exitedAt.toISOString() }, x.exitedAt);
  }

  /* Tracer restarts (docs/architecture.md "Why a helper process"): the kernel detached
   * everything; the daemon re-attaches and records the gap. */

  tracerLost(at: Date): void {
    for (const p of this.processes.values()) {
      if (p.state !== 'running') continue;
      p.gaps.push({ from: at });
      this.changed(p);
    }
  }

  beginReattach(p: ProcessRecord): void {
    p.reattachSeen = new Set();
  }

  /** After a re-attach: threads that ended unseen in the gap are ledgered
   * as `unknown`; a process that ended in the gap is marked exited. */
  endReattach(p: ProcessRecord, ok: boolean, at: Date): void {
    const seen = p.reattachSeen ?? new Set();
    delete p.reattachSeen;
    const gap = p.gaps[p.gaps.length - 1];
    if (gap && !gap.to) gap.to = at;
    this.changed(p);
    for (const tid of [...p.threads.keys()]) if (!ok || !seen.has(tid)) this.ledger(p, tid, 'unknown', {}, at);
    if (!ok) {
      this.resolve(p, 'unknown');
      this.end(p, 'exited', at, {});
    }
  }
}
