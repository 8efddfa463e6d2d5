/* What the daemon tells about itself: /metrics, the OpenAPI document, and
 * the event stream as the typed client sees it. */
import path from 'node:path';
import test from 'ava';
import type { TlsdEvent } from '../clients/client.js';
import { startDaemon } from './helpers/daemon.js';
import { Fixture } from './helpers/fixture.js';
import { call, startApp } from './helpers/server.js';

/** The value of one series in Prometheus text, or undefined. */
function series(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('/metrics counts processes, threads, events, requests and TLS values', async (t) => {
  const { app } = await startApp(t);
  const f = await Fixture.start(t, path.join('glibc-dynamic', 'tls'), ['3']);
  t.is((await call(app, 'POST', '/v1/processes', { pid: f.pid })).status, 201);
  t.is((await call(app, 'GET', `/v1/processes/${f.pid}/tls/symbols/tls_exe`)).status, 200);
  t.is((await call(app, 'GET', `/v1/processes/${f.pid}/tls/symbols/nothing_here`)).status, 404);

  const res = await app.inject({ url: '/metrics' });
  t.is(res.statusCode, 200);
  t.regex(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = res.body;
  t.is(series(text, 'tlsd_supervised_processes{state="running"}'), 1);
  t.is(series(text, 'tlsd_supervised_threads'), 4);
  t.is(series(text, 'tlsd_events_total{kind="thread.created"}'), 4);
  t.is(series(text, 'tlsd_events_total{kind="process.attached"}'), 1);
  t.is(series(text, 'tlsd_tls_values_total{state="ok"}'), 4);
  t.is(series(text, 'tlsd_tracer_up'), 1);
  t.is(series(text, 'tlsd_tracer_restarts_total'), 0);
  const route = '/v1/processes/:pid/tls/symbols/:name';
  t.is(series(text, `tlsd_http_request_duration_seconds_count{method="GET",route="${route}",status="200"}`), 1);
  t.is(series(text, `tlsd_http_request_duration_seconds_count{method="GET",route="${route}",status="404"}`), 1);
  t.true(text.split('\n').filter((l) => l && !l.startsWith('#')).every((l) => l.startsWith('tlsd_')), 'every series is tlsd_');
});

test('/docs/json documents every route; /docs serves the UI', async (t) => {
  const { app } = await startApp(t);
  const routes: Array<{ method: string; url: string }> = [];
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD' && !r.url.startsWith('/docs')) routes.push({ method, url: r.url });
  });
  const doc = JSON.parse((await app.inject({ url: '/docs/json' })).body);
  t.is(doc.openapi, '3.1.0');
  t.true(routes.length >= 13);
  for (const { method, url } of routes) {
    const openapiPath = url.replace(/:(\w+)/g, '{$1}');
    t.truthy(doc.paths[openapiPath]?.[method.toLowerCase()], `${method} ${url}`);
    t.truthy(doc.paths[openapiPath]?.[method.toLowerCase()]?.summary, `${method} ${url} has a summary`);
  }
  const ui = await app.inject({ url: '/docs/' });
  t.is(ui.statusCode, 200);
  t.regex(ui.body, /swagger/i);
});

test('the client\'s event iterator: live events, then a resume from an id', async (t) => {
  const { client } = await startDaemon(t);
  const f = await Fixture.start(t, 'threads', ['2']);
  const stop = new AbortController();
  const seen: TlsdEvent[] = [];
  const reading = (async () => {
    for await (const e of client.events({ pid: f.pid, signal: stop.signal })) {
      seen.push(e);
      if (e.type === 'process.detached') stop.abort();
    }
  })();
  await new Promise((r) => setTimeout(r, 200)); // subscribed before the attach
  await client.attach(f.pid);
  await client.detach(f.pid);
  await reading; // ends quietly on abort
  // The fixture's main thread, its two workers and its control thread.
  t.deepEqual(seen.map((e) => e.type), [...Array(4).fill('thread.created'), 'process.attached', 'process.detached']);
  t.true(seen.every((e) => e.pid === f.pid && typeof e.id === 'number'));

  // Resuming after the attach replays only the detach.
  const resumed: TlsdEvent[] = [];
  const again = new AbortController();
  for await (const e of client.events({ pid: f.pid, since: seen[4]!.id, signal: again.signal })) {
    resumed.push(e);
    again.abort();
  }
  t.deepEqual(resumed.map((e) => e.type), ['process.detached']);
  t.deepEqual((await client.recentEvents({ pid: f.pid })).map((e) => e.id), seen.map((e) => e.id));
});
