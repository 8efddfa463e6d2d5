/* The recorded lifecycle events (docs/records.md "Events"): one row per
 * batch, not per event. A program that churns threads publishes two events
 * per thread; as rows of their own they were two thirds of what the
 * daemon spent on the records, which the traced program paid for in CPU
 * (2 CPUs here, shared by the program, the tracer and the daemon). A
 * batch's events have consecutive ids (they were published one after the
 * other); its row counts them by pid, so that a page for one process
 * skips the batches without it and its total needs no decoding. */
import type { LifecycleEvent } from '../event-bus.js';
import type { Pid } from '../types.js';
import type { Db } from './database.js';

export const EVENT_SCHEMA = `
CREATE TABLE event_batches (
  first_id INTEGER PRIMARY KEY,
  last_id INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  count INTEGER NOT NULL,
  pids TEXT NOT NULL,
  events TEXT NOT NULL
);
`;

/** An event as stored: [id, type, at, data]: as published, without the
 * names of its fields (serializing is most of what a batch costs). */
type Stored = [number, string, string, LifecycleEvent['data']];

interface BatchRow { first_id: number; last_id: number; count: number; pids: string; events: string }

export interface EventQuery {
  pid?: Pid;
  /** Events with a greater id only. */
  after: number;
  limit: number;
}

export class EventLog {
  /** Events recorded: counted once, then kept. */
  private total: number;
  private readonly insert;

  constructor(private readonly db: Db) {
    this.insert = db.prepare('INSERT INTO event_batches (first_id, last_id, last_at, count, pids, events) VALUES (?, ?, ?, ?, ?, ?)');
    this.total = (db.prepare('SELECT total(count) AS n FROM event_batches').get() as { n: number }).n;
  }

  get count(): number { return this.total; }

  get lastId(): number {
    return (this.db.prepare('SELECT max(last_id) AS n FROM event_batches').get() as { n: number | null }).n ?? 0;
  }

  /** In the caller's transaction; `committed` once it is. */
  write(events: readonly LifecycleEvent[]): void {
    if (!events.length) return;
    const pids: Record<number, number> = {};
    const stored: Stored[] = [];
    for (const e of events) {
      const pid = (e.data as { pid?: number }).pid;
      if (pid !== undefined) pids[pid] = (pids[pid] ?? 0) + 1;
      stored.push([e.id, e.type, e.at, e.data]);
    }
    const last = events.at(-1)!;
    this.insert.run(events[0]!.id, last.id, Date.parse(last.at), events.length, JSON.stringify(pids), JSON.stringify(stored));
  }

  committed(n: number): void {
    this.total += n;
  }

  /** Up to `limit` events after `after` (of one pid), and whether there
   * are more. */
  page(q: EventQuery): { items: LifecycleEvent[]; more: boolean } {
    const items: LifecycleEvent[] = [];
    let more = false;
    for (const batch of this.batchesAfter(q)) {
      for (const [id, type, at, data] of this.events(batch.first_id)) {
        if (id <= q.after || (q.pid !== undefined && (data as { pid?: number }).pid !== q.pid)) continue;
        if (items.length === q.limit) {
          more = true;
          break;
        }
        items.push({ id, type, at, data } as LifecycleEvent);
      }
      if (more) break;
    }
    return { items, more };
  }

  /** The batches that may hold events after `after` of `pid`, oldest
   * first: their counts, not their events (which are read only when used). */
  private *batchesAfter(q: Omit<EventQuery, 'limit'>): Generator<Omit<BatchRow, 'events'>> {
    const rows = this.db.prepare('SELECT first_id, last_id, count, pids FROM event_batches WHERE last_id > ? ORDER BY first_id').iterate(q.after) as IterableIterator<Omit<BatchRow, 'events'>>;
    for (const row of rows) if (q.pid === undefined || q.pid in (JSON.parse(row.pids) as Record<number, number>)) yield row;
  }

  private events(firstId: number): Stored[] {
    return JSON.parse(this.db.prepare('SELECT events FROM event_batches WHERE first_id = ?').pluck().get(firstId) as string) as Stored[];
  }

  /** Events after `q.after` (of `q.pid`), from the batches' own counts:
   * a batch that straddles `after` is decoded only for a pid (its ids are
   * consecutive). */
  matching(q: Omit<EventQuery, 'limit'>): number {
    if (q.pid === undefined && q.after === 0) return this.total;
    if (q.pid === undefined) {
      const whole = (this.db.prepare('SELECT total(count) FROM event_batches WHERE first_id > ?').pluck().get(q.after) as number);
      const straddling = this.db.prepare('SELECT last_id FROM event_batches WHERE first_id <= ? AND last_id > ?').pluck().get(q.after, q.after) as number | undefined;
      return whole + (straddling === undefined ? 0 : straddling - q.after);
    }
    let n = 0;
    for (const batch of this.batchesAfter(q)) {
      if (batch.first_id > q.after) n += (JSON.parse(batch.pids) as Record<number, number>)[q.pid] ?? 0;
      else n += this.events(batch.first_id).filter(([id, , , data]) => id > q.after && (data as { pid?: number }).pid === q.pid).length;
    }
    return n;
  }

  /** Drops up to `batches` of the oldest batches that all happened before
   * `cutoff`; returns the events dropped. */
  dropOlderThan(cutoff: number, batches: number): number {
    const old = this.db.prepare('SELECT first_id, count FROM event_batches WHERE first_id IN (SELECT first_id FROM event_batches ORDER BY first_id LIMIT ?) AND last_at < ?')
      .all(batches, cutoff) as Array<{ first_id: number; count: number }>;
    const remove = this.db.prepare('DELETE FROM event_batches WHERE first_id = ?');
    let n = 0;
    for (const { first_id, count } of old) {
      remove.run(first_id);
      n += count;
    }
    this.total -= n;
    return n;
  }
}
