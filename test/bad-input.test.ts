/* The catalogue of bad inputs: each one gets its documented
 * status and error code and changes nothing, through app.inject() and
 * through the daemon's real socket. The table in docs/api.md "Errors"
 * lists the same cases; a test below keeps the two the same. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { packageRoot } from '../daemon/paths.js';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, fixturePath, noThreadInTracingStop } from './helpers/fixture.js';
import { rawRequest, type RawRequest } from './helpers/http.js';
import { startApp } from './helpers/server.js';

interface Setting {
  daemonPid: number;
  tracerPid: number;
  /** A fixture traced by strace. */
  tracedElsewhere: number;
  /** A fixture tlsd supervises, and one of its threads that is not the leader. */
  supervised: number;
  supervisedThread: number;
}

interface Case {
  what: string;
  request: (s: Setting) => RawRequest;
  status: number;
  code: string;
}

const attach = (pid: unknown): RawRequest => ({ method: 'POST', url: '/v1/processes', body: { pid } });
const spawn = (body: unknown): RawRequest => ({ method: 'POST', url: '/v1/processes', body });
const get = (url: string): RawRequest => ({ method: 'GET', url });
const rule = (s: Setting, body: unknown): RawRequest => ({ method: 'POST', url: `/v1/processes/${s.supervised}/syscalls/rules`, body });

const catalogue: Case[] = [
  { what: 'attach: a pid that does not exist', request: () => attach(4194000), status: 404, code: 'NOT_FOUND' },
  { what: 'attach: pid 1', request: () => attach(1), status: 403, code: 'FORBIDDEN' },
  { what: 'attach: the daemon itself', request: (s) => attach(s.daemonPid), status: 403, code: 'FORBIDDEN' },
  { what: 'attach: the daemon\'s tracer', request: (s) => attach(s.tracerPid), status: 403, code: 'FORBIDDEN' },
  { what: 'attach: a process another tracer traces', request: (s) => attach(s.tracedElsewhere), status: 409, code: 'ALREADY_TRACED' },
  { what: 'attach: a process tlsd already supervises', request: (s) => attach(s.supervised), status: 409, code: 'ALREADY_TRACED' },
  { what: 'attach: a thread id, not a process id', request: (s) => attach(s.supervisedThread), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'attach: a pid that is not a number', request: () => attach('abc'), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'attach: pid 0', request: () => attach(0), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'attach: an unknown field', request: () => spawn({ pid: 2, extra: true }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: an empty argv', request: () => spawn({ argv: [] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a missing executable', request: () => spawn({ argv: ['no-such-program-here'] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a cwd that is not a directory', request: () => spawn({ argv: ['true'], cwd: '/etc/passwd' }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: an environment name with "="', request: () => spawn({ argv: ['true'], env: { 'A=B': 'c' } }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a shim mode that does not exist', request: () => spawn({ argv: ['true'], shim: { mode: 'fs' } }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: shim slots that are not a power of two', request: () => spawn({ argv: [fixturePath(path.join('glibc-static', 'tls'))], shim: { mode: 'tid', slots: 3 } }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'attach: a shim field that does not exist', request: (s) => ({ method: 'POST', url: '/v1/processes', body: { pid: s.supervised, shim: { mode: 'tid', dlopen: true } } }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'inject: no mode', request: (s) => ({ method: 'POST', url: `/v1/processes/${s.supervised}/shim`, body: {} }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'inject: slots over 2^20', request: (s) => ({ method: 'POST', url: `/v1/processes/${s.supervised}/shim`, body: { mode: 'tid', slots: 1 << 21 } }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'inject: slots that are not a power of two', request: (s) => ({ method: 'POST', url: `/v1/processes/${s.supervised}/shim`, body: { mode: 'tid', slots: 1000 } }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'inject: a process tlsd does not supervise', request: () => ({ method: 'POST', url: '/v1/processes/4194000/shim', body: { mode: 'tid' } }), status: 404, code: 'NOT_FOUND' },
  { what: 'rule: a syscall that does not exist', request: (s) => rule(s, { syscalls: ['opnat'] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: an empty syscall set', request: (s) => rule(s, { syscalls: [] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: error and retval', request: (s) => rule(s, { syscalls: ['openat'], error: 'ENOENT', retval: 0 }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: when=0', request: (s) => rule(s, { syscalls: ['openat'], when: '0' }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: a field that does not exist', request: (s) => rule(s, { syscalls: ['openat'], poke: 1 }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: a delay over a minute', request: (s) => rule(s, { syscalls: ['openat'], delayEnterUs: 61_000_000 }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: a process tlsd does not supervise', request: () => ({ method: 'POST', url: '/v1/processes/4194000/syscalls/rules', body: { syscalls: ['openat'] } }), status: 404, code: 'NOT_FOUND' },
  { what: 'rule: remove one that does not exist', request: (s) => ({ method: 'DELETE', url: `/v1/processes/${s.supervised}/syscalls/rules/999999` }), status: 404, code: 'NOT_FOUND' },
  { what: 'rule: remove one whose id is not a number', request: (s) => ({ method: 'DELETE', url: `/v1/processes/${s.supervised}/syscalls/rules/x` }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'syscall log: a negative since', request: (s) => get(`/v1/processes/${s.supervised}/syscalls/log?since=-1`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'syscall stats of a process tlsd does not supervise', request: () => get('/v1/processes/4194000/syscalls/stats'), status: 404, code: 'NOT_FOUND' },
  { what: 'events: a type that does not exist', request: () => get('/v1/events?types=thread.created,syscalls'), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a syscall rule that does not parse', request: () => spawn({ argv: ['true'], syscalls: [{ syscalls: ['openat'], when: '2..1' }] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a syscall rule for a thread', request: () => spawn({ argv: ['true'], syscalls: [{ syscalls: ['openat'], tids: [5] }] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a rule for the shim\'s engine, without the shim', request: () => spawn({ argv: ['true'], syscalls: [{ syscalls: ['openat'], engine: 'shim' }] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'spawn: a rule the shim\'s engine cannot trap (rt_sigreturn)', request: () => spawn({ argv: ['true'], shim: { mode: 'tid' }, syscalls: [{ syscalls: ['%signal'], engine: 'shim' }] }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: the shim\'s engine in a process that has none', request: (s) => rule(s, { syscalls: ['openat'], engine: 'shim' }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'rule: an engine that does not exist', request: (s) => rule(s, { syscalls: ['openat'], engine: 'bpf' }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'the shim of a process that has none', request: (s) => get(`/v1/processes/${s.supervised}/threads/${s.supervisedThread}/shim`), status: 404, code: 'NOT_FOUND' },
  { what: 'POST: malformed JSON', request: () => spawn('{"pid":'), status: 400, code: 'INVALID_ARGUMENT' },
  {
    what: 'POST: a body of a type other than JSON',
    request: () => ({ method: 'POST', url: '/v1/processes', body: '<pid>1</pid>', headers: { 'content-type': 'application/xml' } }),
    status: 415, code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  { what: 'POST: a body over 1 MiB', request: () => spawn({ argv: ['x'], env: { BIG: 'x'.repeat(2 * 1024 * 1024) } }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { what: 'an unknown route', request: () => get('/v1/nothing'), status: 404, code: 'NOT_FOUND' },
  { what: 'a method a route does not have', request: () => ({ method: 'PUT', url: '/v1/processes' }), status: 404, code: 'NOT_FOUND' },
  { what: 'a path with a broken %-escape', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/%E0%A4%A`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a pid in the path that is not a number', request: () => get('/v1/processes/abc'), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a process tlsd does not supervise', request: () => get('/v1/processes/4194000'), status: 404, code: 'NOT_FOUND' },
  { what: 'detach: a process tlsd does not supervise', request: () => ({ method: 'DELETE', url: '/v1/processes/4194000' }), status: 404, code: 'NOT_FOUND' },
  { what: 'detach: kill=maybe', request: (s) => ({ method: 'DELETE', url: `/v1/processes/${s.supervised}?kill=maybe` }), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a thread the process does not have', request: (s) => get(`/v1/processes/${s.supervised}/threads/4194000`), status: 404, code: 'NOT_FOUND' },
  { what: 'TLS: an unknown symbol', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/no_such_variable`), status: 404, code: 'NOT_FOUND' },
  { what: 'TLS: an unknown type', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/tls_exe?type=i128`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'TLS: a length over 65536', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/tls_exe?type=bytes&length=65537`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'TLS: an unknown module', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/tls_exe?module=libnothing.so`), status: 404, code: 'NOT_FOUND' },
  { what: 'TLS: a name over 4096 characters', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/${'x'.repeat(4097)}`), status: 414, code: 'URI_TOO_LONG' },
  { what: 'TLS: a module that does not exist', request: (s) => get(`/v1/processes/${s.supervised}/tls/modules/libnothing.so/bytes?offset=0`), status: 404, code: 'NOT_FOUND' },
  { what: 'TLS: bytes past the end of a module\'s block', request: (s) => get(`/v1/processes/${s.supervised}/tls/modules/1/bytes?offset=65536`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'TLS: a module read without an offset', request: (s) => get(`/v1/processes/${s.supervised}/tls/modules/1/bytes`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'TLS: an unknown query field', request: (s) => get(`/v1/processes/${s.supervised}/tls/symbols/tls_exe?colour=red`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'events: a pid that is not a number', request: () => get('/v1/events?pid=abc'), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a list: a cursor it did not give', request: (s) => get(`/v1/processes/${s.supervised}/exits?after=the-end`), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a list: a limit over 10000', request: () => get('/v1/processes?limit=10001'), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a list: a since that is not a time', request: () => get('/v1/processes?since=yesterday'), status: 400, code: 'INVALID_ARGUMENT' },
  { what: 'a list: a state that does not exist', request: () => get('/v1/processes?state=sleeping'), status: 400, code: 'INVALID_ARGUMENT' },
];

/** The setting every case runs in; `attach` puts the supervised fixture
 * under tlsd through the transport under test. */
async function setting(t: ExecutionContext, daemonPid: number, tracerPid: number, attachIt: (pid: number) => Promise<void>): Promise<Setting> {
  const traced = await Fixture.start(t, 'threads', ['1'], ['strace', '-f', '-o', '/dev/null']);
  const supervised = await Fixture.start(t, path.join('glibc-dynamic', 'tls'), ['2']);
  await attachIt(supervised.pid);
  const supervisedThread = supervised.out.all.map((l) => /^tls-thread 1 (\d+)/.exec(l)?.[1]).find(Boolean);
  return { daemonPid, tracerPid, tracedElsewhere: traced.pid, supervised: supervised.pid, supervisedThread: Number(supervisedThread) };
}

async function runCatalogue(t: ExecutionContext, send: (r: RawRequest) => Promise<{ status: number; json: any }>, s: Setting) {
  const before = (await send(get('/v1/processes'))).json.processes;
  for (const c of catalogue) {
    const res = await send(c.request(s));
    t.is(res.status, c.status, c.what);
    t.is(res.json?.error?.code, c.code, c.what);
    t.true(typeof res.json?.error?.message === 'string' && res.json.error.message.length > 0, c.what);
  }
  t.deepEqual((await send(get('/v1/processes'))).json.processes.map((p: { pid: number }) => p.pid), before.map((p: { pid: number }) => p.pid), 'nothing changed');
  t.true(noThreadInTracingStop(s.supervised) && noThreadInTracingStop(s.tracedElsewhere));
}

test('the catalogue through app.inject()', async (t) => {
  const { app, supervisor } = await startApp(t);
  const send = async (r: RawRequest) => {
    const res = await app.inject({
      method: r.method as 'GET', url: r.url, headers: { ...(r.body !== undefined ? { 'content-type': 'application/json' } : {}), ...r.headers },
      ...(r.body === undefined ? {} : { payload: typeof r.body === 'string' ? r.body : JSON.stringify(r.body) }),
    });
    return { status: res.statusCode, json: JSON.parse(res.body || 'null') };
  };
  const s = await setting(t, process.pid, supervisor.tracerPid!, async (pid) => { t.is((await send(attach(pid))).status, 201); });
  await runCatalogue(t, send, s);
});

test('the catalogue through the daemon\'s socket', async (t) => {
  const { client, socket } = await startDaemon(t);
  const health = await client.health();
  const s = await setting(t, health.pid, health.tracerPid!, async (pid) => { await client.attach(pid); });
  await runCatalogue(t, (r) => rawRequest({ socketPath: socket }, r), s);
});

test('docs/api.md documents every case of the catalogue', (t) => {
  const doc = readFileSync(path.join(packageRoot, 'docs', 'api.md'), 'utf8');
  for (const c of catalogue) t.true(doc.includes(`| ${c.what} | ${c.status} | \`${c.code}\` |`), c.what);
});
