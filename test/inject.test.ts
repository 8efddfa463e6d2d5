/* Injecting the shim into running processes (native/tracer/inject.c):
 * every binary kind, threads in hostile states, refusals that change
 * nothing. Each target's output is known by construction and compared
 * with what it prints without tlsd. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { TlsdError } from '../clients/client.js';
import { processEnd, startDaemon, type TestDaemon } from './helpers/daemon.js';
import { commandFifo } from './helpers/fifo.js';
import { Fixture, fixturePath, taskStates, waitUntil } from './helpers/fixture.js';

const cKinds = ['glibc-dynamic', 'glibc-static', 'glibc-static-pie', 'musl-dynamic', 'musl-static'];
const otherKinds = ['go-static', 'go-cgo', 'rust'];

/** What a target prints when run alone with these commands. */
function alone(name: string, input: string): string {
  return execFileSync(fixturePath(name), { input, encoding: 'utf8' });
}

function mappings(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => /tlsshim/.test(l));
}

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: TlsdError['code']): Promise<TlsdError> {
  const e = await t.throwsAsync(p);
  t.true(e instanceof TlsdError, String(e));
  t.is((e as TlsdError).code, code, e?.message);
  return e as TlsdError;
}

/** Attaches with the shim; its view says it was injected and is connected. */
async function attachWithShim(t: ExecutionContext, d: TestDaemon, pid: number, mode: 'tid' | 'thread-pointer') {
  await d.client.attach(pid, { mode });
  const shim = await d.client.shim(pid);
  t.like(shim, { loaded: true, loadedBy: 'injected', connected: true, mode });
  t.is(mappings(pid).filter((l) => /\/memfd:tlsshim /.test(l)).length > 0, true);
  t.deepEqual(mappings(pid).filter((l) => /tlsshim-stub/.test(l)), [], 'the stub page is gone');
  return shim;
}

for (const kind of cKinds) {
  test(`${kind}: the shim injected into a running program works from its threads, and the program runs on as it would`, async (t) => {
    const d = await startDaemon(t);
    const f = await Fixture.start(t, `${kind}/inject-target`, [], [], /^ready$/);
    const shim = await attachWithShim(t, d, f.pid, 'thread-pointer');
    t.is(shim.slotsInUse, 0);
    f.send('useshim');
    await f.out.waitFor(/^shim used$/);
    // Thread i (0 = main) stored 7*i+1 in the variable "answer".
    const values = [];
    for (const th of await d.client.threads(f.pid)) {
      const s = await d.client.threadShim(f.pid, th.tid);
      const v = s.variables.find((x) => x.name === 'answer');
      if (s.slot && v) values.push(Buffer.from(v.bytes, 'hex').readBigUInt64LE());
    }
    t.deepEqual(values.sort((a, b) => Number(a - b)), [1n, 8n, 15n, 22n, 29n]);
    f.send('finish');
    t.is(await f.exited(), 0);
    t.deepEqual(f.out.all, ['ready', 'shim used', 'done 4']);
    t.is(alone(`${kind}/inject-target`, 'useshim\nfinish\n'), 'ready\nno shim\ndone 4\n');
    // Its five threads ended holding a slot, which the tracer freed, as
    // for a shim loaded by LD_PRELOAD; the agent never held one.
    await processEnd(d.client, f.pid);
    const fates = (await d.client.exits(f.pid)).map((x) => x.shim);
    t.is(fates.filter((x) => x === 'reclaimed').length, 5, JSON.stringify(fates));
  });
}

for (const kind of otherKinds) {
  test(`${kind}: the shim injected into a running program says hello, and the program's output is what it is alone`, async (t) => {
    const d = await startDaemon(t);
    const f = await Fixture.start(t, `${kind}/inject-target`, [], [], /^ready$/);
    const shim = await attachWithShim(t, d, f.pid, 'tid');
    t.is(shim.slotCount, 4096);
    f.send('finish');
    t.is(await f.exited(), 0);
    t.deepEqual(f.out.all, ['ready', 'done 4']);
    t.is(alone(`${kind}/inject-target`, 'finish\n'), 'ready\ndone 4\n');
  });
}

test('threads in hostile states see nothing of an injection: a read, a sleep, a condition wait, live ymm registers, real-time signals on an alternate stack', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'inject-hostile', ['3'], [], /^ready$/);
  const started = Date.now();
  const shim = await attachWithShim(t, d, f.pid, 'tid');
  // The thread borrowed is the one whose ymm registers are checked
  // across its read (the first thread asleep in a restartable call).
  t.is(shim.injection?.borrowedTid, f.pid);
  t.is(shim.injection?.threadsStopped, 1);
  await new Promise((r) => setTimeout(r, Math.max(0, 3200 - (Date.now() - started))));
  f.send('finish');
  t.is(await f.exited(), 0, f.out.all.join('\n'));
  t.deepEqual(f.out.all, [
    'ready', 'main kept its ymm registers across its read', 'reader got data', 'sleeper slept full', 'waiter woke', 'vector kept', 'signals all received',
  ]);
});

test('a second injection is 409 SHIM_LOADED, and so is one into a process whose shim an LD_PRELOAD loaded', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'glibc-dynamic/inject-target', [], [], /^ready$/);
  await attachWithShim(t, d, f.pid, 'tid');
  const before = mappings(f.pid);
  await rejects(t, d.client.injectShim(f.pid, { mode: 'tid' }), 'SHIM_LOADED');
  t.deepEqual(mappings(f.pid), before);
  f.send('finish');
  t.is(await f.exited(), 0);

  const fifo = commandFifo(t, d.dir);
  const spawned = await d.client.spawn({ argv: ['sh', '-c', `exec ${fixturePath('glibc-dynamic/inject-target')} < ${fifo.path}`], shim: { mode: 'tid' } });
  await waitUntil('the preloaded shim', () => d.client.shim(spawned.pid).then((s) => s.loaded && s));
  t.like(await d.client.shim(spawned.pid), { loadedBy: 'preload' });
  await rejects(t, d.client.injectShim(spawned.pid, { mode: 'tid' }), 'SHIM_LOADED');
  fifo.send('finish');
});

test('a static program spawned with a shim gets it injected before its first instruction', async (t) => {
  const d = await startDaemon(t);
  for (const kind of ['glibc-static', 'musl-static', 'go-static']) {
    const fifo = commandFifo(t, d.dir);
    const stdout = `${d.dir}/${kind}.out`;
    const p = await d.client.spawn({ argv: [fixturePath(`${kind}/inject-target`), fifo.path], stdout, shim: { mode: 'thread-pointer' } });
    const shim = await waitUntil('its shim', () => d.client.shim(p.pid).then((s) => s.loaded && s));
    t.like(shim, { loadedBy: 'injected', mode: 'thread-pointer' }, kind);
    if (kind !== 'go-static') fifo.send('useshim');
    fifo.send('finish');
    await waitUntil(`${kind} to end`, () => d.client.process(p.pid).then((q) => q.state === 'exited' && q));
    t.is(readFileSync(stdout, 'utf8'), kind === 'go-static' ? 'ready\ndone 4\n' : 'ready\nshim used\ndone 4\n', kind);
  }
});

test('a process stopped with SIGSTOP is refused (409 PROCESS_STOPPED) and stays stopped; after SIGCONT the injection works', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'glibc-dynamic/inject-target', [], [], /^ready$/);
  await d.client.attach(f.pid);
  process.kill(f.pid, 'SIGSTOP');
  await waitUntil('the group-stop', () => [...taskStates(f.pid).values()].every((s) => s === 't' || s === 'T'));
  const e = await rejects(t, d.client.injectShim(f.pid, { mode: 'tid' }), 'PROCESS_STOPPED');
  t.regex(e.message, /SIGCONT/);
  t.deepEqual(mappings(f.pid), []);
  await new Promise((r) => setTimeout(r, 200));
  t.true([...taskStates(f.pid).values()].every((s) => s === 't' || s === 'T'), 'still stopped');
  process.kill(f.pid, 'SIGCONT');
  await waitUntil('it to run', () => [...taskStates(f.pid).values()].every((s) => s === 'S' || s === 'R'));
  t.like(await d.client.injectShim(f.pid, { mode: 'tid' }), { loaded: true, loadedBy: 'injected' });
  f.send('finish');
  t.is(await f.exited(), 0);
});

test('a process whose seccomp filter would kill it for memfd_create is refused (403 SECCOMP_FORBIDS, named), and runs on unchanged', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'inject-seccomp', [], [], /^ready$/);
  const maps = readFileSync(`/proc/${f.pid}/maps`, 'utf8');
  const e = await rejects(t, d.client.attach(f.pid, { mode: 'tid' }), 'SECCOMP_FORBIDS');
  t.regex(e.message, /memfd_create \(KILL_PROCESS\)/);
  t.is(readFileSync(`/proc/${f.pid}/maps`, 'utf8'), maps);
  t.is((await d.client.process(f.pid)).state, 'detached', 'detached again');
  f.send('finish');
  t.is(await f.exited(), 0);
  t.deepEqual(f.out.all, ['ready', 'done']);
});

test('a process under PR_SET_MDWE (MemoryDenyWriteExecute) takes the shim: nothing is made executable after it was mapped', async (t) => {
  const d = await startDaemon(t);
  const f = await Fixture.start(t, 'inject-mdwe', [], [], /^ready$/);
  await attachWithShim(t, d, f.pid, 'thread-pointer');
  f.send('finish');
  t.is(await f.exited(), 0);
  t.deepEqual(f.out.all, ['ready', 'done']);
});

