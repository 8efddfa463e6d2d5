/* What the daemon records, on disk (docs/records.md): processes, exit
 * ledgers, lifecycle events. Writes are batched: the registry hands a row
 * over in O(1) and goes on; a batch is one transaction, committed every
 * FLUSH_MS or at FLUSH_ROWS rows, whichever comes first, so that the
 * tracer's event rate never waits on the disk, and a daemon killed at
 * any moment loses at most the last batch. Every read commits the batch
 * first: what a client reads is everything the daemon knows. */
import type { Logger } from 'pino';
import type { LifecycleEvent } from '../event-bus.js';
import { type Page, type PageRequest, pageLimit, cursorPosition } from '../paging.js';
import type { ExitRecord, ProcessRecord, ShimFate } from '../registry.js';
import { asPid, asTid, exitHows, isLeader, type ExitHow, type Pid, type Tid } from '../types.js';
import type { Db } from './database.js';
import { SyscallStore } from './syscall-store.js';
import { EventLog } from './event-log.js';

const FLUSH_MS = 100;
const FLUSH_ROWS = 20_000;
/** An event stream that resumes gets at most this many from the records;
 * more is paged through GET /v1/events/recent. */
export const MAX_REPLAY = 10_000;

const shimFates: ShimFate[] = ['reclaimed', 'released', 'none'];
/** See claimedAfterExit. */
const LATE_CLAIM_ROWS = 100_000;

/** How a process or thread ended, to filter on. */
export interface EndingFilter {
  exitCode?: number;
  signal?: number;
  /** Ended (exits) or started (processes) at this time or later. */
  since?: Date;
}

export interface ProcessFilter extends EndingFilter {
  state?: ProcessRecord['state'];
  /** A substring of the executable's path. */
  exe?: string;
  /** A substring of the command line, its arguments joined by spaces. */
  argv?: string;
}

export interface ExitFilter extends EndingFilter {
  how?: ExitHow;
}

export interface EventFilter {
  pid?: Pid;
  /** Events with a greater id only. */
  sinceId?: number;
}

/** What GET /v1/health says of the records. */
export interface RecordsSummary {
  file: string;
  bytes: number;
  /** Rows dropped by retention or forgotten on request, for good. */
  forgotten: { processes: number; exits: number; events: number };
}

interface ProcessRow {
  serial: number; run: number; pid: number; state: string; origin: string; exe: string; argv: string;
  libc: string; linkage: string; image: number; started_at: number; parent_pid: number | null;
  stdout: string | null; stderr: string | null; exit_code: number | null; exit_signal: number | null;
  exit_core: number | null; ended_at: number | null; attach: string | null; gaps: string;
  threads_exited: number; exits_dropped: number;
}

interface ExitRow { seq: number; tid: number; at: number; how: number; code: number | null; signal: number | null; core: number | null; shim: number | null }

/** A condition and its parameters, ANDed into a WHERE clause. */
type Where = Array<[sql: string, ...params: unknown[]]>;

const whereSql = (w: Where) => (w.length ? `WHERE ${w.map(([sql]) => sql).join(' AND ')}` : '');
const whereParams = (w: Where) => w.flatMap(([, ...params]) => params);

export class Records {
  private readonly pendingProcesses = new Set<ProcessRecord>();
  private pendingExits: Array<{ p: ProcessRecord; x: ExitRecord }> = [];
  private pendingEvents: LifecycleEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly events: EventLog;
  /** Syscall rules, counts and records of processes that ended. */
  readonly syscalls: SyscallStore;
  /** What became of an ended thread's shim slot, asked when its row is
   * written (the shim's news of a claim can come after the tracer's of the exit). */
  shimFate: (p: ProcessRecord, x: ExitRecord) => ShimFate | undefined = () => undefined;
  private readonly insertExit;
  private readonly upsertProcess;
  private readonly commit;

  constructor(private readonly db: Db, readonly file: string, private readonly log: Logger) {
    this.insertExit = db.prepare('INSERT INTO exits (serial, seq, tid, at, how, code, signal, core, shim) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
    this.upsertProcess = db.prepare(`INSERT INTO processes (serial, run, pid, state, origin, exe, argv, libc, linkage, image, started_at,
        parent_pid, stdout, stderr, exit_code, exit_signal, exit_core, ended_at, attach, gaps, threads_exited)
      VALUES (@serial, @run, @pid, @state, @origin, @exe, @argv, @libc, @linkage, @image, @started_at,
        @parent_pid, @stdout, @stderr, @exit_code, @exit_signal, @exit_core, @ended_at, @attach, @gaps, @threads_exited)
      ON CONFLICT (serial) DO UPDATE SET state = excluded.state, exe = excluded.exe, argv = excluded.argv, libc = excluded.libc,
        linkage = excluded.linkage, image = excluded.image, stdout = excluded.stdout, stderr = excluded.stderr,
        exit_code = excluded.exit_code, exit_signal = excluded.exit_signal, exit_core = excluded.exit_core, ended_at = excluded.ended_at,
        attach = excluded.attach, gaps = excluded.gaps, threads_exited = excluded.threads_exited`);
    this.commit = db.transaction(() => this.writePending());
    // The argv column is a JSON array; the filter is on its arguments
    // joined by spaces.
    db.function('command_line', { deterministic: true }, (argv) => (JSON.parse(String(argv)) as string[]).join(' '));
    this.events = new EventLog(db);
    this.syscalls = new SyscallStore(db);
  }

  /* Writes: O(1) now, in the next batch. */

  processChanged(p: ProcessRecord): void {
    this.pendingProcesses.add(p);
    this.schedule();
  }

  exit(p: ProcessRecord, x: ExitRecord): void {
    this.pendingExits.push({ p, x });
    this.pendingProcesses.add(p);
    this.schedule();
  }

  event(e: LifecycleEvent): void {
    this.pendingEvents.push(e);
    this.schedule();
  }

  private schedule(): void {
    if (this.pendingExits.length + this.pendingEvents.length >= FLUSH_ROWS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Commits what is pending, as one transaction. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pendingProcesses.size && !this.pendingExits.length && !this.pendingEvents.length) return;
    try {
      this.commit();
      this.events.committed(this.pendingEvents.length);
    } catch (e) {
      // A full disk, say: the daemon goes on supervising; what it could
      // not write is lost, and said so.
      this.log.error({ err: e, exits: this.pendingExits.length, events: this.pendingEvents.length }, 'cannot write records: this batch is lost');
    }
    this.pendingProcesses.clear();
    this.pendingExits = [];
    this.pendingEvents = [];
  }

  private writePending(): void {
    for (const p of this.pendingProcesses) this.upsertProcess.run(processRow(p));
    for (const { p, x } of this.pendingExits) {
      const fate = this.shimFate(p, x);
      this.insertExit.run(p.serial, x.seq, x.tid, x.exitedAt.getTime(), exitHows.indexOf(x.how), x.code ?? null, x.signal ?? null,
        x.coreDumped === undefined ? null : Number(x.coreDumped), fate === undefined ? null : shimFates.indexOf(fate));
    }
    this.events.write(this.pendingEvents);
  }

  close(): void {
    this.flush();
    this.db.close();
  }

  /* Reads: the pending batch first. */

  private read<T>(query: () => T): T {
    this.flush();
    return query();
  }

  get lastSerial(): number {
    return this.read(() => (this.db.prepare('SELECT max(serial) AS n FROM processes').get() as { n: number | null }).n ?? 0);
  }

  get lastEventId(): number {
    return this.read(() => this.events.lastId);
  }

  /** A new run of the daemon: its number. */
  beginRun(daemonPid: number): number {
    return Number(this.db.prepare('INSERT INTO runs (started_at, daemon_pid) VALUES (?, ?)').run(Date.now(), daemonPid).lastInsertRowid);
  }

  /** The latest process with this pid. */
  latest(pid: Pid): ProcessRecord | undefined {
    const row = this.read(() => this.db.prepare('SELECT * FROM processes WHERE pid = ? ORDER BY serial DESC LIMIT 1').get(pid) as ProcessRow | undefined);
    return row && processRecord(row);
  }

  /** Processes an earlier run left as running. */
  leftRunning(run: number): ProcessRecord[] {
    return this.read(() => (this.db.prepare("SELECT * FROM processes WHERE state = 'running' AND run < ?").all(run) as ProcessRow[]).map(processRecord));
  }

  /** `live` has the processes the daemon holds in memory: their records
   * are the ones shown (the rows have the same filterable columns). */
  processPage(f: ProcessFilter, request: PageRequest, live: (pid: Pid, serial: number) => ProcessRecord | undefined): Page<ProcessRecord> {
    const where: Where = [];
    if (f.state !== undefined) where.push(['state = ?', f.state]);
    if (f.exitCode !== undefined) where.push(['exit_code = ?', f.exitCode]);
    if (f.signal !== undefined) where.push(['exit_signal = ?', f.signal]);
    if (f.since !== undefined) where.push(['started_at >= ?', f.since.getTime()]);
    if (f.exe !== undefined) where.push(['instr(exe, ?) > 0', f.exe]);
    if (f.argv !== undefined) where.push(['instr(command_line(argv), ?) > 0', f.argv]);
    const page = this.read(() => this.page<ProcessRow>('processes', 'serial', where, request));
    return { ...page, items: page.items.map((row) => live(asPid(row.pid), row.serial) ?? processRecord(row)) };
  }

  exitPage(p: ProcessRecord, f: ExitFilter, request: PageRequest): Page<ExitRecord> {
    const where: Where = [['serial = ?', p.serial]];
    if (f.how !== undefined) where.push(['how = ?', exitHows.indexOf(f.how)]);
    if (f.exitCode !== undefined) where.push(['code = ?', f.exitCode]);
    if (f.signal !== undefined) where.push(['signal = ?', f.signal]);
    if (f.since !== undefined) where.push(['at >= ?', f.since.getTime()]);
    // Unfiltered, the count is the process's own: no scan of its ledger.
    const total = where.length === 1 ? p.threadsExited - p.exitsDropped : undefined;
    const page = this.read(() => this.page<ExitRow>('exits', 'seq', where, request, total));
    return { ...page, items: page.items.map((row) => exitRecord(p, row)) };
  }

  /** A claim of a shim slot that came after the thread's exit: its ledger
   * row, if written as holding no slot, says it released one. Only the
   * latest LATE_CLAIM_ROWS rows are looked at (a claim comes at most a
   * batch or two late), so that a claim that came before the thread was
   * known costs no scan of a long ledger. */
  claimedAfterExit(p: ProcessRecord, tid: Tid): boolean {
    return this.read(() => this.db.prepare(`UPDATE exits SET shim = ? WHERE serial = ? AND shim = ? AND seq = (
        SELECT seq FROM exits WHERE serial = ? AND seq > ? AND tid = ? ORDER BY seq DESC LIMIT 1)`)
      .run(shimFates.indexOf('released'), p.serial, shimFates.indexOf('none'), p.serial, p.threadsExited - LATE_CLAIM_ROWS, tid).changes > 0);
  }

  /** Whether the ledger has this thread (a thread that is not live either
   * ended, 410, or never was, 404). */
  hasExit(p: ProcessRecord, tid: Tid): boolean {
    return this.read(() => this.db.prepare('SELECT 1 FROM exits WHERE serial = ? AND tid = ? LIMIT 1').get(p.serial, tid) !== undefined);
  }

  eventPage(f: EventFilter, request: PageRequest): Page<LifecycleEvent> {
    const q = { after: Math.max(cursorPosition(request.after), f.sinceId ?? 0), limit: pageLimit(request), ...(f.pid !== undefined ? { pid: f.pid } : {}) };
    const { items, more, total } = this.read(() => ({ ...this.events.page(q), total: this.events.matching(q) }));
    return { items, total, ...(more ? { next: String(items.at(-1)!.id) } : {}) };
  }

  /** Retention: see EventLog.dropOlderThan; counted as forgotten. */
  dropEvents(cutoff: number, batches: number): number {
    const n = this.events.dropOlderThan(cutoff, batches);
    this.countForgotten({ events: n });
    return n;
  }

  /** For an event stream that resumes: the first MAX_REPLAY after an id
   * (no total: nobody reads it). */
  eventsAfter(id: number, pid?: Pid): LifecycleEvent[] {
    return this.read(() => this.events.page({ after: id, limit: MAX_REPLAY, ...(pid !== undefined ? { pid } : {}) }).items);
  }

  /** A page of `table` in the order of `position`, with the total that
   * match (counted, unless the caller knows it). */
  private page<Row>(table: string, position: string, where: Where, request: PageRequest, total?: number): Page<Row> {
    const limit = pageLimit(request);
    const after = cursorPosition(request.after);
    const rows = this.db.prepare(`SELECT * FROM ${table} ${whereSql([...where, [`${position} > ?`]])} ORDER BY ${position} LIMIT ?`)
      .all(...whereParams(where), after, limit + 1) as Array<Row & Record<string, number>>;
    const items = rows.slice(0, limit);
    const counted = total ?? (this.db.prepare(`SELECT count(*) AS n FROM ${table} ${whereSql(where)}`).get(...whereParams(where)) as { n: number }).n;
    return { items, total: counted, ...(rows.length > limit ? { next: String(items.at(-1)![position]) } : {}) };
  }

  /** Forgets processes that are no longer supervised, by serial: their
   * rows and their ledgers, counted. Returns the ledger rows dropped. */
  forget(serials: readonly number[]): number {
    return this.read(() => this.db.transaction(() => {
      const dropExits = this.db.prepare('DELETE FROM exits WHERE serial = ?');
      const dropProcess = this.db.prepare('DELETE FROM processes WHERE serial = ?');
      let exits = 0;
      for (const serial of serials) {
        exits += dropExits.run(serial).changes;
        dropProcess.run(serial);
        this.syscalls.forget(serial);
      }
      this.countForgotten({ processes: serials.length, exits });
      return exits;
    })());
  }

  countForgotten(n: Partial<RecordsSummary['forgotten']>): void {
    const add = this.db.prepare('INSERT INTO forgotten (what, count) VALUES (?, ?) ON CONFLICT (what) DO UPDATE SET count = count + excluded.count');
    for (const [what, count] of Object.entries(n)) if (count) add.run(what, count);
  }

  summary(): RecordsSummary {
    const forgotten = { processes: 0, exits: 0, events: 0 };
    for (const { what, count } of this.db.prepare('SELECT what, count FROM forgotten').all() as Array<{ what: keyof typeof forgotten; count: number }>) {
      forgotten[what] = count;
    }
    return { file: this.file, bytes: usedBytes(this.db), forgotten };
  }

  /** Counts by state, for /metrics. */
  countByState(): Array<{ state: string; n: number }> {
    return this.read(() => this.db.prepare('SELECT state, count(*) AS n FROM processes GROUP BY state').all() as Array<{ state: string; n: number }>);
  }
}

/** The bytes the database's pages hold: a page retention freed is reused,
 * not returned to the file system, and is not counted. */
export function usedBytes(db: Db): number {
  const pages = db.pragma('page_count', { simple: true }) as number;
  const free = db.pragma('freelist_count', { simple: true }) as number;
  return (pages - free) * (db.pragma('page_size', { simple: true }) as number);
}

function processRow(p: ProcessRecord): ProcessRow {
  return {
    serial: p.serial, run: p.run, pid: p.pid, state: p.state, origin: p.origin, exe: p.exe, argv: JSON.stringify(p.argv),
    libc: p.libc, linkage: p.linkage, image: p.image, started_at: p.startedAt.getTime(), parent_pid: p.parentPid ?? null,
    stdout: p.stdout ?? null, stderr: p.stderr ?? null, exit_code: p.exit?.code ?? null, exit_signal: p.exit?.signal ?? null,
    exit_core: p.exit?.coreDumped === undefined ? null : Number(p.exit.coreDumped), ended_at: p.endedAt?.getTime() ?? null,
    attach: p.attach ? JSON.stringify({ ...p.attach, longestStopNs: String(p.attach.longestStopNs) }) : null,
    gaps: JSON.stringify(p.gaps.map((g) => ({ from: g.from.getTime(), ...(g.to ? { to: g.to.getTime() } : {}) }))),
    threads_exited: p.threadsExited, exits_dropped: p.exitsDropped,
  };
}

function processRecord(r: ProcessRow): ProcessRecord {
  const p: ProcessRecord = {
    serial: r.serial, run: r.run, pid: asPid(r.pid), state: r.state as ProcessRecord['state'], origin: r.origin as ProcessRecord['origin'],
    exe: r.exe, argv: JSON.parse(r.argv) as string[], libc: r.libc as ProcessRecord['libc'],
    linkage: r.linkage as ProcessRecord['linkage'], image: r.image, startedAt: new Date(r.started_at),
    threads: new Map(), threadsExited: r.threads_exited, exitsDropped: r.exits_dropped,
    gaps: (JSON.parse(r.gaps) as Array<{ from: number; to?: number }>).map((g) => ({ from: new Date(g.from), ...(g.to ? { to: new Date(g.to) } : {}) })),
    unresolved: new Map(), groupExitSeen: false,
  };
  if (r.parent_pid !== null) p.parentPid = asPid(r.parent_pid);
  if (r.stdout !== null) p.stdout = r.stdout;
  if (r.stderr !== null) p.stderr = r.stderr;
  if (r.ended_at !== null) p.endedAt = new Date(r.ended_at);
  if (r.state === 'exited' && r.ended_at !== null) {
    p.exit = { at: new Date(r.ended_at), ...ending(r.exit_code, r.exit_signal, r.exit_core) };
  }
  if (r.attach !== null) {
    const a = JSON.parse(r.attach) as Omit<NonNullable<ProcessRecord['attach']>, 'longestStopNs'> & { longestStopNs: string };
    p.attach = { ...a, longestStopNs: BigInt(a.longestStopNs) };
  }
  return p;
}

const ending = (code: number | null, signal: number | null, core: number | null) => ({
  ...(code !== null ? { code } : {}), ...(signal !== null ? { signal, coreDumped: core === 1 } : {}),
});

function exitRecord(p: ProcessRecord, r: ExitRow): ExitRecord {
  const tid = asTid(r.tid);
  return {
    seq: r.seq, tid, pid: p.pid, leader: isLeader(tid, p.pid), exitedAt: new Date(r.at), how: exitHows[r.how]!,
    ...ending(r.code, r.signal, r.core), ...(r.shim !== null ? { shim: shimFates[r.shim]! } : {}),
  };
}
