/* A static Go program's threads: each one's current goroutine, from Go's
 * own layout (daemon/go.ts), against the goroutine ids the program
 * reports itself (test/fixtures/go/goroutines.go: goroutines locked to
 * their threads, asleep in a system call). Go 1.19 (Debian bookworm). */
import path from 'node:path';
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { Fixture } from './helpers/fixture.js';
import { tlsctl } from './helpers/tlsctl.js';

test('static Go: every thread that runs a locked goroutine names it, and each M has its own id', async (t) => {
  const { client, socket } = await startDaemon(t);
  const f = await Fixture.start(t, path.join('go-static', 'goroutines'));
  const expected = new Map(f.out.all.flatMap((l) => {
    const m = /^goroutine (\d+) (\d+)$/.exec(l);
    return m ? [[Number(m[2]), Number(m[1])]] : [];
  }));
  t.is(expected.size, 4);
  await client.attach(f.pid);
  const threads = await client.threads(f.pid);
  for (const [tid, goid] of expected) {
    const thread = threads.find((x) => x.tid === tid);
    t.is(thread?.goroutine?.goid, goid, `thread ${tid}`);
    t.true((thread?.goroutine?.m ?? -1) >= 0);
  }
  // Every M has its own id.
  const ms = threads.flatMap((x) => (x.goroutine ? [x.goroutine.m] : []));
  t.is(new Set(ms).size, ms.length);
  const table = (await tlsctl(socket, 'threads', String(f.pid))).stdout;
  t.regex(table, /^TID\s+NAME\s+STATE\s+FS_BASE\s+FROM\s+CREATED\s+PARENT\s+GOROUTINE\s+M$/m);
  for (const [tid, goid] of expected) t.regex(table, new RegExp(`^${tid}\\s.*\\s${goid}\\s+\\d+$`, 'm'));
  f.child.stdin!.end();
  t.is(await f.exited(), 0);
});
