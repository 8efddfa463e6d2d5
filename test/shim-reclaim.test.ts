/* A thread that ends holding a shim slot: tlsd's tracer frees the slot at
 * the thread's exit stop, so the next thread on the same thread pointer
 * starts from zero, and the exit ledger says what became of each slot.
 * The fixture (test/fixtures/shim/shim-reuse.c) uses raw clone threads on
 * one thread pointer of its own choosing. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { commandFifo } from './helpers/fifo.js';
import { Fixture, fixturePath, killPid, waitUntil } from './helpers/fixture.js';

const results = (text: string) => Object.fromEntries([...text.matchAll(/^thread (\d) (\d+) (-?\d+)$/gm)].map((m) => [m[1], { tid: Number(m[2]), seen: Number(m[3]) }]));

test('without tlsd, the next thread on a dead thread\'s pointer finds its slot (the hazard)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-reuse-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const go = commandFifo(t, dir);
  const f = await Fixture.start(t, path.join('glibc-dynamic', 'shim-reuse'), [go.path]);
  go.send('go');
  await f.out.waitFor(/^done$/);
  const r = results(f.out.all.join('\n'));
  t.is(r[1]!.seen, 0);
  t.is(r[2]!.seen, 1000, 'the stale slot: what tlsd is there to prevent');
});

for (const libc of ['glibc', 'musl']) {
  for (const variant of ['exit', 'release'] as const) {
    test(`under tlsd, ${libc}: a thread that ends by ${variant === 'exit' ? 'a raw exit, holding its slot' : 'tlsshim_release_and_exit'}`, async (t) => {
      const { client, dir } = await startDaemon(t);
      const go = commandFifo(t, dir);
      const p = await client.spawn({
        argv: [fixturePath(path.join(`${libc}-dynamic`, 'shim-reuse')), go.path, ...(variant === 'release' ? ['release'] : [])],
        shim: { mode: 'thread-pointer' },
      });
      t.teardown(() => killPid(p.pid));
      await waitUntil('the tracer to have the shim\'s table', async () => (await client.shim(p.pid)).reclaiming);
      go.send('go');
      const out = await waitUntil('the fixture\'s report', () => {
        const text = readFileSync(p.stdout!, 'utf8');
        return text.includes('done') ? text : undefined;
      });
      const r = results(out);
      t.is(r[1]!.seen, 0);
      t.is(r[2]!.seen, 0, 'the next thread on the same thread pointer starts from zero');
      const fate = await waitUntil('the ledger', async () => {
        const exits = await client.exits(p.pid);
        const first = exits.find((x) => x.tid === r[1]!.tid);
        const second = exits.find((x) => x.tid === r[2]!.tid);
        return first?.shim && second?.shim && (variant === 'exit' || first.shim === 'released') ? { first: first.shim, second: second.shim } : undefined;
      });
      t.deepEqual(fate, variant === 'exit' ? { first: 'reclaimed', second: 'reclaimed' } : { first: 'released', second: 'reclaimed' });
      t.is((await client.shim(p.pid)).slotsInUse, 0, 'both slots are free again');
      await client.detach(p.pid, { kill: true });
    });
  }
}
