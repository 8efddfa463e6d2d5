/* The shim's syscall engine started in a running process that tlsd
 * attached to (native/tracer/engine.c): every thread but the shim's agent
 * is given the filter one by one, while the program runs. Expected values
 * are known by construction (test/fixtures/syscalls/engine.c). */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { TlsdClient, TlsdError } from '../clients/client.js';
import { processEnd, startDaemon } from './helpers/daemon.js';
import { Fixture, fixturePath, killPid, scratchDir, taskStatus, waitUntil } from './helpers/fixture.js';

const scratch = (t: ExecutionContext) => scratchDir(t, 'tlsd-engine-');

/** How many of pid's threads have a seccomp filter, as /proc counts. */
const filteredThreads = (pid: number) => [...taskStatus(pid, 'Seccomp_filters').values()].filter((n) => n > 0).length;

/** The shim's agent thread: its thread pointer is in the shim's own
 * memory (injected, or loaded by LD_PRELOAD: then its .bss is the
 * unnamed mapping right after the file's). */
async function agentOf(client: TlsdClient, pid: number): Promise<number> {
  const ranges: bigint[][] = [];
  let afterFile = false;
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const [lo, hi] = line.split(' ')[0]!.split('-').map((x) => BigInt('0x' + (x || '0')));
    const file = line.endsWith('/libtlsshim.so');
    const bss = afterFile && line.trim().split(/\s+/).length === 5 && ranges.at(-1)?.[1] === lo;
    if (file || bss || line.includes('/memfd:tlsshim ')) ranges.push([lo!, hi!]);
    afterFile = file;
  }
  const agents = (await client.threads(pid)).filter((th) => ranges.some(([lo, hi]) => BigInt(th.fsBase) >= lo! && BigInt(th.fsBase) < hi!));
  if (agents.length !== 1) throw new Error(`${agents.length} agents`);
  return agents[0]!.tid;
}

/** pid's threads that something traces (/proc's TracerPid). */
const tracedThreads = (pid: number) => [...taskStatus(pid, 'TracerPid')].filter(([, tracer]) => tracer !== 0).map(([tid]) => tid);

/** The engine fixture's `threads N K GO` mode, started alone: N threads
 * print their tid, wait for GO, then each calls getppid K times. */
async function waitingThreads(t: ExecutionContext, fixture: string, n: number, k: number) {
  const go = path.join(scratch(t), 'go');
  const f = await Fixture.start(t, fixture, ['threads', String(n), String(k), go], [], /^tid \d+ fs/);
  const tids = await waitUntil(`${n} threads`, () => {
    const found = f.out.all.flatMap((l) => l.match(/^tid (\d+) fs/)?.[1] ?? []).map(Number);
    return found.length === n ? found : undefined;
  });
  return { f, tids, go: () => writeFileSync(go, '') };
}

for (const [kind, fixture] of [['glibc-dynamic', 'engine'], ['musl-static', 'musl-static/engine']] as const) {
  test(`${kind}: attached, the shim injected, a rule starts the engine in each running thread; the counts are exact per thread`, async (t) => {
    const d = await startDaemon(t);
    const { f, tids, go } = await waitingThreads(t, fixture, 20, 50);
    await d.client.attach(f.pid, { mode: 'thread-pointer' });
    const rule = await d.client.addRule(f.pid, { syscalls: ['getppid'], retval: 42 });
    t.is(rule.engine, 'shim');
    t.is((await d.client.syscallStats(f.pid)).engine, 'shim');
    // Every thread but the agent: the workers and the main thread.
    t.is(filteredThreads(f.pid), tids.length + 1);
    // The shim has every rule: tlsd lets go of all of them but the agent.
    t.deepEqual(tracedThreads(f.pid), [await agentOf(d.client, f.pid)]);
    go();
    t.is(await f.exited(), 0);
    const end = await processEnd(d.client, f.pid); // the shim's last counts read
    t.like(end.exit, { code: 0 });
    // Each in the exit ledger (that each was its own exit is told by the
    // kernel's process events, which a loaded machine can drop: the
    // spawned case in shim-engine.test.ts checks it).
    const ledger = await d.client.exits(f.pid);
    t.deepEqual(ledger.filter((e) => tids.includes(e.tid)).map((e) => e.code).sort(), tids.map(() => 0));
    for (const tid of tids) t.true(f.out.all.includes(`${tid} got 42`), `thread ${tid}: ${f.out.all.join('|')}`);
    const stats = await d.client.syscallStats(f.pid);
    t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls]), [['getppid', 1000]]);
    t.deepEqual(stats.threads.map((th) => [th.tid, th.calls]), [...tids].sort((a, b) => a - b).map((tid) => [tid, 50]));
  });
}

test('Go, static and with cgo, attached: the engine starts in its threads (each keeps its own alternate stack), and fails exactly the 2nd and 3rd opens', async (t) => {
  const d = await startDaemon(t);
  const dir = scratch(t);
  const file = path.join(dir, 'file');
  writeFileSync(file, 'x');
  for (const kind of ['go-static', 'go-cgo']) {
    const go = path.join(dir, `go-${kind}`);
    const f = await Fixture.start(t, `${kind}/opener`, [file, '5', go], [], /^ready$/);
    await d.client.attach(f.pid, { mode: 'thread-pointer' });
    const rule = await d.client.addRule(f.pid, { syscalls: ['openat'], path: file, error: 'ENOENT', when: '2..3' });
    t.is(rule.engine, 'shim', kind);
    writeFileSync(go, '');
    t.is(await f.exited(), 0, kind);
    await processEnd(d.client, f.pid);
    t.deepEqual(f.out.all, ['ready', 'ok', 'no such file or directory', 'no such file or directory', 'ok', 'ok', 'done'], kind);
    const stats = await d.client.syscallStats(f.pid);
    t.is(stats.engine, 'shim');
    t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls, c.errors]), [['openat', 5, 2]], kind);
  }
});

test('threads born and ending all the time: the engine starts all the same, every thread has the filter from then on, and the program runs to its end; killed, its end says by what', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'churn', ['4', '0']);
  await d.client.attach(f.pid, { mode: 'thread-pointer' });
  const rule = await d.client.addRule(f.pid, { syscalls: ['getppid'], retval: 42 });
  t.is(rule.engine, 'shim');
  const agent = await agentOf(d.client, f.pid);
  for (let i = 0; i < 20; i++) {
    // Every thread but the agent, born before or after the start.
    const without = [...taskStatus(f.pid, 'Seccomp_filters')].filter(([, n]) => n === 0).map(([tid]) => tid);
    t.deepEqual(without, [agent]);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Released (a thread just born is seized for a moment, to read its FS
  // base): its end comes through a pidfd (tlsd is not its parent).
  const lasting = [f.pid, ...f.out.all.flatMap((l) => l.match(/^creator (\d+)/)?.[1] ?? []).map(Number)];
  const traced = tracedThreads(f.pid);
  t.true(traced.includes(agent));
  t.deepEqual(lasting.filter((tid) => traced.includes(tid)), []);
  process.kill(f.pid, 'SIGTERM');
  t.is(await f.exited(), null);
  t.like((await processEnd(d.client, f.pid)).exit, { signal: 15 });
});

// Two moments: a thread parked on its frame, its call not made yet; and a
// thread whose call returned, the rt_sigreturn after it skipped by the
// tracer (the second of them: the injection's start is the first).
for (const [hook, when] of [['TLSD_TRACER_DIE_AT_ENGINE_CALL=4', 'before the 4th thread\'s call'], ['TLSD_TRACER_DIE_AFTER_SKIP=5', 'as a thread\'s call returns']] as const) {
  test(`the tracer SIGKILLed in the middle of starting the engine, ${when}: no thread is left stopped, the next tracer finishes the start, and every call is counted once`, async (t) => {
    const died = path.join(scratch(t), 'died');
    const [variable, at] = hook.split('=');
    const d = await startDaemon(t, [], { env: { [variable!]: `${at}:${died}` } });
    const { f, tids, go } = await waitingThreads(t, 'engine', 20, 50);
    await d.client.attach(f.pid, { mode: 'thread-pointer' });
    const rule = await d.client.addRule(f.pid, { syscalls: ['getppid'], retval: 42 });
    t.is(rule.engine, 'shim');
    t.true(existsSync(died), 'the tracer died during the start');
    await waitUntil('every thread but the agent to have the filter', () => filteredThreads(f.pid) === tids.length + 1);
    const agent = await agentOf(d.client, f.pid);
    await waitUntil('the next tracer to finish the start, and let go', () => tracedThreads(f.pid).join() === String(agent));
    go();
    t.is(await f.exited(), 0);
    await processEnd(d.client, f.pid);
    for (const tid of tids) t.true(f.out.all.includes(`${tid} got 42`), `thread ${tid}`);
    const stats = await d.client.syscallStats(f.pid);
    t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls]), [['getppid', 1000]]);
  });
}

test('a process whose own seccomp filter would kill it for seccomp(2): the engine is refused (403 SECCOMP_FORBIDS, named) and no thread is changed; by default the tracer takes the rule', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'inject-seccomp', ['seccomp'], [], /^ready$/);
  await d.client.attach(f.pid, { mode: 'thread-pointer' });
  const e = await t.throwsAsync(d.client.addRule(f.pid, { syscalls: ['getppid'], retval: 42, engine: 'shim' }));
  t.is((e as TlsdError).code, 'SECCOMP_FORBIDS', e?.message);
  t.regex(e!.message, /seccomp \(KILL_PROCESS\)/);
  t.deepEqual((await d.client.syscallStats(f.pid)).syscalls, []);
  t.is((await d.client.rules(f.pid)).length, 0, 'no rule');
  const rule = await d.client.addRule(f.pid, { syscalls: ['getppid'], retval: 42 });
  t.is(rule.engine, 'ptrace');
  t.is((await d.client.syscallStats(f.pid)).engine, 'ptrace');
  f.send('finish');
  t.is(await f.exited(), 0);
  t.deepEqual(f.out.all, ['ready', 'done']);
});

test('spawned with the shim and no rule (LD_PRELOAD loads it): the first rule starts the engine the same way', async (t) => {
  const d = await startDaemon(t);
  const dir = scratch(t);
  const go = path.join(dir, 'go'), stdout = path.join(dir, 'out');
  const p = await d.client.spawn({ argv: [fixturePath('engine'), 'threads', '5', '50', go], stdout, shim: { mode: 'tid' } });
  t.teardown(() => killPid(p.pid));
  t.like(await waitUntil('the shim', async () => (await d.client.shim(p.pid)).connected && d.client.shim(p.pid)), { loadedBy: 'preload' });
  const tids = await waitUntil('5 threads', () => {
    const found = [...readFileSync(stdout, 'utf8').matchAll(/^tid (\d+) fs/gm)].map((m) => Number(m[1]));
    return found.length === 5 ? found : undefined;
  });
  const rule = await d.client.addRule(p.pid, { syscalls: ['getppid'], retval: 42 });
  t.is(rule.engine, 'shim');
  t.deepEqual(tracedThreads(p.pid), [await agentOf(d.client, p.pid)]);
  writeFileSync(go, '');
  t.like((await processEnd(d.client, p.pid)).exit, { code: 0 });
  for (const tid of tids) t.regex(readFileSync(stdout, 'utf8'), new RegExp(`^${tid} got 42$`, 'm'));
  t.deepEqual((await d.client.syscallStats(p.pid)).syscalls.map((c) => [c.name, c.calls]), [['getppid', 250]]);
});
