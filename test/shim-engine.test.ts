/* The shim's syscall engine (native/shim/engine.c) in real programs: what
 * a SIGSYS handler in the process must survive (signals whose handlers
 * make calls, a program's own SIGSYS, every signal blocked, a hundred
 * threads with a rule each, a raw clone on a tiny stack, fork, vfork,
 * posix_spawn, an exec without the shim, Go with and without cgo), its
 * lease: with tlsd gone or hung, its rules lapse by themselves, and the
 * process let go of by the tracer meanwhile (release), followed through
 * the kernel's process events, with /proc's TracerPid as the oracle.
 * Expected values are known by construction (test/fixtures/syscalls/engine.c). */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { TlsdClient } from '../clients/client.js';
import { processEnd, startDaemon } from './helpers/daemon.js';
import { fixturePath, killPid, noThreadInTracingStop, processEnded, scratchDir, taskStatus, waitUntil } from './helpers/fixture.js';

type RuleInput = Parameters<TlsdClient['addRule']>[1];
const GETPPID_42: RuleInput = { syscalls: ['getppid'], retval: 42, engine: 'shim' };

const scratch = (t: ExecutionContext) => scratchDir(t, 'tlsd-engine-');

/** Spawned with the shim and `rules`; its output read as it comes. */
async function spawned(t: ExecutionContext, client: TlsdClient, argv: string[], rules: RuleInput[] = [GETPPID_42]) {
  const dir = scratch(t);
  const stdout = path.join(dir, 'out'), stderr = path.join(dir, 'err');
  const p = await client.spawn({ argv, stdout, stderr, shim: { mode: 'thread-pointer' }, syscalls: rules });
  t.teardown(() => killPid(p.pid));
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');
  return { pid: p.pid, dir, out: () => read(stdout), err: () => read(stderr) };
}

/** The engine fixture opening a file every 10 ms, `opens` times, under a
 * shim rule that fails each open; once the first failure is seen. */
async function failingOpens(t: ExecutionContext, client: TlsdClient, opens: number) {
  const file = path.join(scratch(t), 'file');
  writeFileSync(file, 'x');
  const s = await spawned(t, client, [fixturePath('engine'), 'opens', file, String(opens)], [{ syscalls: ['openat'], path: file, error: 'ENOENT', engine: 'shim' }]);
  await waitUntil('failures', () => s.out().startsWith('ENOENT\n'));
  return s;
}

async function ran(t: ExecutionContext, client: TlsdClient, argv: string[], rules?: RuleInput[]) {
  const s = await spawned(t, client, argv, rules);
  const end = await processEnd(client, s.pid);
  return { ...s, code: end.exit?.code };
}

// The C library and the linking change how threads start (clone3 or
// clone), how handlers are installed and which calls a program makes.
const kinds = [['glibc-dynamic', 'engine'], ['glibc-static', 'glibc-static/engine'], ['musl-dynamic', 'musl-dynamic/engine'], ['musl-static', 'musl-static/engine']];

test('in glibc and musl, dynamic and static: 3000 signals whose handler calls getppid; a program\'s own SIGSYS; every signal blocked; a raw clone on a 16 KiB stack', async (t) => {
  const d = await startDaemon(t);
  for (const [kind, fixture] of kinds) {
    const signals = await ran(t, d.client, [fixturePath(fixture!), 'signals', '3000']);
    t.is(signals.out(), 'main 42 3000\nhandler 42 3000\nhandler other 0\n', `${kind}: every call got the rule, in handlers too`);
    const stats = await d.client.syscallStats(signals.pid);
    t.is(stats.engine, 'shim');
    t.deepEqual(stats.syscalls.map((s) => [s.name, s.calls]), [['getppid', 6000]], `${kind}: each counted once`);
    t.deepEqual(stats.threads.map((th) => [th.tid, th.calls]), [[signals.pid, 6000]]);

    const sigsys = await ran(t, d.client, [fixturePath(fixture!), 'sigsys']);
    t.is(sigsys.out(), 'own sigsys 1\nown handler kept 1\nblocked getppid 42\nsigsys shown blocked 1\n', kind);
    t.is(sigsys.code, 0);

    const raw = await ran(t, d.client, [fixturePath(fixture!), 'rawclone']);
    t.is(raw.out(), 'rawclone 42\n', kind);
    t.is(raw.code, 0);
  }
});

test('100 threads, each with a rule of its own added live: each gets its value, and the counts are exact per thread', async (t) => {
  const d = await startDaemon(t);
  const go = path.join(scratch(t), 'go');
  // A rule on getppid from the start: the engine's filter traps it, so
  // that the per-thread rules added later are the engine's too.
  const s = await spawned(t, d.client, [fixturePath('engine'), 'threads', '100', '50', go], [{ syscalls: ['getppid'], engine: 'shim' }]);
  const tids = await waitUntil('100 threads', () => {
    const found = [...s.out().matchAll(/^tid (\d+) fs/gm)].map((m) => Number(m[1]));
    return found.length === 100 ? found : undefined;
  });
  // Released, the process's new threads are known a moment after their
  // start (the kernel's process events): each, before its rule.
  await waitUntil('tlsd to know the 100 threads', async () => {
    const known = new Set((await d.client.threads(s.pid)).map((th) => th.tid));
    return tids.every((tid) => known.has(tid));
  });
  for (const [i, tid] of tids.entries()) {
    const rule = await d.client.addRule(s.pid, { syscalls: ['getppid'], tids: [tid], retval: 1000 + i });
    t.is(rule.engine, 'shim');
  }
  writeFileSync(go, '');
  await processEnd(d.client, s.pid);
  for (const [i, tid] of tids.entries()) t.regex(s.out(), new RegExp(`^${tid} got ${1000 + i}$`, 'm'));
  t.notRegex(s.out(), /mixed/);
  const stats = await d.client.syscallStats(s.pid);
  t.deepEqual(stats.threads.map((th) => [th.tid, th.calls]), [...tids].sort((a, b) => a - b).map((tid) => [tid, 50]));
  t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls]), [['getppid', 5000]]);
});

test('fork, vfork and exec, posix_spawn of a missing program, then an exec of a static program without the shim: nothing breaks', async (t) => {
  const d = await startDaemon(t);
  const r = await ran(t, d.client, [fixturePath('engine'), 'forks', fixturePath('musl-static/engine')]);
  // The forked child has the rule through the tracer (strace -f's
  // semantics); the new image runs without the shim, its usage on stderr.
  t.is(r.out(), 'fork 42\nvfork exec 0\nposix_spawn missing ENOENT\n');
  t.regex(r.err(), /^usage: engine/);
  t.is(r.code, 2);
  const stats = await d.client.syscallStats(r.pid);
  t.is(stats.engine, 'ptrace', 'after the exec, the tracer has the rules again');
});

test('Go, static and with cgo, keeps working with the rule on, which fails exactly the 2nd and 3rd opens of the file', async (t) => {
  const d = await startDaemon(t);
  const file = path.join(scratch(t), 'file');
  writeFileSync(file, 'x');
  for (const kind of ['go-static', 'go-cgo']) {
    const r = await ran(t, d.client, [fixturePath(`${kind}/opener`), file, '5'], [{ syscalls: ['openat'], path: file, error: 'ENOENT', when: '2..3', engine: 'shim' }]);
    t.is(r.out(), 'ok\nno such file or directory\nno such file or directory\nok\nok\ndone\n', kind);
    t.is(r.code, 0);
    t.is((await d.client.syscallStats(r.pid)).engine, 'shim');
  }
});

test('the lease: tlsd hung (SIGSTOP), its rules lapse within the lease; tlsd killed, they go at once; the program finishes, never an ENOSYS', async (t) => {
  const d = await startDaemon(t, ['--shim-lease', '1000']);
  const s = await failingOpens(t, d.client, 600);
  process.kill(d.child.pid!, 'SIGSTOP');
  const stoppedAt = Date.now();
  try {
    await waitUntil('the lease to lapse', () => s.out().includes('ENOENT\nok\n'), 5000);
    t.true(Date.now() - stoppedAt < 3000, `lapsed after ${Date.now() - stoppedAt} ms (lease 1000 ms)`);
  } finally {
    process.kill(d.child.pid!, 'SIGCONT');
  }
  // Renewed: the rule holds again; then tlsd dies and its rules with it.
  await waitUntil('failures again', () => s.out().endsWith('ENOENT\n'));
  process.kill(d.child.pid!, 'SIGKILL');
  await waitUntil('the program to finish', () => s.out().endsWith('done\n'), 15000);
  t.regex(s.out(), /^(ENOENT\nok\n)+done\n$/);
  await waitUntil('its end', () => processEnded(s.pid));
  t.true(noThreadInTracingStop(s.pid) || processEnded(s.pid));
});

test('the tracer SIGKILLed while the shim has the rules: the new tracer leaves them to it; every call is counted once', async (t) => {
  const d = await startDaemon(t);
  // 6 s of opens: it must outlive a tracer restart on a loaded machine.
  const s = await failingOpens(t, d.client, 600);
  const tracer = (await d.client.health()).tracerPid!;
  process.kill(tracer, 'SIGKILL');
  await waitUntil('a new tracer', async () => (await d.client.health()).tracerPid !== tracer && (await d.client.process(s.pid)).state === 'running');
  await processEnd(d.client, s.pid);
  t.is(s.out(), 'ENOENT\ndone\n', 'the rule held throughout');
  const stats = await d.client.syscallStats(s.pid);
  t.is(stats.engine, 'shim');
  t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls, c.errors]), [['openat', 600, 600]]);
});

test('a detach ends the shim\'s rules at once, as it ends the tracer\'s', async (t) => {
  const d = await startDaemon(t);
  const s = await failingOpens(t, d.client, 300);
  await d.client.detach(s.pid);
  const detachedAt = Date.now();
  await waitUntil('opens that work', () => s.out().includes('ok\n'), 5000);
  t.true(Date.now() - detachedAt < 1000, `${Date.now() - detachedAt} ms after the detach (the lease is 5000)`);
  await waitUntil('the program to finish', () => s.out().endsWith('done\n'), 15000);
  t.is(s.out(), 'ENOENT\nok\ndone\n');
});

/** Which tracer each thread of pid has now (0: none), from /proc. */
const tracers = (pid: number) => taskStatus(pid, 'TracerPid');
/** Released: no thread traced but the shim's agent, which tlsd's tracer keeps. */
const released = (pid: number, tracer: number) => {
  const all = [...tracers(pid).values()];
  return all.filter((t) => t === 0).length === all.length - 1 && all.includes(tracer);
};
const traced = (pid: number) => [...tracers(pid).values()].every((tracer) => tracer !== 0);

test('while its shim has every rule, the process is not traced: threads born and ended meanwhile are followed, with their FS base and their exit; strace can attach, and a rule of the tracer\'s is refused meanwhile; alone, such a rule takes it back, its removal lets it go again', async (t) => {
  const d = await startDaemon(t);
  const go = path.join(scratch(t), 'go');
  const s = await spawned(t, d.client, [fixturePath('engine'), 'threads', '20', '10', go], [{ syscalls: ['getppid'], engine: 'shim' }]);
  const born = await waitUntil('20 threads', () => {
    const found = [...s.out().matchAll(/^tid (\d+) fs ([0-9a-f]+)$/gm)].map((m) => [Number(m[1]), BigInt('0x' + m[2])] as const);
    return found.length === 20 ? found : undefined;
  });
  const tracer = (await d.client.health()).tracerPid!;
  await waitUntil('no thread traced but the agent', () => released(s.pid, tracer));
  // Each thread the program made is known, with the FS base it has.
  const known = await waitUntil('the threads in the registry', async () => {
    const threads = new Map((await d.client.threads(s.pid)).map((th) => [th.tid, BigInt(th.fsBase)]));
    return born.every(([tid]) => threads.has(tid)) ? threads : undefined;
  });
  for (const [tid, fs] of born) t.is(known.get(tid), fs, `thread ${tid}`);

  // Untraced, it can be traced by another program: then a rule that
  // tlsd's tracer would apply is refused, and nothing changes.
  const strace = spawn('strace', ['-f', '-o', '/dev/null', '-p', String(s.pid)], { stdio: 'ignore' });
  t.teardown(() => killPid(strace.pid!));
  await waitUntil('strace to trace it', () => traced(s.pid));
  const refused = await d.client.addRule(s.pid, { syscalls: ['getpid'], engine: 'ptrace' }).then(() => undefined, (e: unknown) => e);
  t.like(refused, { code: 'ALREADY_TRACED', status: 409 });
  t.is((await d.client.rules(s.pid)).length, 1);
  strace.kill('SIGTERM'); // it detaches
  await waitUntil('strace gone', () => released(s.pid, tracer));

  // A rule the tracer applies needs the threads traced; without it they
  // are let go again.
  const rule = await d.client.addRule(s.pid, { syscalls: ['getpid'], engine: 'ptrace' });
  t.true([...tracers(s.pid).values()].every((t) => t === tracer), 'traced once the rule is in force');
  await d.client.removeRule(s.pid, rule.id);
  await waitUntil('let go again', () => released(s.pid, tracer));

  writeFileSync(go, '');
  await processEnd(d.client, s.pid);
  t.is(born.filter(([tid]) => new RegExp(`^${tid} got \\d+$`, 'm').test(s.out())).length, 20);
  const exits = await d.client.exits(s.pid);
  t.deepEqual(born.map(([tid]) => exits.find((x) => x.tid === tid)).map((x) => [x?.how, x?.code]), born.map(() => ['exit', 0]), 'each thread\'s own exit, as it happened');
  t.like(exits.find((x) => x.leader), { how: 'exit_group', code: 0 });
  const stats = await d.client.syscallStats(s.pid);
  t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls]), [['getppid', 200]]);
});
