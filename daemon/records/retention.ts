/* How long and how much the records keep (docs/records.md "Retention"):
 * by age, processes that ended more than `days` ago and events older than
 * that; by size, the oldest first until the database's used bytes are
 * under `megabytes`: events and ended processes (whole) in the order of
 * their times, then the oldest ledger rows of running processes. What is dropped is counted (the
 * `forgotten` totals, and a process's `exitsDropped`), so totals stay
 * exact when details go. Runs at start and every CHECK_MS: a round
 * that finds nothing to drop reads a few rows. */
import type { Logger } from 'pino';
import type { ProcessRecord } from '../registry.js';
import { asPid, type Pid } from '../types.js';
import type { Db } from './database.js';
import { usedBytes, type Records } from './records.js';

/** The records the daemon holds in memory (the registry's): kept true
 * when retention drops rows. */
export interface HeldRecords {
  held(pid: Pid, serial: number): ProcessRecord | undefined;
  /** Lets go of a record held in memory. */
  release(p: ProcessRecord): void;
}

type ProcessKey = { pid: number; serial: number };

export interface RetentionPolicy {
  /** Ended processes and events older than this many days (fractions
   * allowed) go; 0: no limit by age. */
  days?: number;
  /** The database's used bytes are kept under this; 0: no limit by size. */
  megabytes?: number;
}

export const DEFAULT_RETENTION = { days: 0, megabytes: 1024 } as const;

const CHECK_MS = 1000;
/** Rows dropped per transaction, so that a round never holds the daemon long. */
const BATCH = 10_000;
/** Event batches (records/event-log.ts) dropped per transaction. */
const EVENT_BATCHES = 100;
const DAY_MS = 86_400_000;

export class Retention {
  private readonly days: number;
  private readonly bytes: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db, private readonly records: Records, policy: RetentionPolicy,
    private readonly memory: HeldRecords, private readonly log: Logger,
  ) {
    this.days = policy.days ?? DEFAULT_RETENTION.days;
    this.bytes = (policy.megabytes ?? DEFAULT_RETENTION.megabytes) * 1024 * 1024;
  }

  start(): void {
    this.apply();
    this.timer = setInterval(() => this.apply(), CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round: by age, then by size. */
  apply(now = Date.now()): void {
    try {
      this.records.flush();
      if (this.days > 0) this.dropOlderThan(now - this.days * DAY_MS);
      if (this.bytes > 0) this.dropToSize();
    } catch (e) {
      this.log.error({ err: e }, 'retention failed');
    }
  }

  private dropOlderThan(cutoff: number): void {
    for (;;) {
      const ended = this.db.prepare(`SELECT pid, serial FROM processes WHERE ended_at < ? AND state IN ('exited', 'detached', 'lost')
        LIMIT 100`).all(cutoff) as ProcessKey[];
      // Events are in the order of their times (near enough: each is
      // stamped when it happened, published when the daemon learnt of it),
      // so the old ones are at the head.
      const dropped = this.dropProcesses(ended) + this.dropEvents(cutoff);
      if (!dropped) return;
    }
  }

  /** Oldest first: the events of an ended process's life go before it,
   * and it before the events after its end. */
  private dropToSize(): void {
    while (usedBytes(this.db) > this.bytes) {
      const oldest = this.db.prepare(`SELECT ended_at FROM processes WHERE state IN ('exited', 'detached', 'lost')
        ORDER BY ended_at LIMIT 1`).pluck().get() as number | undefined;
      if (oldest !== undefined) {
        if (this.dropEvents(oldest)) continue;
        this.dropProcesses(this.db.prepare(`SELECT pid, serial FROM processes WHERE state IN ('exited', 'detached', 'lost')
          AND ended_at <= ? LIMIT 100`).all(oldest) as ProcessKey[]);
        continue;
      }
      const dropped = this.dropEvents(Infinity) + this.dropOldestExits();
      if (!dropped) {
        this.log.warn({ bytes: usedBytes(this.db), limit: this.bytes }, 'the records are over their size limit with nothing left to drop');
        return;
      }
    }
  }

  /** Whole processes, with their ledgers. */
  private dropProcesses(keys: ProcessKey[]): number {
    if (!keys.length) return 0;
    const exits = this.records.forget(keys.map((k) => k.serial));
    for (const { pid, serial } of keys) {
      const p = this.memory.held(asPid(pid), serial);
      if (p) this.memory.release(p);
    }
    this.log.info({ processes: keys.length, exits }, 'retention dropped ended processes');
    return keys.length;
  }

  /** Of the oldest event batches, those wholly from before `cutoff`. */
  private dropEvents(cutoff: number): number {
    return this.db.transaction(() => this.records.dropEvents(Number.isFinite(cutoff) ? cutoff : Number.MAX_SAFE_INTEGER, EVENT_BATCHES))();
  }

  /** The oldest ledger rows of the running process with the most: its
   * count of exits stays, its `exitsDropped` says how many are gone. */
  private dropOldestExits(): number {
    const most = this.db.prepare('SELECT pid, serial FROM processes ORDER BY threads_exited - exits_dropped DESC LIMIT 1').get() as { pid: number; serial: number } | undefined;
    if (!most) return 0;
    const { pid, serial } = most;
    return this.db.transaction(() => {
      const n = this.db.prepare(`DELETE FROM exits WHERE serial = ? AND seq IN (SELECT seq FROM exits WHERE serial = ? ORDER BY seq LIMIT ?)`)
        .run(serial, serial, BATCH).changes;
      this.db.prepare('UPDATE processes SET exits_dropped = exits_dropped + ? WHERE serial = ?').run(n, serial);
      this.records.countForgotten({ exits: n });
      const p = this.memory.held(asPid(pid), serial);
      if (p) p.exitsDropped += n;
      return n;
    })();
  }
}
