/* A fork in a process with the shim: the child's memory is a copy of the
 * parent's, table included, but only the forking thread lives on in it.
 * tlsd fixes the child's table at its first stop: the forking thread's
 * slot survives, re-keyed for the child, and every other slot is freed.
 * The fixture (test/fixtures/shim/shim-fork.c) forks while a raw thread
 * holds a slot, and the child runs a raw thread on that thread's pointer. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { commandFifo } from './helpers/fifo.js';
import { Fixture, fixturePath, killPid, waitUntil } from './helpers/fixture.js';

/** "child PID MAIN RAW": what the child's main thread and its raw thread saw. */
const childReport = (text: string) => {
  const m = /^child (\d+) (-?\d+) (-?\d+)$/m.exec(text);
  return m ? { pid: Number(m[1]), main: Number(m[2]), raw: Number(m[3]) } : undefined;
};

for (const [mode, hazard] of [['thread-pointer', { main: 1, raw: 8 }], ['tid', { main: 0, raw: 0 }]] as const) {
  test(`without tlsd, ${mode}: the child's table is the parent's copy (the hazard)`, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-fork-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const go = commandFifo(t, dir);
    const f = await Fixture.start(t, path.join('glibc-dynamic', 'shim-fork'), [go.path, ...(mode === 'tid' ? ['tid'] : [])]);
    go.send('go');
    await f.out.waitFor(/^child /);
    const child = childReport(f.out.all.join('\n'))!;
    t.teardown(() => killPid(child.pid));
    t.like(child, hazard, mode === 'tid' ? 'the child\'s slot has its parent\'s tid' : 'the child\'s raw thread found the parent\'s raw thread\'s slot');
  });
}

// `clone`: a raw clone without CLONE_VM, which the kernel reports as a
// clone, not a fork; its child has a copy of the table all the same.
for (const libc of ['glibc', 'musl']) {
  for (const mode of ['thread-pointer', 'tid'] as const) {
    for (const how of ['fork', 'clone']) {
      test(`under tlsd, ${libc}, ${mode}, ${how}: the child keeps the forking thread's slot, re-keyed, and nothing else`, async (t) => {
        const { client, dir } = await startDaemon(t);
        const go = commandFifo(t, dir);
        const argv = [fixturePath(path.join(`${libc}-dynamic`, 'shim-fork')), go.path, ...(how === 'clone' ? ['clone'] : [])];
        const p = await client.spawn({ argv, shim: { mode } });
        t.teardown(() => killPid(p.pid));
        await waitUntil('the tracer to have the shim\'s table', async () => (await client.shim(p.pid)).reclaiming);
        go.send('go');
        const child = await waitUntil('the child\'s report', () => childReport(readFileSync(p.stdout!, 'utf8')));
        t.teardown(() => killPid(child.pid));
        t.deepEqual({ main: child.main, raw: child.raw }, { main: 1, raw: 0 });

        // Only the forking thread's slot is left in the child (the raw
        // thread's was freed at its exit), under the child's own key.
        // The child may report before the tracer's batch of events reaches the daemon.
        const shim = await waitUntil('the daemon to know the child', () => client.shim(child.pid).catch(() => undefined));
        t.like(shim, { loaded: true, connected: false, forkedFrom: p.pid, reclaiming: true, mode, slotsInUse: 1 });
        const mine = await client.threadShim(child.pid, child.pid);
        t.truthy(mine.slot, 'the child\'s thread has a slot');
        t.is(Buffer.from(mine.variables.find((v) => v.name === 'value')!.bytes, 'hex').readBigInt64LE(0), 1n);
        if (mode === 'tid') t.is(mine.key, `0x${child.pid.toString(16)}`);

        // The parent's table is untouched: its main thread and the raw
        // thread that still holds its slot.
        t.like(await client.shim(p.pid), { connected: true, slotsInUse: 2 });
        const parents = await client.threadShim(p.pid, p.pid);
        t.is(Buffer.from(parents.variables.find((v) => v.name === 'value')!.bytes, 'hex').readBigInt64LE(0), 1n);
      });
    }
  }
}
