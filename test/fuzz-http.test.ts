/* Property-based fuzz of the HTTP layer: for generated paths,
 * query strings, headers and bodies on every route, the daemon answers
 * with a documented status and the error shape, never 500, never crashes,
 * and leaves no tracee stopped.
 *
 * Safety of the machine the test runs on: the attach policy allows only
 * the fixture programs, so a generated pid or argv can reach nothing
 * else; spawn bodies always name a cwd inside a temporary directory, and
 * output files only there. GET /v1/events is left out: a valid request is a
 * stream that never ends, which app.inject() cannot hold. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { AttachPolicy } from '../daemon/attach-policy.js';
import { Fixture, fixturePath, killPid, noThreadInTracingStop } from './helpers/fixture.js';
import { startApp } from './helpers/server.js';

const documented = new Set([200, 201, 204, 400, 401, 403, 404, 409, 410, 413, 414, 415, 429, 503]);
const RUNS = Number(process.env.FUZZ_RUNS ?? 500);

test('every generated request gets a documented answer; nothing is left stopped', async (t) => {
  const tls = fixturePath(path.join('glibc-dynamic', 'tls'));
  const threads = fixturePath('threads');
  const { app, supervisor } = await startApp(t, {
    policy: new AttachPolicy({ uids: new Set(), executables: [tls, threads] }),
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-fuzz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const supervised = await Fixture.start(t, path.join('glibc-dynamic', 'tls'), ['2']);
  const loose = await Fixture.start(t, 'threads', ['1']); // allowed, not attached: the fuzzer may attach it
  t.is((await app.inject({ method: 'POST', url: '/v1/processes', payload: { pid: supervised.pid } })).statusCode, 201);
  const tids = supervised.out.all.flatMap((l) => /^tls-thread \d+ (\d+)/.exec(l)?.[1] ?? []);

  const weird = fc.oneof(
    fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', '..', '%00', '%2F', ' ', '-1', '0x10', '1e3', '18446744073709551617', 'NaN'),
  );
  // Weighted towards the supervised fixture, so that most requests get
  // past validation into the supervisor and the TLS reader.
  const pid = fc.oneof(
    { arbitrary: fc.constant(supervised.pid), weight: 6 },
    fc.constantFrom(loose.pid, 1, process.pid, 0, 4194304, 4194305),
    fc.integer({ min: -5, max: 5_000_000 }), weird,
  );
  const tid = fc.oneof(fc.constantFrom(...tids.map(Number)), pid);
  const symbol = fc.oneof({ arbitrary: fc.constantFrom('tls_exe', 'tls_name', 'errno', 'tls_needed', 'tls_everywhere'), weight: 3 }, weird);
  const queryValue = fc.oneof({ arbitrary: fc.constantFrom('i32', 'u64', 'bytes', 'cstring', 'ptr', '1', '65536', '65537', 'true', 'libc.so.6'), weight: 3 }, weird);
  const query = fc.oneof(
    { arbitrary: fc.constant({}), weight: 2 },
    { arbitrary: fc.record({ type: queryValue, module: queryValue, length: queryValue, tid: tid.map(String) }, { requiredKeys: [] }), weight: 3 },
    fc.dictionary(fc.oneof(fc.constantFrom('type', 'module', 'length', 'tid', 'pid', 'kill', 'since'), fc.string({ maxLength: 8 })), queryValue, { maxKeys: 4 }),
  );
  // Always a cwd in the temporary directory: a relative output path (a
  // number is coerced to one) then lands there too.
  const cwd = fc.constantFrom(dir, path.join(dir, 'missing'));
  const outputPath = fc.oneof(fc.constantFrom(path.join(dir, 'out'), path.join(dir, 'missing', 'x'), 'relative'), fc.integer());
  const spawnBody = fc.record({
    argv: fc.oneof(fc.array(weird, { maxLength: 3 }), { arbitrary: fc.tuple(fc.constantFrom(threads, tls), fc.constantFrom('1', 'x', '')).map((a) => [...a]), weight: 2 }),
    env: fc.dictionary(weird, weird, { maxKeys: 3 }),
    cwd, stdout: outputPath, stderr: outputPath,
    shim: fc.oneof(fc.record({ mode: fc.constantFrom('thread-pointer', 'tid') }), fc.jsonValue()),
    extra: fc.jsonValue(),
  }, { requiredKeys: ['cwd'] });
  const body = fc.oneof(
    { arbitrary: fc.record({ pid }), weight: 3 }, { arbitrary: spawnBody, weight: 3 }, fc.jsonValue(), weird,
    fc.constant('{"pid":'), fc.constant('x'.repeat(1024 * 1024 + 10)),
  );
  const contentType = fc.oneof(
    { arbitrary: fc.constant('application/json'), weight: 4 },
    fc.constantFrom('application/json; charset=utf-8', 'text/plain', 'application/xml', undefined),
  );
  const request = fc.oneof(
    fc.record({ method: fc.constant('GET'), url: fc.constant('/v1/health') }),
    fc.record({ method: fc.constant('GET'), url: fc.constant('/v1/processes') }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid, query).map(([p, q]) => `/v1/processes/${enc(p)}${qs(q)}`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/threads`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid, tid).map(([p, x]) => `/v1/processes/${enc(p)}/threads/${enc(x)}`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/exits`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/tls/modules`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/tls/symbols`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid, symbol, query).map(([p, s, q]) => `/v1/processes/${enc(p)}/tls/symbols/${enc(s)}${qs(q)}`) }),
    fc.record({ method: fc.constant('GET'), url: query.map((q) => `/v1/events/recent${qs(q)}`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/shim`) }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid, tid).map(([p, x]) => `/v1/processes/${enc(p)}/threads/${enc(x)}/shim`) }),
    fc.record({
      method: fc.constant('POST'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/shim`),
      body: fc.oneof(fc.record({ mode: fc.constantFrom('thread-pointer', 'tid'), slots: fc.integer() }, { requiredKeys: ['mode'] }), fc.jsonValue()),
      contentType,
    }),
    fc.record({
      method: fc.constant('POST'), url: fc.tuple(pid).map(([p]) => `/v1/processes/${enc(p)}/syscalls/rules`),
      // No delays or signals: a thread held for a minute, or stopped, is
      // what those ask for, not a fault.
      body: fc.oneof(fc.record({
        syscalls: fc.oneof(fc.constantFrom(['openat'], ['%file', '!read'], ['opnat'], [], ['/^o'], ['999']), fc.array(weird, { maxLength: 2 })),
        error: fc.oneof(fc.constantFrom('ENOENT', 'EFOO', 0, 4096), weird), retval: fc.integer(), when: fc.oneof(fc.constantFrom('1..3', '2+', '0', '3..1'), weird),
        trace: fc.boolean(), path: fc.oneof(fc.constant('/etc/hostname'), weird), tids: fc.array(tid, { maxLength: 2 }),
      }, { requiredKeys: ['syscalls'] }), fc.jsonValue()),
      contentType,
    }),
    fc.record({ method: fc.constant('GET'), url: fc.tuple(pid, fc.constantFrom('rules', 'stats', 'log', 'log?since=3', 'log?limit=0')).map(([p, what]) => `/v1/processes/${enc(p)}/syscalls/${what}`) }),
    fc.record({ method: fc.constant('DELETE'), url: fc.tuple(pid, fc.oneof(fc.integer({ min: 0, max: 50 }), weird)).map(([p, id]) => `/v1/processes/${enc(p)}/syscalls/rules/${enc(id)}`) }),
    fc.record({ method: fc.constant('DELETE'), url: fc.tuple(pid, query).map(([p, q]) => `/v1/processes/${enc(p)}${qs(q)}`) }),
    fc.record({ method: fc.constant('POST'), url: fc.constant('/v1/processes'), body, contentType }),
    fc.record({ method: fc.constantFrom('PUT', 'PATCH', 'POST', 'DELETE'), url: fc.constantFrom('/v1/health', '/v1/processes/1/threads', '/metrics') }),
    fc.record({ method: fc.constant('GET'), url: weird.map((w) => `/${enc(w)}`) }),
  );

  await fc.assert(fc.asyncProperty(request, async (r: { method: string; url: string; body?: unknown; contentType?: string | undefined }) => {
    const payload = r.body === undefined ? undefined : typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
    const res = await app.inject({
      method: r.method as 'GET', url: r.url,
      headers: payload !== undefined && r.contentType ? { 'content-type': r.contentType } : {},
      ...(payload !== undefined ? { payload } : {}),
    });
    if (res.statusCode === 201 && r.method === 'POST') {
      // Whatever was spawned or attached is ended or released at teardown.
      const pid = (JSON.parse(res.body) as { pid: number }).pid;
      t.teardown(() => killPid(pid));
    }
    if (!documented.has(res.statusCode)) throw new Error(`${r.method} ${r.url}: undocumented status ${res.statusCode}: ${res.body.slice(0, 300)}`);
    if (res.statusCode >= 400 && r.url !== '/metrics') {
      const error = (JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown } }).error;
      if (typeof error?.code !== 'string' || typeof error.message !== 'string') throw new Error(`${r.method} ${r.url}: no error body: ${res.body.slice(0, 300)}`);
    }
  }), { numRuns: RUNS });

  // Still alive and answering, and nothing it touched is stopped.
  t.is((await app.inject({ url: '/v1/health' })).statusCode, 200);
  for (const p of supervisor.registry.list()) {
    if (p.state === 'running') await app.inject({ method: 'DELETE', url: `/v1/processes/${p.pid}` });
  }
  for (const p of supervisor.registry.list()) t.true(noThreadInTracingStop(p.pid), `process ${p.pid} has no thread in state t`);
  t.true(noThreadInTracingStop(supervised.pid) && noThreadInTracingStop(loose.pid));
});

function enc(v: unknown): string {
  return encodeURIComponent(String(v));
}

function qs(q: Record<string, string>): string {
  const text = new URLSearchParams(q).toString();
  return text ? `?${text}` : '';
}
