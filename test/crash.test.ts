/* Tracees are sacred: whatever dies on our side, they run on, unstopped. */
import test, { type ExecutionContext } from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { commandFifo } from './helpers/fifo.js';
import { Fixture, fixturePath, noThreadInTracingStop, processEnded, tracerPidOf, waitUntil } from './helpers/fixture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the daemon killed with SIGKILL leaves every tracee running and unstopped', async (t) => {
  const attached = await Fixture.start(t, 'threads', ['50']);
  const { client, child, dir } = await startDaemon(t);
  const commands = commandFifo(t, dir);
  await client.attach(attached.pid);
  const spawned = await client.spawn({ argv: [fixturePath('threads'), '5'], env: { FIXTURE_COMMANDS: commands.path } });
  t.teardown(() => { try { process.kill(spawned.pid, 'SIGKILL'); } catch { /* gone */ } });
  const tracer = (await client.health()).tracerPid!;

  child.kill('SIGKILL');
  // The tracer reads EOF, detaches everything and exits.
  await waitUntil('the tracer to exit', () => processEnded(tracer));
  for (const pid of [attached.pid, spawned.pid]) {
    t.is(tracerPidOf(pid), 0, `${pid} is no longer traced`);
    t.true(noThreadInTracingStop(pid), `${pid} has no thread stopped`);
  }
  attached.send('spawn 1');
  await attached.out.waitFor(/^spawned 52$/);
  commands.send('quit 0');
  await waitUntil('the spawned process to act on a command', () => processEnded(spawned.pid));
  t.pass();
});

/* The daemon dies, again and again, while a process churns threads (the
 * tracer always has events to send) and another sits idle: after each
 * death the tracer detaches both and exits. `stoppedMs`: the daemon is
 * stopped that long first, so that the tracer's events pile up unread and
 * its writes fail when the daemon dies (this once left the tracer
 * spinning, its tracees stopped, for minutes). Otherwise it dies in the
 * middle of an attach to a third process, at a different moment in each
 * round. */
async function killDaemonRepeatedly(t: ExecutionContext, stoppedMs: number): Promise<void> {
  const churner = await Fixture.start(t, 'churn', ['4']);
  const idle = await Fixture.start(t, 'threads', ['20']);
  const big = stoppedMs ? undefined : await Fixture.start(t, 'threads', ['500']);
  const exits: number[] = [];
  for (let round = 0; round < 20; round++) {
    const { client, child } = await startDaemon(t);
    await client.attach(churner.pid);
    await client.attach(idle.pid);
    const tracer = (await client.health()).tracerPid!;
    if (stoppedMs) {
      child.kill('SIGSTOP');
      await sleep(stoppedMs);
    } else {
      client.attach(big!.pid).catch(() => undefined); // its answer never comes
      await sleep(round);
    }
    const killedAt = performance.now();
    child.kill('SIGKILL');
    await waitUntil(`round ${round}: the tracer to exit`, () => processEnded(tracer), 10000);
    exits.push(performance.now() - killedAt);
    for (const f of [churner, idle, ...(big ? [big] : [])]) {
      t.is(tracerPidOf(f.pid), 0, `round ${round}: ${f.pid} is no longer traced`);
      await waitUntil(`round ${round}: every thread of ${f.pid} to run`, () => noThreadInTracingStop(f.pid));
    }
  }
  t.log(`tracer gone after the daemon's death: at most ${Math.max(...exits).toFixed(0)} ms`);
  churner.send('quit');
  const code = await new Promise((resolve) => churner.child.once('exit', resolve));
  t.is(code, 0, 'the churner ran on to its normal end');
  idle.send('spawn 1');
  await idle.out.waitFor(/^spawned 22$/);
}

test('the daemon SIGKILLed 20 times, during an attach: the tracer lets go every time', (t) => killDaemonRepeatedly(t, 0));
test('the daemon SIGKILLed 20 times while its tracer writes to it: the tracer lets go every time', (t) => killDaemonRepeatedly(t, 200));
test('the daemon SIGKILLed 20 times after a SIGSTOP: the tracer lets go every time', (t) => killDaemonRepeatedly(t, 1000));

test('the tracer killed: tracees run on, and the daemon restarts it and re-attaches', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['20']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  const before = await client.threads(fixture.pid);
  const oldTracer = (await client.health()).tracerPid!;

  process.kill(oldTracer, 'SIGKILL');
  // The gap closes when the new tracer has re-attached.
  const p = await waitUntil('the re-attach', async () => {
    const q = await client.process(fixture.pid);
    return q.gaps[0]?.to ? q : undefined;
  });
  const health = await client.health();
  t.is(health.tracerRestarts, 1);
  t.not(health.tracerPid, oldTracer);
  t.is(tracerPidOf(fixture.pid), health.tracerPid!, 'the new tracer traces it');
  t.true(noThreadInTracingStop(fixture.pid));
  t.is(p.state, 'running');
  t.is(p.gaps.length, 1, 'the gap is recorded');
  const after = await client.threads(fixture.pid);
  t.deepEqual(after.map((th) => [th.tid, th.fsBase]).sort(), before.map((th) => [th.tid, th.fsBase]).sort());

  // Still followed: a thread born now is seen.
  fixture.send('spawn 1');
  await fixture.out.waitFor(/^spawned 22$/);
  const born = fixture.out.threads().find((r) => r.index === 21)!;
  const th = await waitUntil('the new thread', async () => (await client.threads(fixture.pid)).find((x) => x.tid === born.tid));
  t.is(th.fsBaseSource, 'clone');
  await client.detach(fixture.pid);
});
