/* Syscall rules, through the tracer (native/tracer/syscalls.c) and
 * through the shim's engine in the process (native/shim/engine.c), with
 * strace as the oracle: the same spec run under strace and under tlsd,
 * with either engine, gives the same output and exit; the same trace
 * gives the same calls and results in the same order; the same counts. */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { TlsdError } from '../clients/client.js';
import { parseInjectSpec, parseTraceSet } from '../daemon/syscalls/rule.js';
import { processEnd, startDaemon, type TestDaemon } from './helpers/daemon.js';
import { Fixture, fixturePath, killPid, noThreadInTracingStop, processEnded, waitUntil } from './helpers/fixture.js';

/** A file and a directory for the programs to read, in a directory of the test's own. */
function workdir(t: ExecutionContext): { dir: string; file: string; tree: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-syscalls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'words');
  writeFileSync(file, 'pear\napple\nfig\nbanana\n');
  const tree = path.join(dir, 'tree');
  mkdirSync(tree);
  for (const name of ['b', 'a', 'c']) writeFileSync(path.join(tree, name), name);
  return { dir, file, tree };
}

interface Outcome { stdout: string; stderr: string; code: number | null; signal: string | null }

/** Output goes to files opened to append, as a spawn's does: programs
 * write to those otherwise than to a pipe (GNU cat tries copy_file_range,
 * which O_APPEND refuses, then reads and writes). */
function underStrace(args: string[], argv: string[]): Outcome & { log: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-strace-'));
  const [out, err] = ['out', 'err'].map((name) => openSync(path.join(dir, name), 'a'));
  try {
    const log = path.join(dir, 'log');
    const r = spawnSync('strace', ['-f', '-o', log, ...args, ...argv], { stdio: ['ignore', out!, err!] });
    const read = (name: string) => readFileSync(path.join(dir, name), 'utf8');
    return { stdout: read('out'), stderr: read('err'), code: r.status, signal: r.signal, log: read('log') };
  } finally {
    closeSync(out!);
    closeSync(err!);
    rmSync(dir, { recursive: true, force: true });
  }
}

type RuleInput = Parameters<TestDaemon['client']['addRule']>[1];
type Engine = NonNullable<RuleInput['engine']>;
const engines: Engine[] = ['ptrace', 'shim'];

/** The shim's engine is asked for by name: a rule it cannot take is a 400. */
async function underTlsd(d: TestDaemon, dir: string, argv: string[], rules: RuleInput[], engine: Engine = 'ptrace'): Promise<Outcome & { pid: number }> {
  const stdout = path.join(dir, `out-${Math.random()}`), stderr = `${stdout}.err`;
  const p = await d.client.spawn({
    argv, stdout, stderr, syscalls: rules.map((r) => ({ ...r, engine })), ...(engine === 'shim' ? { shim: { mode: 'thread-pointer' as const } } : {}),
  });
  const ended = await processEnd(d.client, p.pid);
  const signal = ended.exit?.signal;
  return {
    pid: p.pid, stdout: readFileSync(stdout, 'utf8'), stderr: readFileSync(stderr, 'utf8'),
    code: ended.exit?.code ?? null, signal: signal ? Object.entries(os.constants.signals).find(([, n]) => n === signal)![0] : null,
  };
}

const injections: [string[], string][] = [
  [['cat', 'FILE'], 'openat:error=ENOENT:when=3'],
  [['cat', 'FILE'], 'read:retval=0:when=2'],
  [['cat', 'FILE'], 'write:signal=SIGUSR1'],
  [['cat', 'FILE'], 'read:delay_enter=20ms'],
  [['ls', 'TREE'], 'getdents64:error=EACCES'],
  [['sort', 'FILE'], 'openat:error=EMFILE:when=2..4'],
  [['sort', 'FILE'], 'read:error=EIO:when=2+'],
  [['sort', 'FILE'], 'close:error=EBADF:when=1+2'],
  [['WORKERS', 'workers', '3', '3', 'FILE'], 'openat:error=ENOENT:when=2'],
  // Forks: each child has the rules, and counts its calls from 1 (strace -f).
  [['sh', '-c', 'cat FILE; cat FILE >&2; cat FILE'], 'copy_file_range:error=EIO:when=1'],
];

for (const engine of engines) {
  test(`${engine} engine: for ten -e inject= expressions on cat, ls, sort, a threaded program and a shell that forks, the output and the exit are strace's`, async (t) => {
    const w = workdir(t);
    const d = await startDaemon(t);
    for (const [command, spec] of injections) {
      const argv = command.map((a) => (a === 'TREE' ? w.tree : a === 'WORKERS' ? fixturePath('workers') : a.replaceAll('FILE', w.file)));
      const oracle = underStrace(['-e', `inject=${spec}`], argv);
      const ours = await underTlsd(d, w.dir, argv, [parseInjectSpec(spec)], engine);
      t.deepEqual({ stdout: ours.stdout, stderr: ours.stderr, code: ours.code, signal: ours.signal },
        { stdout: oracle.stdout, stderr: oracle.stderr, code: oracle.code, signal: oracle.signal }, `${command[0]} -e inject=${spec}`);
    }
  });
}

/** strace -f -o lines as [name, result]: the result is -ENAME for an
 * error, '?' for a call that never returned. */
function straceCalls(log: string): [string, string][] {
  return log.split('\n').flatMap((line) => {
    const m = /^\d+\s+(\w+)\(.*\)\s+= (-?\d+|\?|0x[0-9a-f]+)(?: (E[A-Z0-9]+) )?/.exec(line);
    return m ? [[m[1]!, m[3] ? `-${m[3]}` : m[2]!] as [string, string]] : [];
  });
}

/** strace -c's table: name -> { calls, errors }. */
function straceCounts(log: string): Map<string, { calls: number; errors: number }> {
  const counts = new Map<string, { calls: number; errors: number }>();
  for (const line of log.split('\n')) {
    const f = line.trim().split(/\s+/);
    if ((f.length !== 5 && f.length !== 6) || !/^\d+\.\d+$/.test(f[0]!) || f.at(-1) === 'total') continue;
    counts.set(f.at(-1)!, { calls: Number(f[3]), errors: f.length === 6 ? Number(f[4]) : 0 });
  }
  return counts;
}

for (const engine of engines) test(`${engine} engine: the log and counts of ls -la with trace=%file, and of sort with trace=read,write,openat,close, are strace's`, async (t) => {
  const w = workdir(t);
  const d = await startDaemon(t);
  for (const [command, set] of [[['ls', '-la', 'TREE'], '%file'], [['sort', 'FILE'], 'read,write,openat,close']] as const) {
    const argv = command.map((a) => (a === 'FILE' ? w.file : a === 'TREE' ? w.tree : a));
    const ours = await underTlsd(d, w.dir, argv, [{ syscalls: parseTraceSet(set), trace: true }], engine);
    const { records } = await d.client.syscallLog(ours.pid);
    const oracle = underStrace(['-e', `trace=${set}`], argv);
    t.is(ours.stdout, oracle.stdout);
    t.deepEqual(records.map((r) => [r.name, r.error ? `-${r.error}` : r.retval === null ? '?' : String(r.retval)]), straceCalls(oracle.log), `${argv[0]} trace=${set}`);
    const paths = records.filter((r) => r.name === 'openat').map((r) => r.path);
    t.true(paths.every((p) => typeof p === 'string' && p.length > 0), 'each openat has its path');

    const stats = await d.client.syscallStats(ours.pid);
    const counted = underStrace(['-c', '-e', `trace=${set}`], argv);
    const byName = (m: Map<string, unknown>) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
    t.deepEqual(byName(new Map(stats.syscalls.map((s) => [s.name, { calls: s.calls, errors: s.errors }]))), byName(straceCounts(counted.log)), `${argv[0]} -c`);
    t.deepEqual(stats.threads.map((th) => th.tid), [ours.pid]);
    t.is(stats.engine, engine);
  }
});

/** The opener fixture's lines of one thread, after the first `from` lines. */
const linesOf = (f: Fixture, thread: number, from = 0) => f.out.all.slice(from).filter((l) => l.startsWith(`${thread} `)).map((l) => l.split(' ')[2]);

async function opener(t: ExecutionContext, file: string): Promise<{ f: Fixture; tids: number[] }> {
  const f = await Fixture.start(t, 'workers', ['opener', file], [], /^1 \d+ /);
  await waitUntil('both threads', () => f.out.all.some((l) => l.startsWith('0 ')));
  const tid = (i: number) => Number(f.out.all.find((l) => l.startsWith(`${i} `))!.split(' ')[1]);
  return { f, tids: [tid(0), tid(1)] };
}

const moreLines = (f: Fixture, n: number) => {
  const at = f.out.all.length;
  return waitUntil(`${n} more lines from each thread`, () => [0, 1].every((i) => linesOf(f, i, at).length >= n));
};

test('live on an attached process: when=1..5 fails exactly five calls of one thread; a rule removed stops at once', async (t) => {
  const w = workdir(t);
  const { f, tids } = await opener(t, w.file);
  const d = await startDaemon(t);
  await d.client.attach(f.pid);
  const at = f.out.all.length;
  const rule = await d.client.addRule(f.pid, { syscalls: ['openat'], path: w.file, error: 'ENOENT', when: '1..5', tids: [tids[0]!] });
  t.like(rule, { engine: 'ptrace', when: '1..5', tids: [tids[0]] });
  await moreLines(f, 20);
  t.deepEqual(linesOf(f, 0, at).filter((r) => r !== 'ok'), ['ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT']);
  t.deepEqual(linesOf(f, 1, at).filter((r) => r !== 'ok'), [], 'the other thread is untouched');

  const every = await d.client.addRule(f.pid, { syscalls: ['%file'], path: w.file, error: 'EACCES' });
  await waitUntil('both threads to fail', () => [0, 1].every((i) => linesOf(f, i, at).includes('EACCES')));
  await d.client.removeRule(f.pid, every.id);
  await moreLines(f, 10);
  for (const i of [0, 1]) t.deepEqual(linesOf(f, i).slice(-8), Array(8).fill('ok'), `thread ${i} after the rule was removed`);
  t.deepEqual((await d.client.rules(f.pid)).map((r) => r.id), [rule.id]);

  const stats = await d.client.syscallStats(f.pid);
  const openat = stats.syscalls.find((s) => s.name === 'openat')!;
  t.true(openat.errors >= 5 + 2 && openat.calls > openat.errors, JSON.stringify(openat));
  t.deepEqual(stats.threads.map((x) => x.tid).sort(), [...tids].sort());
  const e = await t.throwsAsync(d.client.removeRule(f.pid, every.id));
  t.is((e as TlsdError).code, 'NOT_FOUND');
  f.child.stdin!.end();
  t.is(await f.exited(), 0);
});

test('bad rules are 400 with strace\'s words and change nothing', async (t) => {
  const w = workdir(t);
  const { f } = await opener(t, w.file);
  const d = await startDaemon(t);
  await d.client.attach(f.pid);
  for (const [rule, words] of [
    [{ syscalls: ['opnat'] }, /invalid system call 'opnat'/],
    [{ syscalls: ['%fiel'] }, /invalid system call '%fiel'/],
    [{ syscalls: ['openat'], error: 'ENOENT', retval: 1 }, /exclude each other/],
    [{ syscalls: ['openat'], when: '0' }, /invalid inject argument 'when=0'/],
    [{ syscalls: ['openat'], when: '3..2' }, /invalid inject argument 'when=3..2'/],
    [{ syscalls: ['openat'], error: 'EFOO' }, /invalid inject argument 'error=EFOO'/],
    [{ syscalls: ['openat'], signal: 'SIGFOO' }, /invalid inject argument 'signal=SIGFOO'/],
    [{ syscalls: ['read'], path: '/x' }, /no call in the set has a path argument/],
    [{ syscalls: ['openat'], tids: [1] }, /not a thread of this process/],
  ] as const) {
    const e = await t.throwsAsync(d.client.addRule(f.pid, rule as never));
    t.is((e as TlsdError).code, 'INVALID_ARGUMENT', JSON.stringify(rule));
    t.regex(e!.message, words);
  }
  t.deepEqual(await d.client.rules(f.pid), []);
  t.throws(() => parseInjectSpec('openat'), { message: /invalid inject argument 'openat'/ });
  t.throws(() => parseInjectSpec('openat:error=ENOENT:retval=1'), { message: /invalid inject argument/ });
  t.deepEqual(parseInjectSpec('openat:error=ENOENT:when=3'), { syscalls: ['openat'], error: 'ENOENT', when: '3' });
  t.deepEqual(parseTraceSet('!read,write'), ['!read', '!write']);
});

test('the daemon, then the tracer, SIGKILLed with rules active: no call stays stuck or fails with ENOSYS', async (t) => {
  const w = workdir(t);
  const { f } = await opener(t, w.file);
  const d = await startDaemon(t);
  await d.client.attach(f.pid);
  await d.client.addRule(f.pid, { syscalls: ['openat'], error: 'ENOENT', delayEnterUs: 2000 });
  await waitUntil('failures', () => [0, 1].every((i) => linesOf(f, i).includes('ENOENT')));

  // The tracer: restarted by the daemon, which attaches again and gives
  // it the rules again.
  const tracer = (await d.client.health()).tracerPid!;
  process.kill(tracer, 'SIGKILL');
  await waitUntil('a new tracer', async () => (await d.client.health()).tracerPid !== tracer && (await d.client.process(f.pid)).state === 'running');
  const at = f.out.all.length;
  await waitUntil('failures again', () => [0, 1].every((i) => linesOf(f, i, at).includes('ENOENT')));

  // The daemon: its tracer detaches; every call runs as it would have.
  d.child.kill('SIGKILL');
  await waitUntil('every call to succeed again', () => [0, 1].every((i) => linesOf(f, i).slice(-20).every((r) => r === 'ok')));
  t.false(f.out.all.some((l) => / ENOSYS$/.test(l)), 'no call failed with ENOSYS');
  t.true(noThreadInTracingStop(f.pid));
  await waitUntil('no tracer', () => !/TracerPid:\s+[1-9]/.test(readFileSync(`/proc/${f.pid}/status`, 'utf8')));
  f.child.stdin!.end();
  t.is(await f.exited(), 0);
});

test('killWithDaemon: a seccomp pre-filter stops only the selected calls, as strace --seccomp-bpf; the process is never detached, and dies with the daemon', async (t) => {
  const w = workdir(t);
  const d = await startDaemon(t);
  for (const [argv, spec] of [[['sort', w.file], 'read:error=EIO:when=2+'], [[fixturePath('workers'), 'workers', '3', '3', w.file], 'openat:error=ENOENT:when=2']] as const) {
    const oracle = underStrace(['--seccomp-bpf', '-e', `trace=${spec.split(':')[0]}`, '-e', `inject=${spec}`], [...argv]);
    const stdout = path.join(w.dir, `kwd-${Math.random()}`);
    const p = await d.client.spawn({ argv: [...argv], stdout, stderr: `${stdout}.err`, killWithDaemon: true, syscalls: [{ ...parseInjectSpec(spec), trace: true }] });
    t.true(p.killWithDaemon);
    const ended = await processEnd(d.client, p.pid);
    t.deepEqual({ stdout: readFileSync(stdout, 'utf8'), stderr: readFileSync(`${stdout}.err`, 'utf8'), code: ended.exit?.code ?? null },
      { stdout: oracle.stdout, stderr: oracle.stderr, code: oracle.code }, spec);
    // Only the selected call stopped: every record is of it.
    const { records } = await d.client.syscallLog(p.pid);
    t.deepEqual([...new Set(records.map((r) => r.name))], [spec.split(':')[0]]);
  }

  // Running: it has the filter; a detach is refused; the daemon's death kills it.
  const { dir } = w;
  const fifo = path.join(dir, 'stdin');
  spawnSync('mkfifo', [fifo]);
  const p = await d.client.spawn({ argv: ['sh', '-c', `exec ${fixturePath('workers')} opener ${w.file} < ${fifo}`], stdout: path.join(dir, 'o'), stderr: path.join(dir, 'e'), killWithDaemon: true, syscalls: [{ syscalls: ['openat'], path: w.file, error: 'ENOENT' }] });
  // Its stdin stays open as long as this writer lives.
  const writer = spawn('sh', ['-c', `exec sleep 60 > ${fifo}`], { stdio: 'ignore' });
  t.teardown(() => killPid(writer.pid!));
  await waitUntil('failures', () => readFileSync(path.join(dir, 'o'), 'utf8').includes('ENOENT'));
  t.regex(readFileSync(`/proc/${p.pid}/status`, 'utf8'), /Seccomp:\s+2/);
  const e = await t.throwsAsync(d.client.detach(p.pid));
  t.is((e as TlsdError).code, 'KILLS_WITH_DAEMON');
  d.child.kill('SIGKILL');
  await waitUntil('it to be killed with the daemon', () => processEnded(p.pid));
  t.false(readFileSync(path.join(dir, 'o'), 'utf8').includes('ENOSYS'));
});

test('rules, counts and records outlive the process and a restart of the daemon; only the last --syscall-log records are kept', async (t) => {
  const w = workdir(t);
  const stateDir = path.join(w.dir, 'state');
  const first = await startDaemon(t, ['--syscall-log', '5'], { stateDir });
  const ours = await underTlsd(first, w.dir, ['sort', w.file], [{ syscalls: ['read', 'openat', 'close'], trace: true }]);
  const stats = await first.client.syscallStats(ours.pid);
  const log = await first.client.syscallLog(ours.pid);
  const rules = await first.client.rules(ours.pid);
  const calls = stats.syscalls.reduce((n, s) => n + s.calls, 0);
  t.true(calls > 5);
  t.is(log.records.length, 5);
  t.true(log.dropped);
  t.deepEqual((await first.client.syscallLog(ours.pid, { since: log.records[2]!.seq })).records, log.records.slice(3));
  first.child.kill('SIGTERM');
  await new Promise((r) => first.child.once('exit', r));

  const second = await startDaemon(t, [], { stateDir });
  t.deepEqual(await second.client.syscallStats(ours.pid), stats);
  t.deepEqual(await second.client.syscallLog(ours.pid), log);
  t.deepEqual(await second.client.rules(ours.pid), rules);
  // Forgotten with the process.
  await second.client.forget(ours.pid);
  const e = await t.throwsAsync(second.client.syscallStats(ours.pid));
  t.is((e as TlsdError).code, 'NOT_FOUND');
});

test('a command that ends at once keeps its rules, counts and records (its news can come with its spawn\'s answer)', async (t) => {
  const w = workdir(t);
  const d = await startDaemon(t);
  for (let i = 0; i < 5; i++) {
    const ours = await underTlsd(d, w.dir, ['true'], [{ syscalls: ['execve', 'exit_group'], trace: true }]);
    t.deepEqual((await d.client.rules(ours.pid)).map((r) => r.syscalls), [['execve', 'exit_group']], `run ${i}`);
    const stats = await d.client.syscallStats(ours.pid);
    t.deepEqual(stats.syscalls.map((s) => [s.name, s.calls]), [['execve', 1], ['exit_group', 1]], `run ${i}`);
    const { records } = await d.client.syscallLog(ours.pid);
    t.deepEqual(records.map((r) => [r.name, r.retval]), [['execve', 0], ['exit_group', null]], `run ${i}`);
  }
});
