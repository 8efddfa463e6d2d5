/* Tracees that misbehave (crash, fork in bursts, vfork and exec) are
 * followed to the end, and the daemon stays up. */
import { realpathSync } from 'node:fs';
import test from 'ava';
import { processEnd, startDaemon } from './helpers/daemon.js';
import { Fixture, waitUntil } from './helpers/fixture.js';

test('a tracee that segfaults: every thread ends by the signal, the daemon lives on', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['3']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  fixture.send('segv');
  const p = await processEnd(client, fixture.pid);
  t.is(p.exit?.signal, 11);
  const exits = await client.exits(fixture.pid);
  t.is(exits.length, 5);
  t.true(exits.every((x) => x.how === 'signal' && x.signal === 11), JSON.stringify(exits));
  t.is((await client.health()).status, 'ok');
});

test('a burst of forks: every child is supervised and its end recorded', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['1']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  fixture.send('forks 100');
  await fixture.out.waitFor(/^forked 100$/);
  const children = await waitUntil('100 ended children', async () => {
    const all = (await client.processes()).filter((p) => p.parentPid === fixture.pid);
    return all.length === 100 && all.every((p) => p.state === 'exited') ? all : undefined;
  });
  t.true(children.every((p) => p.origin === 'forked' && p.exit?.code === 7));
  t.is((await client.process(fixture.pid)).state, 'running');
  await client.detach(fixture.pid);
});

test('system(3): a vforked child that execs and exits is followed', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['1']);
  const { client } = await startDaemon(t);
  await client.attach(fixture.pid);
  fixture.send('system exit 3');
  await fixture.out.waitFor(/^system 768$/); // exit status 3, as wait(2) encodes it
  const child = await waitUntil('the shell', async () => {
    const c = (await client.processes()).find((p) => p.parentPid === fixture.pid);
    return c?.state === 'exited' ? c : undefined;
  });
  t.is(child.exit?.code, 3);
  t.is(child.exe, realpathSync('/bin/sh'));
  t.deepEqual(child.argv, ['sh', '-c', 'exit 3']);
  t.true((await client.exits(child.pid)).some((x) => x.how === 'exec'), 'the exec ended the vforked image');
  await client.detach(fixture.pid);
});
