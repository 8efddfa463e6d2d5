/* The records' database file (docs/records.md): SQLite in the state
 * directory, made private, in WAL mode; a file SQLite cannot read is
 * kept aside and a new one started, so that a damaged file never stops
 * the daemon from supervising, nor is lost. */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { EVENT_SCHEMA } from './event-log.js';
import { SYSCALL_SCHEMA } from './syscall-store.js';

export type Db = Database.Database;

/** Records kept in memory only, lost when the daemon stops. */
export const VOLATILE = ':memory:';

export const DATABASE_FILE = 'tlsd.db';

/** The schema's version, in `PRAGMA user_version`: 2 added the syscall
 * tables (syscall-store.ts); a version 1 file gets them when opened. */
const SCHEMA_VERSION = 2;

/* Times are milliseconds since the epoch. A process is its serial, for
 * good: pids are reused, serials never. Ledger rows carry neither pid nor
 * leader (the process's row has them) to stay small: tens of millions of
 * them is what a test farm makes. */
const SCHEMA = `
CREATE TABLE runs (
  run INTEGER PRIMARY KEY,
  started_at INTEGER NOT NULL,
  daemon_pid INTEGER NOT NULL
);
CREATE TABLE processes (
  serial INTEGER PRIMARY KEY,
  run INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  state TEXT NOT NULL,
  origin TEXT NOT NULL,
  exe TEXT NOT NULL,
  argv TEXT NOT NULL,
  libc TEXT NOT NULL,
  linkage TEXT NOT NULL,
  image INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  parent_pid INTEGER,
  stdout TEXT,
  stderr TEXT,
  exit_code INTEGER,
  exit_signal INTEGER,
  exit_core INTEGER,
  ended_at INTEGER,
  attach TEXT,
  gaps TEXT NOT NULL,
  threads_exited INTEGER NOT NULL,
  exits_dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX processes_pid ON processes (pid, serial);
CREATE INDEX processes_ended ON processes (ended_at);
CREATE TABLE exits (
  serial INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  tid INTEGER NOT NULL,
  at INTEGER NOT NULL,
  how INTEGER NOT NULL,
  code INTEGER,
  signal INTEGER,
  core INTEGER,
  shim INTEGER,
  PRIMARY KEY (serial, seq)
) WITHOUT ROWID;
CREATE TABLE forgotten (
  what TEXT PRIMARY KEY,
  count INTEGER NOT NULL
);
`;

export interface OpenedDatabase {
  db: Db;
  /** Where the file is, or VOLATILE. */
  file: string;
  /** Where a file SQLite could not read was moved, if one was. */
  keptAside?: string;
}

/** The state directory, made 0700 if missing; one that others can read is
 * refused (its records hold command lines and output paths). */
function prepareStateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { mode } = statSync(dir);
  if (mode & 0o077) {
    throw new Error(`state directory ${dir} is open to others (mode 0${(mode & 0o777).toString(8)}); its records hold command lines: chmod 700 it`);
  }
}

/** Opens (or creates) the database in `stateDir` (or in memory for
 * VOLATILE) with the current schema. */
export function openDatabase(stateDir: string, log: Logger): OpenedDatabase {
  if (stateDir === VOLATILE) return { db: prepare(new Database(VOLATILE)), file: VOLATILE };
  prepareStateDirectory(stateDir);
  const file = path.join(stateDir, DATABASE_FILE);
  if (!existsSync(file)) {
    // Made 0600 before SQLite opens it: SQLite gives its -wal and -shm
    // files the database's own mode.
    closeSync(openSync(file, 'a', 0o600));
    log.info({ file }, 'no records yet: starting a new database');
  }
  chmodSync(file, 0o600);
  try {
    return { db: prepare(new Database(file)), file };
  } catch (e) {
    if (!isUnreadable(e)) throw e;
    const keptAside = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(file + suffix)) renameSync(file + suffix, keptAside + suffix);
    }
    log.error({ file, keptAside, err: e }, 'the records database cannot be read: it is kept aside and a new one started');
    closeSync(openSync(file, 'a', 0o600));
    return { db: prepare(new Database(file)), file, keptAside };
  }
}

/** SQLite's own verdicts on a file that is not a database it can use. */
function isUnreadable(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  return ['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_INDEX'].includes(code) || code.startsWith('SQLITE_CORRUPT');
}

/** Pragmas, schema, and a check that the file's pages hold together. */
function prepare(db: Db): Db {
  try {
    // WAL: readers never wait for the writer; NORMAL: a commit waits for
    // no fsync (only checkpoints do), and a crash of the daemon loses no
    // committed transaction (a crash of the machine may lose the last).
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === 0) {
      db.exec(SCHEMA + EVENT_SCHEMA + SYSCALL_SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    } else if (version === 1) {
      db.exec(SYSCALL_SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    } else if (version !== SCHEMA_VERSION) {
      throw Object.assign(new Error(`the records database has schema version ${version}; this tlsd reads ${SCHEMA_VERSION}`), { code: 'TLSD_SCHEMA' });
    }
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw Object.assign(new Error(`quick_check: ${String(check)}`), { code: 'SQLITE_CORRUPT' });
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}
