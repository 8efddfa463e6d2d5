/* Following a process through its life: spawn, threads ending each way,
 * exec from a non-leader thread, the leader leaving first, fork, signals. */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { processEnd, startDaemon } from './helpers/daemon.js';
import { commandFifo } from './helpers/fifo.js';
import { Fixture, fixturePath, Lines, noThreadInTracingStop, tracerPidOf, waitUntil } from './helpers/fixture.js';
import { tlsctl } from './helpers/tlsctl.js';
import { statFields } from '../daemon/procfs.js';

/** The stdout of a spawned process, re-read from its file. */
function outputOf(file: string): Lines {
  const lines = new Lines();
  lines.add(readFileSync(file, 'utf8'));
  return lines;
}

async function waitForOutput(file: string, re: RegExp): Promise<Lines> {
  return waitUntil(`${re} in ${file}`, () => {
    const lines = outputOf(file);
    return lines.all.some((l) => re.test(l)) ? lines : undefined;
  });
}

test('spawn: threads ending with exit(code), then the process with exit_group(code)', async (t) => {
  const { client, dir } = await startDaemon(t);
  const commands = commandFifo(t, dir);
  const p = await client.spawn({
    argv: [fixturePath('threads'), '3'],
    env: { FIXTURE_COMMANDS: commands.path, PATH: '/usr/bin:/bin' },
    cwd: dir,
  });
  t.teardown(() => { try { process.kill(p.pid, 'SIGKILL'); } catch { /* exited */ } });
  t.is(p.origin, 'spawned');
  t.is(p.exe, fixturePath('threads'));
  t.truthy(p.stdout);

  const out = await waitForOutput(p.stdout!, /^ready /);
  const byIndex = (i: number) => out.threads().find((r) => r.index === i);
  const [one, two, three] = [byIndex(1), byIndex(2), byIndex(3)];
  const threads = await client.threads(p.pid);
  t.is(threads.length, 5);
  for (const r of out.threads()) t.is(threads.find((th) => th.tid === r.tid)?.fsBase, r.fsBase);

  commands.send('exit 1 5');
  commands.send('exit 2 7');
  await waitUntil('two exits', async () => (await client.exits(p.pid)).length === 2);
  commands.send('quit 3');
  const ended = await processEnd(client, p.pid);
  t.is(ended.exit?.code, 3);

  const exits = await client.exits(p.pid);
  const byTid = new Map(exits.map((x) => [x.tid, x]));
  t.like(byTid.get(one!.tid), { how: 'exit', code: 5, leader: false });
  t.like(byTid.get(two!.tid), { how: 'exit', code: 7, leader: false });
  t.like(byTid.get(three!.tid), { how: 'exit_group', code: 3 });
  t.like(byTid.get(p.pid), { how: 'exit_group', code: 3, leader: true });
  t.is(exits.length, 5, 'every thread it ever had has an entry');
});

test('spawn of a missing program or into a missing directory is refused', async (t) => {
  const { client, dir } = await startDaemon(t);
  await t.throwsAsync(client.spawn({ argv: ['/nonexistent/program'] }), { message: /^INVALID_ARGUMENT: executable not found/ });
  await t.throwsAsync(client.spawn({ argv: ['true'], cwd: `${dir}/missing` }), { message: /^INVALID_ARGUMENT: cwd/ });
  t.deepEqual(await client.processes(), []);
});

test('exec from a non-leader thread: the old threads end by exec, the caller takes the leader tid', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['2']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  const before = (await client.threads(fixture.pid)).map((th) => th.tid);
  const caller = fixture.out.threads().find((r) => r.index === 2)!;

  fixture.send('exec 2');
  await fixture.out.waitFor(/^ready /, 4); // the new image says ready again
  const exits = await waitUntil('the exec in the ledger', async () => {
    const x = await client.exits(fixture.pid);
    return x.length === before.length ? x : undefined;
  });
  t.true(exits.every((x) => x.how === 'exec'));
  t.deepEqual(exits.map((x) => x.tid).sort(), [...before].sort());

  const after = await client.threads(fixture.pid);
  const leader = after.find((th) => th.tid === fixture.pid);
  t.is(leader?.parentTid, caller.tid, 'the new leader is the thread that called exec');
  const newMain = fixture.out.threads().filter((r) => r.index === 0).at(-1)!;
  t.is(leader?.fsBase, newMain.fsBase, 'its FS base is the new image\'s');
  t.is((await client.process(fixture.pid)).state, 'running');
  await client.detach(fixture.pid);
  t.true(noThreadInTracingStop(fixture.pid));
});

test('the leader exits first and the other threads live on', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['2']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  fixture.send('exit 0 0');
  const [leaderExit] = await waitUntil('the leader exit', async () => {
    const x = await client.exits(fixture.pid);
    return x.length ? x : undefined;
  });
  t.like(leaderExit, { tid: fixture.pid, leader: true, how: 'exit', code: 0 });
  t.is((await client.process(fixture.pid)).state, 'running');
  t.false((await client.threads(fixture.pid)).some((th) => th.tid === fixture.pid));

  fixture.send('spawn 1');
  await fixture.out.waitFor(/^spawned 4$/);
  const born = fixture.out.threads().find((r) => r.index === 3)!;
  const th = await waitUntil('the new thread', async () => (await client.threads(fixture.pid)).find((x) => x.tid === born.tid));
  t.is(th.fsBase, born.fsBase);
  t.is(th.fsBaseSource, 'clone');

  fixture.send('quit 4');
  const ended = await processEnd(client, fixture.pid);
  t.is(ended.exit?.code, 4);
  t.is((await client.exits(fixture.pid)).filter((x) => x.tid === fixture.pid).length, 1, 'the leader is in the ledger once');
});

test('a forked child is supervised too', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['1']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  const reported = new Set(fixture.out.threads().map((r) => r.tid));
  const control = (await client.threads(fixture.pid)).find((th) => !reported.has(th.tid))!;

  fixture.send('fork');
  const childPid = Number((await fixture.out.waitFor(/^child (\d+)/))[1]);
  fixture.owns(childPid);
  const child = await waitUntil('the child in the registry', async () => (await client.processes()).find((p) => p.pid === childPid));
  t.is(child.origin, 'forked');
  t.is(child.parentPid, fixture.pid);
  const [childThread] = await client.threads(childPid);
  t.is(childThread?.fsBase, control.fsBase, 'fork copies the forking thread\'s thread pointer');

  await client.detach(childPid);
  await client.detach(fixture.pid);
  t.true(noThreadInTracingStop(childPid));
});

/* As nginx's master forks workers that rename themselves. */
test('children forked while attached show the names they give themselves, and a detach takes them along', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['1']);
  const { client, socket } = await startDaemon(t);
  await client.attach(fixture.pid);
  const family = async (title: string) => {
    const from = fixture.out.all.length;
    fixture.send(`forkas ${title}`);
    const [, child, grandchild] = (await fixture.out.waitFor(/^family (\d+) (\d+)$/, from)).map(Number);
    fixture.owns(child!);
    fixture.owns(grandchild!);
    return [child!, grandchild!];
  };
  const [worker, helper] = await family('nginx: worker process');
  const named = async (pid: number, argv: string[]) => waitUntil(`${pid} to be named ${argv.join(' ')}`, async () => {
    const p = await client.process(pid).catch(() => undefined);
    return p && JSON.stringify(p.argv) === JSON.stringify(argv) ? p : undefined;
  });
  t.like(await named(worker!, ['nginx: worker process']), { origin: 'forked', parentPid: fixture.pid, state: 'running' });
  t.like(await named(helper!, ['nginx: worker process child']), { origin: 'forked', parentPid: worker });
  t.regex((await tlsctl(socket, 'ps')).stdout, /nginx: worker process child/);

  const detached = await client.detach(fixture.pid);
  t.deepEqual(detached.detachedDescendants.sort(), [worker, helper].sort());
  for (const pid of [fixture.pid, worker!, helper!]) {
    t.is(tracerPidOf(pid), 0, `${pid} is no longer traced`);
    t.true(noThreadInTracingStop(pid));
    t.is((await client.process(pid)).state, 'detached');
  }
  t.regex((await tlsctl(socket, 'detach', String(fixture.pid))).stderr, /GONE/);

  // Kept: the children stay supervised until they are detached themselves.
  await client.attach(fixture.pid);
  const [kept, keptChild] = await family('postgres: checkpointer');
  await named(keptChild!, ['postgres: checkpointer child']);
  t.deepEqual((await client.detach(fixture.pid, { keepChildren: true })).detachedDescendants, []);
  t.is(tracerPidOf(kept!), (await client.health()).tracerPid!, 'a kept child is still traced');
  const out = await tlsctl(socket, 'detach', String(kept));
  t.is(out.stdout, `detached from ${kept} and its child ${keptChild}; they run on\n`);
  t.is(tracerPidOf(keptChild!), 0);
});

test('every signal sent to a tracee arrives', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['4']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  const tid = fixture.out.threads()[2]!.tid;
  const count = 200;
  for (let i = 1; i <= count; i++) {
    process.kill(fixture.pid, 'SIGUSR1');
    if (i % 10 === 0) await client.thread(fixture.pid, tid); // interrupts race the signals
    await fixture.out.waitFor(new RegExp(`^usr1 ${i}$`), 0, 5000);
  }
  t.true(fixture.out.all.includes(`usr1 ${count}`));
  await client.detach(fixture.pid);
});

test('a spawned process runs at the priority the daemon has, not the tracer\'s', async (t) => {
  const { client, child } = await startDaemon(t);
  const p = await client.spawn({ argv: ['sleep', '60'] });
  t.teardown(() => { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } });
  const nice = (pid: number) => Number(statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[19 - 1]);
  t.is(nice(p.pid), nice(child.pid!));
  const tracer = (await client.health()).tracerPid!;
  t.true(nice(tracer) < nice(child.pid!), 'the tracer itself runs ahead of its tracees');
});
