/* Tracees are sacred: whatever dies on our side, they run on, unstopped. */
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { commandFifo } from './helpers/fifo.js';
import { Fixture, fixturePath, noThreadInTracingStop, tracerPidOf, waitUntil } from './helpers/fixture.js';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

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
  await waitUntil('the tracer to exit', () => !processAlive(tracer));
  for (const pid of [attached.pid, spawned.pid]) {
    t.is(tracerPidOf(pid), 0, `${pid} is no longer traced`);
    t.true(noThreadInTracingStop(pid), `${pid} has no thread stopped`);
  }
  attached.send('spawn 1');
  await attached.out.waitFor(/^spawned 52$/);
  commands.send('quit 0');
  await waitUntil('the spawned process to act on a command', () => !processAlive(spawned.pid));
  t.pass();
});

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
