/* Who can use the control API, and what it will trace
 * (docs/security.md): socket modes, the TCP listener's token, the attach policy,
 * the rate limit. Real daemons, real sockets. */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { TlsdClient, TlsdError } from '../clients/client.js';
import { daemonEntry } from '../daemon/paths.js';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, fixturePath, killPid } from './helpers/fixture.js';
import { rawRequest } from './helpers/http.js';

const daemonMain = daemonEntry;

/** A TCP port nobody listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-sec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (file: string) => statSync(file).mode & 0o777;

test('the socket is 0600 in a 0700 directory the daemon made', async (t) => {
  const dir = tempDir(t);
  const socket = path.join(dir, 'run', 'tlsd.sock');
  await startDaemon(t, [], { socket });
  t.is(mode(socket), 0o600);
  t.is(mode(path.dirname(socket)), 0o700);
});

test('TLSD_SOCKET_GROUP: socket 0660 and directory 0710, both of that group', async (t) => {
  const dir = tempDir(t);
  const socket = path.join(dir, 'run', 'tlsd.sock');
  await startDaemon(t, ['--socket-group', 'daemon'], { socket });
  const gid = Number(readFileSync('/etc/group', 'utf8').match(/^daemon:[^:]*:(\d+):/m)![1]);
  t.is(mode(socket), 0o660);
  t.is(statSync(socket).gid, gid);
  t.is(mode(path.dirname(socket)), 0o710);
  t.is(statSync(path.dirname(socket)).gid, gid);
});

test('TCP: no token or a wrong one is 401 before anything else; the right one works; the token file is made 0600', async (t) => {
  const dir = tempDir(t);
  const tokenFile = path.join(dir, 'secret', 'token');
  const port = await freePort();
  const { socket } = await startDaemon(t, ['--http', `127.0.0.1:${port}`, '--token-file', tokenFile]);
  const token = readFileSync(tokenFile, 'utf8').trim();
  t.regex(token, /^[0-9a-f]{64}$/, '32 random bytes, hex');
  t.is(mode(tokenFile), 0o600);
  const tcp = { host: '127.0.0.1', port };

  const none = await rawRequest(tcp, { method: 'GET', url: '/v1/health' });
  t.is(none.status, 401);
  t.is(none.json.error.code, 'UNAUTHORIZED');
  t.regex(String(none.headers['www-authenticate']), /^Bearer/);
  const wrong = await rawRequest(tcp, { method: 'GET', url: '/v1/health', headers: { authorization: `Bearer ${'0'.repeat(64)}` } });
  t.is(wrong.status, 401);
  const basic = await rawRequest(tcp, { method: 'GET', url: '/v1/health', headers: { authorization: `Basic ${token}` } });
  t.is(basic.status, 401);
  // Not even an attach of pid 1, or an unknown route, is looked at without the token.
  t.is((await rawRequest(tcp, { method: 'POST', url: '/v1/processes', body: { pid: 1 } })).status, 401);
  t.is((await rawRequest(tcp, { method: 'GET', url: '/docs/json' })).status, 401);
  t.is((await rawRequest(tcp, { method: 'GET', url: '/nothing' })).status, 401);

  const right = await rawRequest(tcp, { method: 'GET', url: '/v1/health', headers: { authorization: `Bearer ${token}` } });
  t.is(right.status, 200);
  // The typed client over TCP, and the socket, which needs no token.
  const client = new TlsdClient({ http: `127.0.0.1:${port}`, tokenFile });
  t.is((await client.health()).status, 'ok');
  t.is((await rawRequest({ socketPath: socket }, { method: 'GET', url: '/v1/health' })).status, 200);
  const err = await t.throwsAsync(new TlsdClient({ http: `127.0.0.1:${port}`, token: 'f'.repeat(64) }).health());
  t.true(err instanceof TlsdError && err.code === 'UNAUTHORIZED');
});

/** Runs the daemon expecting it to refuse to start; returns its output. */
function refusesToStart(t: ExecutionContext, args: string[]): string {
  const dir = tempDir(t);
  const r = spawnSync(process.execPath, [daemonMain, '--socket', path.join(dir, 's.sock'), ...args], { encoding: 'utf8', timeout: 20000 });
  t.is(r.status, 1, 'exit code 1');
  return r.stdout + r.stderr;
}

test('TCP on a non-loopback address needs --allow-remote', async (t) => {
  const dir = tempDir(t);
  const out = refusesToStart(t, ['--http', '0.0.0.0:7979', '--token-file', path.join(dir, 'token')]);
  t.regex(out, /allow-remote/);
});

test('a token file others can read is refused', async (t) => {
  const dir = tempDir(t);
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'a'.repeat(64));
  chmodSync(tokenFile, 0o644);
  const out = refusesToStart(t, ['--http', `127.0.0.1:${await freePort()}`, '--token-file', tokenFile]);
  t.regex(out, /chmod 600/);
});

test('TLSD_ATTACH_ALLOW: an executable on the list is attached and spawned, others are 403 with the reason', async (t) => {
  const allowed = fixturePath('threads');
  const { client } = await startDaemon(t, ['--attach-allow', `${allowed},65534`]);
  const ok = await Fixture.start(t, 'threads', ['1']);
  t.is((await client.attach(ok.pid)).pid, ok.pid);
  await client.detach(ok.pid);
  const spawned = await client.spawn({ argv: [allowed, '1'] });
  t.teardown(() => killPid(spawned.pid));
  t.is(spawned.exe, allowed);

  const other = await Fixture.start(t, path.join('glibc-dynamic', 'tls'), ['1']);
  const err = await t.throwsAsync(client.attach(other.pid));
  t.true(err instanceof TlsdError && err.status === 403 && err.code === 'FORBIDDEN');
  t.regex(err!.message, /not in TLSD_ATTACH_ALLOW/);
  t.regex(err!.message, /glibc-dynamic\/tls/);

  const spawnErr = await t.throwsAsync(client.spawn({ argv: ['sleep', '30'] }));
  t.true(spawnErr instanceof TlsdError && spawnErr.status === 403);
  t.false((await client.processes()).some((p) => p.exe !== allowed), 'nothing else supervised');
});

test('the rate limit answers 429 with a retry time, on a Unix socket too', async (t) => {
  const { socket } = await startDaemon(t, ['--rate-limit', '5']);
  const answers = await Promise.all(Array.from({ length: 12 }, () => rawRequest({ socketPath: socket }, { method: 'GET', url: '/v1/health' })));
  const limited = answers.filter((a) => a.status === 429);
  t.true(limited.length >= 6, `${limited.length} of 12 limited`);
  t.is(limited[0]!.json.error.code, 'RATE_LIMITED');
  t.truthy(limited[0]!.headers['retry-after']);
  t.is(answers.filter((a) => a.status === 200).length + limited.length, 12);
});

test('every answer carries a request id; a caller\'s own is kept', async (t) => {
  const { socket } = await startDaemon(t);
  const mine = await rawRequest({ socketPath: socket }, { method: 'GET', url: '/v1/health', headers: { 'x-request-id': 'farm-42' } });
  t.is(mine.headers['x-request-id'], 'farm-42');
  const made = await rawRequest({ socketPath: socket }, { method: 'GET', url: '/nothing' });
  t.regex(String(made.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});
