/* The records on disk (docs/records.md): a daemon SIGKILLed and started
 * again on the same state directory answers what the first one recorded;
 * the files are private; a damaged database is kept aside; retention and
 * forgetting drop what they say and count it. */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { daemonEntry } from '../daemon/paths.js';
import { openDatabase, VOLATILE } from '../daemon/records/database.js';
import { Records } from '../daemon/records/records.js';
import type { ProcessRecord } from '../daemon/registry.js';
import { asPid, asTid } from '../daemon/types.js';
import { processEnd, startDaemon } from './helpers/daemon.js';
import { fixturePath, killPid, processEnded, waitUntil } from './helpers/fixture.js';
import { tlsctl } from './helpers/tlsctl.js';

/** A state directory that outlives the daemons of a test. */
function stateDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'state');
}

const tracerOf = (pid: number) => Number(/^TracerPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

test('a daemon SIGKILLed and started again answers what the first one recorded', async (t) => {
  const state = stateDir(t);
  const first = await startDaemon(t, [], { stateDir: state });
  // 48 threads made and joined, the creator, the leader: 50 exits.
  const churn = await first.client.spawn({ argv: [fixturePath('churn'), '1', '48'] });
  await processEnd(first.client, churn.pid);
  const exits = await first.client.exits(churn.pid);
  t.is(exits.length, 50);
  const sleeper = await first.client.spawn({ argv: ['sleep', '600'] });
  t.teardown(() => killPid(sleeper.pid));
  const brief = await first.client.spawn({ argv: ['sleep', '1'] });
  t.teardown(() => killPid(brief.pid));
  const lastEvent = (await first.client.recentEvents()).at(-1)!; // a read: what is pending is committed
  first.child.kill('SIGKILL');

  await waitUntil('the tracer to let go of the sleeper', () => tracerOf(sleeper.pid) === 0);
  await waitUntil('the brief one to end', () => processEnded(brief.pid));
  const second = await startDaemon(t, [], { stateDir: state });
  t.is((await second.client.health()).run, 2);

  const again = await second.client.process(churn.pid);
  t.like(again, { state: 'exited', earlierRun: true, run: 1, threadsExited: 50, exit: { code: 0 } });
  t.deepEqual(await second.client.exits(churn.pid), exits, 'the 50 exits, exactly');
  t.like(await second.client.process(sleeper.pid), { state: 'unsupervised', earlierRun: true });
  t.like(await second.client.process(brief.pid), { state: 'lost', earlierRun: true });
  t.is(tracerOf(sleeper.pid), 0, 'nobody traces the unsupervised one');
  const unread = await t.throwsAsync(second.client.readTls(sleeper.pid, 'errno'));
  t.regex(unread!.message, /no longer supervised \(unsupervised\): attach to it/);
  const ps = await tlsctl(second.socket, 'ps');
  t.regex(ps.stdout, new RegExp(`^${churn.pid}\\s+exited\\s.*\\s1\\*\\s`, 'm'), 'tlsctl ps marks the earlier run');
  t.regex(ps.stdout, new RegExp(`^${sleeper.pid}\\s+unsupervised\\s`, 'm'));

  const before = await second.client.recentEvents({ pid: churn.pid });
  t.true(before.some((e) => e.type === 'process.exited'), 'the first run\'s events are there');
  const attached = await second.client.attach(sleeper.pid);
  t.like(attached, { state: 'running', run: 2 });
  t.is(attached.earlierRun, undefined);
  const newest = (await second.client.recentEvents()).at(-1)!;
  t.true(newest.id > lastEvent.id, 'event ids go on from the first run\'s');
  const states = (await second.client.processes({ argv: 'sleep 600' })).map((p) => p.state);
  t.deepEqual(states, ['unsupervised', 'running'], 'the earlier record stays; the attach is a new one');
  await second.client.detach(sleeper.pid);
});

test('the state directory is 0700 and the database 0600; a directory others can read is refused', async (t) => {
  const state = stateDir(t);
  const { client } = await startDaemon(t, [], { stateDir: state });
  t.is(statSync(state).mode & 0o777, 0o700);
  t.is(statSync(path.join(state, 'tlsd.db')).mode & 0o777, 0o600);
  const health = await client.health();
  t.is(health.records.file, path.join(state, 'tlsd.db'));
  for (const suffix of ['-wal', '-shm']) {
    const file = path.join(state, `tlsd.db${suffix}`);
    if (existsSync(file)) t.is(statSync(file).mode & 0o777, 0o600, suffix);
  }

  const open = stateDir(t);
  mkdirSync(open, { recursive: true });
  chmodSync(open, 0o755);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const refused = spawnSync(process.execPath, [daemonEntry, '--socket', path.join(dir, 's.sock'), '--state-dir', open], { encoding: 'utf8', timeout: 20000 });
  t.is(refused.status, 1);
  t.regex(refused.stdout + refused.stderr, /state directory .* is open to others \(mode 0755\)/);
  t.false(existsSync(path.join(open, 'tlsd.db')), 'nothing written there');
});

test('a database that cannot be read is kept aside, and a new one started', async (t) => {
  const state = stateDir(t);
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const damaged = Buffer.from('SQLite format 3\0 but not really: a damaged header and nothing after it'.repeat(100));
  writeFileSync(path.join(state, 'tlsd.db'), damaged, { mode: 0o600 });
  const { client } = await startDaemon(t, [], { stateDir: state });
  const { records } = await client.health();
  t.truthy(records.keptAside);
  t.deepEqual(readFileSync(records.keptAside!), damaged, 'the damaged file, as it was');
  t.is(path.dirname(records.keptAside!), state);
  const p = await client.spawn({ argv: [fixturePath('churn'), '1', '2'] });
  await processEnd(client, p.pid);
  t.is((await client.exits(p.pid)).length, 4, 'the new database records');
});

test('a database whose pages are damaged is kept aside too', async (t) => {
  const state = stateDir(t);
  const first = await startDaemon(t, [], { stateDir: state });
  const p = await first.client.spawn({ argv: [fixturePath('churn'), '1', '300'] });
  await processEnd(first.client, p.pid);
  const stopped = new Promise((r) => first.child.once('exit', r));
  first.child.kill('SIGTERM'); // a clean close: everything is in the file
  await stopped;
  const file = path.join(state, 'tlsd.db');
  const bytes = readFileSync(file);
  t.true(bytes.length > 8 * 4096);
  bytes.fill(0xab, 4096, bytes.length - 4096); // the schema page intact, the others not
  writeFileSync(file, bytes);

  const second = await startDaemon(t, [], { stateDir: state });
  const { records } = await second.client.health();
  t.truthy(records.keptAside);
  t.deepEqual(readFileSync(records.keptAside!), bytes);
  t.is((await second.client.processes()).length, 0, 'a new, empty database');
});

test('retention by size drops the oldest first, and the totals stay exact; forget drops one', async (t) => {
  const { client, socket } = await startDaemon(t, ['--retain-mb', '1']);
  // About 300 bytes a thread in the records (docs/records.md "Size"):
  // three such processes are twice the limit.
  const pids: number[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await client.spawn({ argv: [fixturePath('churn'), '1', '2500'] });
    await processEnd(client, p.pid);
    pids.push(p.pid);
  }
  const { records } = await waitUntil('retention to drop the oldest', async () => {
    const h = await client.health();
    return h.records.forgotten.processes > 0 && h.records.bytes <= 1024 * 1024 ? h : undefined;
  });
  const kept = (await client.processes()).map((p) => p.pid);
  t.deepEqual(kept, pids.slice(pids.length - kept.length), 'the oldest went first');
  t.is(kept.length + records.forgotten.processes, 3);
  for (const pid of pids.slice(0, pids.length - kept.length)) {
    const err = await t.throwsAsync(client.process(pid));
    t.is((err as { code?: string }).code, 'NOT_FOUND', `process ${pid}, dropped, is not found`);
  }
  let exitsKept = 0;
  for (const pid of kept) {
    const p = await client.process(pid);
    t.is(p.threadsExited, 2502);
    const page = await client.request<{ total: number; dropped?: number }>('GET', `/v1/processes/${pid}/exits?limit=1`);
    t.is(page.total + (page.dropped ?? 0), 2502, 'rows kept and dropped add up');
    exitsKept += page.total;
  }
  t.is(exitsKept + records.forgotten.exits, 3 * 2502, 'every exit is kept or counted as forgotten');
  const events = await client.recentEvents();
  t.is(events.length + records.forgotten.events, events.at(-1)!.id, 'every event is kept or counted as forgotten');

  const forgot = await tlsctl(socket, 'forget', String(kept[0]));
  t.is(forgot.code, 0, forgot.stderr);
  t.is((await client.health()).records.forgotten.processes, records.forgotten.processes + 1);
  t.false((await client.processes()).some((p) => p.pid === kept[0]));
  const again = await tlsctl(socket, 'forget', String(kept[0]));
  t.regex(again.stderr, /NOT_FOUND/);
});

test('retention by age drops what ended before the limit, events too; a running process stays', async (t) => {
  // 0.00003 days: 2.6 s.
  const { client } = await startDaemon(t, ['--retain-days', '0.00003']);
  const ended = await client.spawn({ argv: [fixturePath('churn'), '1', '3'] });
  await processEnd(client, ended.pid);
  const sleeper = await client.spawn({ argv: ['sleep', '600'] });
  t.teardown(() => killPid(sleeper.pid));
  const { records } = await waitUntil('retention by age', async () => {
    const h = await client.health();
    return h.records.forgotten.processes === 1 ? h : undefined;
  });
  t.is(records.forgotten.exits, 5);
  t.true(records.forgotten.events >= 1 + 5 + 5, 'its spawn, thread and exit events');
  t.deepEqual((await client.processes()).map((p) => p.pid), [sleeper.pid], 'the running one stays');
  await client.detach(sleeper.pid);
});

test('bad retention settings are refused at start', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [flag, value] of [['--retain-mb', '-1'], ['--retain-days', 'week'], ['--retain-mb', '']]) {
    const r = spawnSync(process.execPath, [daemonEntry, '--socket', path.join(dir, 's.sock'), '--state-dir', path.join(dir, 'state'), `${flag}=${value}`], { encoding: 'utf8', timeout: 20000 });
    t.is(r.status, 1, `${flag} ${value}`);
    const said = (r.stdout + r.stderr).split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg);
    t.true(said.includes(`${flag} "${value}" is not a number of 0 or more`), said.join('; '));
  }
});

test('a shim claim that comes after its thread\'s exit corrects the ledger row written without it', (t) => {
  // The claim comes through the shim's socket, the exit through the
  // tracer: in either order, the ledger ends up saying the slot was released.
  const log = pino({ level: 'silent' });
  const { db, file } = openDatabase(VOLATILE, log);
  const records = new Records(db, file, log);
  t.teardown(() => records.close());
  const claimed = new Set<number>();
  records.shimFate = (_p, x) => (x.shimReclaimed ? 'reclaimed' : claimed.delete(x.tid) ? 'released' : 'none');
  const p: ProcessRecord = {
    serial: 1, run: 1, pid: asPid(100), state: 'running', origin: 'spawned', exe: '/x', argv: ['/x'], libc: 'glibc', linkage: 'dynamic',
    image: 1, startedAt: new Date(), threads: new Map(), threadsExited: 0, exitsDropped: 0, gaps: [], unresolved: new Map(), groupExitSeen: false,
  };
  const exit = (tid: number, shimReclaimed?: true) => records.exit(p, {
    seq: ++p.threadsExited, tid: asTid(tid), pid: p.pid, leader: false, exitedAt: new Date(), how: 'exit', code: 0, ...(shimReclaimed ? { shimReclaimed } : {}),
  });
  const fates = () => records.exitPage(p, {}, {}).items.map((x) => [x.tid, x.shim]);

  claimed.add(101);
  exit(101); // the claim first
  exit(102); // the exit first: written as holding none ...
  exit(103, true);
  exit(104);
  t.deepEqual(fates(), [[101, 'released'], [102, 'none'], [103, 'reclaimed'], [104, 'none']]);
  t.true(records.claimedAfterExit(p, asTid(102)), '... until its claim comes');
  t.false(records.claimedAfterExit(p, asTid(103)), 'a reclaimed slot stays reclaimed');
  t.false(records.claimedAfterExit(p, asTid(105)), 'a thread not in the ledger yet: nothing to correct');
  t.deepEqual(fates(), [[101, 'released'], [102, 'released'], [103, 'reclaimed'], [104, 'none']]);
});
