/* What a process's syscall rules were, counted and recorded
 * (daemon/syscalls/interposition.ts), kept in the records once the
 * process ends or is detached: readable after it, across restarts of
 * the daemon, and forgotten with the process. */
import type { Db } from './database.js';

export const SYSCALL_SCHEMA = `
CREATE TABLE syscalls (
  serial INTEGER PRIMARY KEY,
  saved TEXT NOT NULL
);
CREATE TABLE syscall_records (
  serial INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  record TEXT NOT NULL,
  PRIMARY KEY (serial, seq)
) WITHOUT ROWID;
`;

/** Rules, counts and records as JSON: their shapes are interposition.ts's. */
export class SyscallStore {
  private readonly saveOne;
  private readonly saveRecord;
  private readonly dropOne;
  private readonly dropRecords;

  constructor(private readonly db: Db) {
    this.saveOne = db.prepare('INSERT OR REPLACE INTO syscalls (serial, saved) VALUES (?, ?)');
    this.saveRecord = db.prepare('INSERT OR REPLACE INTO syscall_records (serial, seq, record) VALUES (?, ?, ?)');
    this.dropOne = db.prepare('DELETE FROM syscalls WHERE serial = ?');
    this.dropRecords = db.prepare('DELETE FROM syscall_records WHERE serial = ?');
  }

  save(serial: number, saved: unknown, records: ReadonlyArray<{ seq: number }>): void {
    this.db.transaction(() => {
      this.saveOne.run(serial, JSON.stringify(saved));
      for (const r of records) this.saveRecord.run(serial, r.seq, JSON.stringify(r));
    })();
  }

  load<T>(serial: number): T | undefined {
    const row = this.db.prepare('SELECT saved FROM syscalls WHERE serial = ?').get(serial) as { saved: string } | undefined;
    return row ? (JSON.parse(row.saved) as T) : undefined;
  }

  /** Records after `since` (a seq), at most `limit`, oldest first. */
  records<T>(serial: number, since: number, limit: number): T[] {
    return (this.db.prepare('SELECT record FROM syscall_records WHERE serial = ? AND seq > ? ORDER BY seq LIMIT ?')
      .all(serial, since, limit) as Array<{ record: string }>).map((r) => JSON.parse(r.record) as T);
  }

  forget(serial: number): void {
    this.dropOne.run(serial);
    this.dropRecords.run(serial);
  }
}
