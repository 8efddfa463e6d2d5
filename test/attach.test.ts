/* Attach to running processes: every thread, its FS base right, nothing
 * left stopped, nothing stolen from another tracer. */
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { gdbPerThread } from './helpers/gdb.js';
import { Fixture, noThreadInTracingStop, taskStates, tracerPidOf, waitUntil } from './helpers/fixture.js';


test('attach to a 120-thread process: every FS base is what the thread itself and gdb say', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['120']);
  const reports = fixture.out.threads();
  t.is(reports.length, 121);
  const byGdb = await gdbPerThread(fixture.pid, 'p/x $fs_base', /^0x[0-9a-f]+$/);
  await waitUntil('gdb to detach', () => tracerPidOf(fixture.pid) === 0);

  const { client } = await startDaemon(t);
  const p = await client.attach(fixture.pid);
  t.is(p.state, 'running');
  t.is(p.origin, 'attached');
  t.is(p.libc, 'glibc');
  t.is(p.linkage, 'dynamic');
  t.is(p.threads, 122); // main, 120 workers, the control thread

  const threads = new Map((await client.threads(fixture.pid)).map((th) => [th.tid, th]));
  for (const r of reports) {
    const th = threads.get(r.tid);
    t.truthy(th, `thread ${r.index} (tid ${r.tid}) is listed`);
    t.is(th?.fsBase, r.fsBase, `thread ${r.index}: FS base as it reported it`);
    t.is(th?.fsBase, byGdb.get(r.tid), `thread ${r.index}: FS base as gdb reads it`);
    t.is(th?.fsBaseSource, 'attach');
  }
  t.deepEqual([...threads.keys()].sort(), [...taskStates(fixture.pid).keys()].sort());

  const one = reports[7]!;
  const detail = await client.thread(fixture.pid, one.tid);
  t.is(detail.tcb?.self, one.fsBase, 'the TCB self pointer names the thread pointer');
  t.regex(detail.tcb?.dtv ?? '', /^0x[0-9a-f]+$/);

  t.true(noThreadInTracingStop(fixture.pid), 'no thread is left stopped');
  await client.detach(fixture.pid);
  t.is(tracerPidOf(fixture.pid), 0);
  fixture.send('spawn 1');
  await fixture.out.waitFor(/^spawned 122$/);
});

test('attach while threads are born and die all the time', async (t) => {
  const fixture = await Fixture.start(t, 'churn', ['8']);
  const { client } = await startDaemon(t);
  const p = await client.attach(fixture.pid);
  t.true(p.threads >= 9, `at least main and 8 creators, got ${p.threads}`);
  const exits = await waitUntil('threads to exit under tlsd', async () => {
    const x = await client.exits(fixture.pid);
    return x.length >= 100 ? x : undefined;
  });
  t.true(exits.every((x) => x.how === 'exit' && x.code === 0 && !x.leader));
  // Every thread that lives now is known (threads born after the attach too).
  const listed = new Set((await client.threads(fixture.pid)).map((th) => th.tid));
  const creators = fixture.out.all.flatMap((l) => l.match(/^creator (\d+)$/)?.[1] ?? []).map(Number);
  t.is(creators.length, 8);
  for (const tid of [fixture.pid, ...creators]) t.true(listed.has(tid), `thread ${tid} is listed`);

  // A detach meets children whose parents' clone events are still queued,
  // some of them already dead: each round must let go of every thread.
  for (let round = 0; round < 5; round++) {
    if (round > 0) await client.attach(fixture.pid);
    await client.detach(fixture.pid);
    t.is(tracerPidOf(fixture.pid), 0, `round ${round}: detached`);
    await waitUntil('every thread to run again', () => noThreadInTracingStop(fixture.pid));
  }
});

test('a process stopped before the attach stays stopped, and SIGCONT resumes it', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['3']);
  process.kill(fixture.pid, 'SIGSTOP');
  await waitUntil('the group-stop', () => [...taskStates(fixture.pid).values()].every((s) => s === 'T'));

  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  await new Promise((r) => setTimeout(r, 200));
  fixture.send('spawn 1');
  await new Promise((r) => setTimeout(r, 200));
  t.false(fixture.out.all.some((l) => l.startsWith('spawned')), 'it did not run while stopped');
  t.true([...taskStates(fixture.pid).values()].every((s) => s === 't' || s === 'T'));

  process.kill(fixture.pid, 'SIGCONT');
  await fixture.out.waitFor(/^spawned 5$/);
  await client.detach(fixture.pid);
  t.true(noThreadInTracingStop(fixture.pid));
});

test('a process stopped when detached stays stopped', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['2']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  process.kill(fixture.pid, 'SIGSTOP');
  await waitUntil('the group-stop', () => [...taskStates(fixture.pid).values()].every((s) => s === 't'));
  await client.detach(fixture.pid);
  await waitUntil('stopped, untraced', () => [...taskStates(fixture.pid).values()].every((s) => s === 'T'));
  process.kill(fixture.pid, 'SIGCONT');
  fixture.send('spawn 1');
  await fixture.out.waitFor(/^spawned 4$/);
  t.is(tracerPidOf(fixture.pid), 0);
});

test('a process traced by another tracer is refused, naming that tracer', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['1'], ['strace', '-f', '-o', '/dev/null']);
  const { client } = await startDaemon(t);
  const tracer = tracerPidOf(fixture.pid);
  t.true(tracer > 0);
  const err = await t.throwsAsync(client.attach(fixture.pid));
  t.regex(err!.message, new RegExp(`^ALREADY_TRACED: .*traced by pid ${tracer}`));
});

test('a process already supervised is refused', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['1']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  const err = await t.throwsAsync(client.attach(fixture.pid));
  t.regex(err!.message, /^ALREADY_TRACED: .*already supervised/);
  await client.detach(fixture.pid);
});

/* A process that is never without a thread being born or dying: its main
 * thread creates and joins threads one at a time, or 100 at a time. Each
 * attach answers while it runs (once one waited for a stop that a clone
 * event had consumed, until the process ended), and the process runs on
 * to its normal end. */
for (const [what, burst] of [['one at a time', '1'], ['in bursts of 100', '100']] as const) {
  test(`attach to a process that creates and joins threads ${what}, 20 times`, async (t) => {
    const fixture = await Fixture.start(t, 'churn', ['0', '0', burst]);
    const { client } = await startDaemon(t);
    const took: number[] = [];
    for (let round = 0; round < 20; round++) {
      const started = performance.now();
      const p = await client.attach(fixture.pid);
      took.push(performance.now() - started);
      t.is(p.state, 'running', `round ${round}`);
      t.true(p.threads >= 1, `round ${round}: its threads are listed`);
      await client.detach(fixture.pid);
      t.is(tracerPidOf(fixture.pid), 0, `round ${round}: detached`);
    }
    t.log(`attach answered in at most ${Math.max(...took).toFixed(0)} ms`);
    fixture.send('quit');
    const code = await new Promise((resolve) => fixture.child.once('exit', resolve));
    t.is(code, 0, 'it ran on to its normal end');
  });
}

/* A program with a single thread, blocked in a read: on glibc its TCB is
 * on glibc's list; on musl there is no other thread's stack to start from,
 * and its TCB is found in its writable memory. */
for (const kind of ['glibc-dynamic', 'glibc-static', 'glibc-static-pie', 'musl-dynamic', 'musl-static']) {
  test(`${kind}: a one-thread program is attached without a stop, and its thread pointer is right`, async (t) => {
    const fixture = await Fixture.start(t, `${kind}/tls`, ['0']);
    const byGdb = await gdbPerThread(fixture.pid, 'p/x $fs_base', /^0x[0-9a-f]+$/);
    await waitUntil('gdb to detach', () => tracerPidOf(fixture.pid) === 0);
    const { client } = await startDaemon(t);
    const p = await client.attach(fixture.pid);
    t.is(p.attach?.interrupted, 0);
    t.is((await client.threads(fixture.pid))[0]?.fsBase, byGdb.get(fixture.pid), 'the FS base gdb reads');
    const { values } = await client.readTls(fixture.pid, 'tls_exe');
    t.like(values, [{ tid: fixture.pid, state: 'ok', value: 1 }]);
    await client.detach(fixture.pid);
  });
}
