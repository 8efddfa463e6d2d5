/* Attaching stops no thread of a glibc or musl program, and neither an
 * attach nor a detach makes a blocked call fail: the kernel makes
 * epoll_wait, sigtimedwait and semop fail with EINTR whenever their thread
 * is stopped, handler or not (signal(7)). gdb's attach and detach do
 * (the oracle that the fixture sees what it claims to). */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, taskStates, tracerPidOf, waitUntil } from './helpers/fixture.js';
import { blockedStackPointer } from '../daemon/procfs.js';
import { asPid, asTid } from '../daemon/types.js';

const run = promisify(execFile);
const kinds = ['glibc-dynamic', 'glibc-static', 'musl-dynamic', 'musl-static'];
const ROUNDS = 100;

async function eintrFixture(t: Parameters<typeof Fixture.start>[0], kind: string) {
  const f = await Fixture.start(t, path.join(kind, 'eintr'));
  const workers = f.out.all.flatMap((l) => l.match(/^worker \S+ (\d+)$/)?.[1] ?? []).map(Number);
  t.is(workers.length, 3);
  // Every worker in its call before anything is measured.
  await waitUntil('the workers to block', () => workers.every((tid) => blockedStackPointer(asPid(f.pid), asTid(tid)) !== undefined));
  /** The EINTRs the workers have seen so far, all together. */
  const count = async () => {
    const from = f.out.all.length;
    f.send('count');
    const m = await f.out.waitFor(/^eintr (\d+) (\d+) (\d+)$/, from);
    return m.slice(1).map(Number).reduce((a, b) => a + b, 0);
  };
  return { f, count };
}

for (const kind of kinds) {
  test(`${kind}: ${ROUNDS} attaches stop no thread and make no call fail; nor do the detaches`, async (t) => {
    const { f, count } = await eintrFixture(t, kind);
    const { client } = await startDaemon(t);
    for (let round = 0; round < ROUNDS; round++) {
      const p = await client.attach(f.pid);
      t.is(p.attach?.interrupted, 0, `round ${round}: no thread was stopped to read its thread pointer`);
      t.is(p.attach?.longestStopMicros, 0);
      t.false([...taskStates(f.pid).values()].includes('t'), `round ${round}: no thread is stopped`);
      t.is(await count(), 0, `round ${round}: no EINTR after the attach`);
      await client.detach(f.pid);
      t.is(await count(), 0, `round ${round}: no EINTR after the detach`);
    }

    // Supervised, a signal the program ignores still reaches the tracer
    // first; it must not wake the workers either.
    await client.attach(f.pid);
    for (let i = 0; i < 20; i++) {
      f.send('winch');
      await f.out.waitFor(/^sent$/, f.out.all.length);
    }
    t.is(await count(), 0, 'no EINTR from signals the program ignores');
    await client.detach(f.pid);

    // The oracle: gdb's attach and detach do make these calls fail.
    await run('gdb', ['-batch', '-nx', '-p', String(f.pid)]);
    await waitUntil('gdb to let go', () => tracerPidOf(f.pid) === 0);
    t.true(await count() > 0, 'gdb makes them fail: the fixture sees EINTR');
    f.send('quit');
    await new Promise((resolve) => f.child.once('exit', resolve));
  });
}
