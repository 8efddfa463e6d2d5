/* A process spawned with the shim (LD_PRELOAD) under a real daemon: the
 * shim's agent says hello over IPC, and its table and each thread's
 * variables are visible through REST and tlsctl, against glibc and musl,
 * in both modes. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { daemonEntry } from '../daemon/paths.js';
import { startDaemon } from './helpers/daemon.js';
import { fixturePath, killPid, waitUntil } from './helpers/fixture.js';
import { tlsctl } from './helpers/tlsctl.js';

const WORKERS = 3;

for (const libc of ['glibc', 'musl']) {
  for (const mode of ['thread-pointer', 'tid'] as const) {
    test(`spawned with the shim, ${libc}, ${mode}: hello, table, slots and values over REST`, async (t) => {
      const { client, socket } = await startDaemon(t);
      const p = await client.spawn({ argv: [fixturePath(path.join(`${libc}-dynamic`, 'shim-host')), mode, String(WORKERS), 'hold'], shim: { mode } });
      t.teardown(() => killPid(p.pid));
      const shim = await waitUntil('the shim\'s hello', async () => {
        const s = await client.shim(p.pid);
        return s.loaded && (s.slotsInUse ?? 0) === WORKERS + 1 ? s : undefined;
      });
      t.like(shim, { loaded: true, connected: true, mode, version: 1, slotCount: 4096, slotBytes: 1024, slotsFree: 4096 - (WORKERS + 1) });
      t.deepEqual(shim.variables?.map((v) => v.name), ['counter', 'name', 'signals']);

      // The fixture printed which thread is which; its stdout went to a file.
      const lines = readFileSync(p.stdout!, 'utf8').split('\n');
      const threads = lines.flatMap((l) => {
        const m = /^shim-thread (\d+) (\d+)/.exec(l);
        return m ? [{ index: Number(m[1]), tid: Number(m[2]) }] : [];
      });
      t.is(threads.length, WORKERS + 1);
      for (const th of threads) {
        const ts = await client.threadShim(p.pid, th.tid);
        t.truthy(ts.slot, `thread ${th.index} has a slot`);
        const counter = Buffer.from(ts.variables.find((v) => v.name === 'counter')!.bytes, 'hex').readBigInt64LE(0);
        t.is(counter, BigInt(7 * th.index + 1));
        t.is(Buffer.from(ts.variables.find((v) => v.name === 'name')!.bytes, 'hex').toString('utf8').replace(/\0+$/, ''), `thread-${th.index}`);
        if (mode === 'tid') t.is(ts.key, `0x${th.tid.toString(16)}`);
      }
      // The agent is a raw clone on a page of its own: no C-library TLS,
      // which a read says rather than showing what memory holds there.
      const errno = await client.readTls(p.pid, 'errno');
      const ours = new Set(threads.map((th) => th.tid));
      t.true(errno.values.filter((v) => ours.has(v.tid)).every((v) => v.state === 'ok'), JSON.stringify(errno.values));
      t.deepEqual(errno.values.filter((v) => !ours.has(v.tid)).map((v) => [v.state, v.value]), [['no-tls', null]], 'the agent');
      const kinds = (await client.recentEvents({ pid: p.pid })).map((e) => e.type);
      t.true(kinds.includes('shim.handshake'));
      t.is(kinds.filter((k) => k === 'shim.slot').length, WORKERS + 1);

      // tlsctl shows the same.
      const { stdout: out } = await tlsctl(socket, 'shim', String(p.pid), String(threads[1]!.tid));
      const counterHex = Buffer.from(new BigInt64Array([BigInt(7 * threads[1]!.index + 1)]).buffer).toString('hex');
      t.regex(out, new RegExp(`^thread ${threads[1]!.tid}, key 0x[0-9a-f]+: slot \\d+ at 0x[0-9a-f]+\\nNAME\\s+SIZE\\s+BYTES\\ncounter\\s+8\\s+${counterHex}\\n`));
      await client.detach(p.pid, { kill: true });
    });
  }
}

for (const libc of ['glibc', 'musl']) {
  test(`${libc}: a signal handler's counter in shim TLS, per thread, read through REST`, async (t) => {
    const { client } = await startDaemon(t);
    const p = await client.spawn({ argv: [fixturePath(path.join(`${libc}-dynamic`, 'shim-host')), 'thread-pointer', String(WORKERS), 'signals'], shim: { mode: 'thread-pointer' } });
    t.teardown(() => killPid(p.pid));
    const out = await waitUntil('the signals', () => {
      const text = readFileSync(p.stdout!, 'utf8');
      return /^ready /m.test(text) ? text : undefined;
    });
    // The agent says hello on its own schedule, perhaps after the signals.
    await waitUntil('the shim\'s hello', async () => (await client.shim(p.pid)).loaded);
    const counted = [...out.matchAll(/^signals (\d+) (\d+) (\d+)$/gm)].map((m) => ({ index: Number(m[1]), tid: Number(m[2]), count: Number(m[3]) }));
    t.is(counted.length, WORKERS);
    for (const c of counted) {
      t.is(c.count, 100 + c.index, 'every signal was handled');
      const ts = await client.threadShim(p.pid, c.tid);
      const inShim = Buffer.from(ts.variables.find((v) => v.name === 'signals')!.bytes, 'hex').readBigInt64LE(0);
      t.is(inShim, BigInt(c.count), `thread ${c.index}: the handler's count in shim TLS`);
    }
    await client.detach(p.pid, { kill: true });
  });
}

test('after an exec the old table is forgotten, and the new image\'s shim says hello again', async (t) => {
  const { client } = await startDaemon(t);
  const p = await client.spawn({ argv: ['sh', '-c', 'sleep 1; exec sleep 30'], shim: { mode: 'thread-pointer' } });
  t.teardown(() => killPid(p.pid));
  await waitUntil('two hellos, one per image', async () => {
    const events = await client.recentEvents({ pid: p.pid });
    return events.filter((e) => e.type === 'shim.handshake').length === 2 && events.some((e) => e.type === 'process.exec');
  });
  // (The second hello may be published before the exec: the tracer sends
  // lifecycle events in batches. Either way the new image's shim is kept.)
  const shim = await waitUntil('the new table', async () => {
    const s = await client.shim(p.pid);
    return s.loaded && s.reclaiming ? s : undefined;
  });
  t.like(shim, { connected: true, mode: 'thread-pointer', slotsInUse: 0 });
  await client.detach(p.pid, { kill: true });
});

// A static program spawned with a shim gets it injected: test/inject.test.ts.
test('a process without a shim says so', async (t) => {
  const { client } = await startDaemon(t);
  const p = await client.spawn({ argv: ['sleep', '30'] });
  t.teardown(() => killPid(p.pid));
  t.deepEqual(await client.shim(p.pid), { loaded: false });
  await client.detach(p.pid, { kill: true });
});

test('two daemons whose sockets share a directory each hear their own shims; a third on a socket in use is refused, a dead one\'s is taken', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-two-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const daemons = [await startDaemon(t, [], { socket: path.join(dir, 'tlsd.sock') }), await startDaemon(t, [], { socket: path.join(dir, 'tlsd2.sock') })];
  const helloTo = async (client: (typeof daemons)[number]['client']) => {
    const p = await client.spawn({ argv: [fixturePath(path.join('glibc-dynamic', 'shim-host')), 'tid', '1', 'hold'], shim: { mode: 'tid' } });
    t.teardown(() => killPid(p.pid));
    return waitUntil(`the hello of ${p.pid}`, async () => {
      const s = await client.shim(p.pid);
      return s.loaded && s.connected ? s : undefined;
    });
  };
  for (const { client } of daemons) t.like(await helloTo(client), { loaded: true, connected: true, mode: 'tid' });

  const third = spawnSync(process.execPath, [daemonEntry, '--socket', path.join(dir, 'tlsd.sock')], { encoding: 'utf8' });
  t.is(third.status, 1);
  t.regex(third.stdout + third.stderr, /another daemon is listening on .*tlsd\.sock/);
  // The first daemon still has both its sockets.
  t.like(await helloTo(daemons[0]!.client), { loaded: true, connected: true });

  // A daemon killed leaves its socket files behind; its successor takes them.
  const killed = daemons[1]!.child;
  killed.kill('SIGKILL');
  await new Promise((r) => killed.once('exit', r));
  const successor = await startDaemon(t, [], { socket: path.join(dir, 'tlsd2.sock') });
  t.like(await helloTo(successor.client), { loaded: true, connected: true });
});
