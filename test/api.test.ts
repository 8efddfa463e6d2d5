/* Bad input gets a clear error and changes nothing (docs/architecture.md invariant 5). */
import http from 'node:http';
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, waitUntil } from './helpers/fixture.js';
import { call, startApp } from './helpers/server.js';

test('health names the daemon and its tracer', async (t) => {
  const { app, supervisor } = await startApp(t);
  const { status, body } = await call(app, 'GET', '/v1/health');
  t.is(status, 200);
  t.like(body, { status: 'ok', pid: process.pid, tracerPid: supervisor.tracerPid, processes: 0, threads: 0 });
});

test('a kernel thread and the tracer itself are refused', async (t) => {
  const { app, supervisor } = await startApp(t);
  const kthreadd = 2; // the kernel's thread spawner is pid 2 in every pid namespace that has one
  const k = await call(app, 'POST', '/v1/processes', { pid: kthreadd });
  t.true(k.status === 403 || k.status === 404, `kthreadd: ${k.status}`);
  const own = await call(app, 'POST', '/v1/processes', { pid: supervisor.tracerPid });
  t.is(own.status, 403);
  t.regex(own.body.error.message, /tracer/);
});

test('unknown routes, processes and threads are 404; a thread that ended is 410', async (t) => {
  const { app } = await startApp(t);
  t.is((await call(app, 'GET', '/v1/nothing')).body.error.code, 'NOT_FOUND');
  t.is((await call(app, 'GET', '/v1/processes/12345')).status, 404);
  t.is((await call(app, 'GET', '/v1/processes/12345/threads')).status, 404);
  t.is((await call(app, 'DELETE', '/v1/processes/12345')).status, 404);
  t.is((await call(app, 'GET', '/v1/processes/abc')).status, 400);

  const fixture = await Fixture.start(t, 'threads', ['2']);
  t.is((await call(app, 'POST', '/v1/processes', { pid: fixture.pid })).status, 201);
  const gone = fixture.out.threads().find((r) => r.index === 1)!;
  fixture.send('exit 1 0');
  await waitUntil('the exit', async () => (await call(app, 'GET', `/v1/processes/${fixture.pid}/exits`)).body.exits.length === 1);
  t.is((await call(app, 'GET', `/v1/processes/${fixture.pid}/threads/${gone.tid}`)).body.error.code, 'GONE');
  t.is((await call(app, 'GET', `/v1/processes/${fixture.pid}/threads/99999`)).status, 404);
  t.is((await call(app, 'DELETE', `/v1/processes/${fixture.pid}?ifState=ended`)).body.error.code, 'STILL_RUNNING', 'a running process is not forgotten');
  t.is((await call(app, 'DELETE', `/v1/processes/${fixture.pid}`)).status, 200, 'detached');
  t.is((await call(app, 'DELETE', `/v1/processes/${fixture.pid}?ifState=running`)).body.error.code, 'GONE', 'a detached one is not forgotten on ifState=running');
  t.is((await call(app, 'DELETE', `/v1/processes/${fixture.pid}`)).status, 204, 'forgotten');
  t.is((await call(app, 'GET', `/v1/processes/${fixture.pid}`)).status, 404);
  t.is((await call(app, 'GET', `/v1/processes/${fixture.pid}/exits`)).status, 404);
});

test('DELETE ?kill=true ends a spawned process and reports how', async (t) => {
  const { app } = await startApp(t);
  const spawned = await call(app, 'POST', '/v1/processes', { argv: ['sleep', '60'] });
  t.is(spawned.status, 201);
  t.teardown(() => { try { process.kill(spawned.body.pid, 'SIGKILL'); } catch { /* gone */ } });
  const killed = await call(app, 'DELETE', `/v1/processes/${spawned.body.pid}?kill=true`);
  t.is(killed.status, 200);
  t.like(killed.body, { state: 'exited', exit: { signal: 9 } });
});

/** Reads server-sent events from the real socket until `enough` says so. */
function readEvents(socketPath: string, enough: (events: Array<{ event: string; data: any }>) => boolean) {
  return new Promise<Array<{ event: string; data: any }>>((resolve, reject) => {
    const events: Array<{ event: string; data: any }> = [];
    const req = http.get({ socketPath, path: '/v1/events' }, (res) => {
      let buffer = '';
      res.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = block.match(/^event: (.*)$/m)?.[1];
          const data = block.match(/^data: (.*)$/m)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
        if (enough(events)) {
          req.destroy();
          resolve(events);
        }
      });
    });
    req.on('error', (e) => (events.length ? resolve(events) : reject(e)));
  });
}

test('GET /v1/events streams the lifecycle of a process', async (t) => {
  const { client, socket } = await startDaemon(t);
  const fixture = await Fixture.start(t, 'threads', ['2']);
  const seen = readEvents(socket, (ev) => ev.some((e) => e.event === 'process.detached'));
  await new Promise((r) => setTimeout(r, 100)); // subscribed before the attach
  await client.attach(fixture.pid);
  fixture.send('exit 1 9');
  await waitUntil('the exit', async () => (await client.exits(fixture.pid)).length === 1);
  await client.detach(fixture.pid);
  const events = await seen;
  const kinds = events.map((e) => e.event);
  t.is(kinds.filter((k) => k === 'thread.created').length, 4);
  t.true(kinds.includes('process.attached'));
  t.like(events.find((e) => e.event === 'thread.exited')?.data, { pid: fixture.pid, how: 'exit', code: 9 });
  t.true(kinds.indexOf('process.attached') < kinds.indexOf('thread.exited'));
  t.is(kinds.at(-1), 'process.detached');
});
