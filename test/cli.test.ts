/* tlsctl against a real daemon: what a newcomer types after reading the
 * README, and the exit codes scripts rely on (0 ok, 1 API, 2 usage). */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { daemonEntry } from '../daemon/paths.js';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, noThreadInTracingStop, waitUntil } from './helpers/fixture.js';
import { cString } from '../clients/text-output.js';
import { tlsctl, tlsctlPath } from './helpers/tlsctl.js';

const run = promisify(execFile);

/** tid -> 7*i+1, from the fixture's "tls-thread I TID" lines. */
function expectedValues(f: Fixture): Record<number, number> {
  return Object.fromEntries(f.out.all.flatMap((l) => {
    const m = /^tls-thread (\d+) (\d+)/.exec(l);
    return m ? [[Number(m[2]), 7 * Number(m[1]) + 1]] : [];
  }));
}

test('attach, ps, threads, tls, show, exits, events, detach', async (t) => {
  const { socket } = await startDaemon(t);
  const f = await Fixture.start(t, path.join('glibc-dynamic', 'tls'), ['3']);
  const expected = expectedValues(f);

  const attached = await tlsctl(socket, 'attach', String(f.pid));
  t.is(attached.code, 0, attached.stderr);
  t.regex(attached.stdout, new RegExp(`^attached to ${f.pid} \\(.*\\) in \\d+ ms: 4 threads, \\d+ passes`));

  const ps = JSON.parse((await tlsctl(socket, '--json', 'ps')).stdout);
  t.like(ps.processes.find((p: { pid: number }) => p.pid === f.pid), { state: 'running', libc: 'glibc', threads: 4 });

  const threads = (await tlsctl(socket, 'threads', String(f.pid))).stdout.trim().split('\n');
  t.regex(threads[0]!, /^TID\s+NAME\s+STATE\s+FS_BASE/);
  const tids = threads.slice(1).map((l) => Number(l.split(/\s+/)[0]));
  t.deepEqual(tids, [...tids].sort((a, b) => a - b), 'sorted by tid');
  t.deepEqual(tids.map(String).sort(), Object.keys(expected).sort());
  t.true(threads.slice(1).every((l) => / attach\s+before attach\s*/.test(l)), 'threads that existed before the attach say so');
  const modules = (await tlsctl(socket, 'modules', String(f.pid))).stdout;
  t.regex(modules, /^ID\s+SIZE\s+ALIGN\s+INIT\s+STATIC_OFFSET\s+BASE\s+PATH\n/);
  t.regex(modules, /^1\s+\d+\s+\d+\s+\d+\s+\d+\s+0x[0-9a-f]+\s+\S+\/glibc-dynamic\/tls$/m);
  t.regex((await tlsctl(socket, 'symbols', String(f.pid), '--match', 'tls_ex')).stdout, /^tls_exe\s/m);
  const tooLong = await tlsctl(socket, 'tls', String(f.pid), 'tls_name', '--type', 'cstring', '--length', '99999999');
  t.is(tooLong.code, 1);
  t.regex(tooLong.stderr, /--length must be/, 'the CLI\'s option name, not the API\'s querystring/length');

  const read = JSON.parse((await tlsctl(socket, '--json', 'tls', String(f.pid), 'tls_exe')).stdout);
  t.deepEqual(Object.fromEntries(read.values.map((v: { tid: number; value: number }) => [v.tid, v.value])), expected);
  const found = (await tlsctl(socket, 'symbols', String(f.pid), 'tls_')).stdout;
  t.regex(found, /^NAME\s+TYPE\s+SIZE\s+MODULE\s+SYMBOL\n/);
  t.regex(found, /^tls_exe\s+int\s+4\s+\S+\/glibc-dynamic\/tls\s*$/m);
  t.notRegex(found, /^errno/m, 'only the names that match');
  const offset = JSON.parse((await tlsctl(socket, '--json', 'symbols', String(f.pid), 'tls_exe')).stdout).symbols[0].offset;
  const atOffset = JSON.parse((await tlsctl(socket, '--json', 'block', String(f.pid), 'tls', String(offset), '--type', 'i32')).stdout);
  t.deepEqual(Object.fromEntries(atOffset.values.map((v: { tid: number; value: number }) => [v.tid, v.value])), expected, 'by module and offset');
  const table = (await tlsctl(socket, 'tls', String(f.pid), 'tls_name', '--type', 'cstring')).stdout;
  t.regex(table, /^tls_name in .*\/tls \(cstring\)\nTID\s+ADDRESS\s+STATE\s+VALUE\n/);
  t.regex(table, /\bok\s+"thread-3"\n/);
  const one = JSON.parse((await tlsctl(socket, '--json', 'tls', String(f.pid), 'errno', '--tid', String(f.pid))).stdout);
  t.deepEqual(one.values.map((v: { value: number }) => v.value), [1]);

  const show = (await tlsctl(socket, 'show', String(f.pid))).stdout;
  t.regex(show, /^pid\s+\d+$/m);
  t.regex(show, /^libc\s+glibc$/m);
  t.regex((await tlsctl(socket, 'exits', String(f.pid))).stdout, /^TID\s+HOW\s+CODE/);
  t.regex((await tlsctl(socket, 'health')).stdout, /^status\s+ok$/m);

  const events = (await tlsctl(socket, '--json', 'events', '--pid', String(f.pid))).stdout.trim().split('\n').map((l) => JSON.parse(l));
  t.is(events.filter((e) => e.type === 'thread.created').length, 4);
  t.is(events.at(-1).type, 'process.attached');

  const detached = await tlsctl(socket, 'detach', String(f.pid));
  t.is(detached.code, 0);
  t.true(noThreadInTracingStop(f.pid));
  t.is((await tlsctl(socket, '--json', 'show', String(f.pid))).stdout.includes('"state": "detached"'), true);
});

test('events --follow prints what happens until interrupted', async (t) => {
  const { socket, client } = await startDaemon(t);
  const f = await Fixture.start(t, 'threads', ['1']);
  const follow = spawn(process.execPath, [tlsctlPath, '--socket', socket, 'events', '--follow', '--pid', String(f.pid)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => follow.kill('SIGKILL'));
  let out = '';
  follow.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const ended = new Promise<number | null>((r) => follow.once('exit', r));
  await new Promise((r) => setTimeout(r, 500)); // following before the attach
  await client.attach(f.pid);
  await client.detach(f.pid);
  await waitUntil('the detach event', () => out.includes('process.detached'));
  t.regex(out, new RegExp(`^\\d+\\s+\\S+ \\S+\\s+process\\.attached\\s+${f.pid}\\s`, 'm'));
  follow.kill('SIGINT');
  t.is(await ended, 0);
});

test('spawn runs the command here, with this environment and --env', async (t) => {
  const { socket } = await startDaemon(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'out');
  const r = await tlsctl(socket, 'spawn', '--cwd', dir, '--env', 'GREETING=hello', '--stdout', out, '--', 'sh', '-c', 'echo "$GREETING $PWD $HOME"');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^spawned \d+ \(sh -c /);
  await waitUntil('the output', () => readFileSync(out, 'utf8').includes('\n'));
  t.is(readFileSync(out, 'utf8'), `hello ${dir} ${process.env.HOME}\n`);
});

test('exit codes: 1 with the API\'s code on stderr, 2 for usage', async (t) => {
  const { socket } = await startDaemon(t);
  const unknown = await tlsctl(socket, 'show', '4194000');
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^tlsctl: NOT_FOUND: process 4194000 is not supervised$/m);
  const refused = await tlsctl(socket, 'attach', '1');
  t.is(refused.code, 1);
  t.regex(refused.stderr, /FORBIDDEN/);
  const noDaemon = await tlsctl(path.join(os.tmpdir(), 'no-tlsd-here.sock'), 'health');
  t.is(noDaemon.code, 1);
  t.regex(noDaemon.stderr, /UNREACHABLE: cannot reach tlsd at .*no-tlsd-here\.sock: ENOENT/);
  for (const args of [['show', 'abc'], ['frobnicate'], ['tls', '1'], ['tls', '1', 'x', '--type', 'i128'], ['ps', '--bogus']]) {
    const usage = await tlsctl(socket, ...args);
    t.is(usage.code, 2, args.join(' '));
    t.regex(usage.stderr, /error:/, args.join(' '));
  }
  t.is((await tlsctl(socket, '--help')).code, 0);
});

test('tlsd --help lists its options; an option it does not know is a usage error (2) with the list, not a stack trace', (t) => {
  const help = spawnSync(process.execPath, [daemonEntry, '--help'], { encoding: 'utf8', timeout: 20000 });
  t.is(help.status, 0);
  for (const option of ['--socket PATH', '--state-dir D', '--retain-mb N']) t.true(help.stdout.includes(option), option);
  const bad = spawnSync(process.execPath, [daemonEntry, '--sockett', '/tmp/x'], { encoding: 'utf8', timeout: 20000 });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /^tlsd: Unknown option '--sockett'/);
  t.true(bad.stderr.includes('--socket PATH'));
  t.notRegex(bad.stderr, /^\s+at /m, 'no stack trace');
});


test('the README\'s syscall rules: inject, trace, stats, rules, rules rm, spawn --inject --trace; bad specs in strace\'s words', async (t) => {
  const { socket, client } = await startDaemon(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-cli-syscalls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = await Fixture.start(t, 'workers', ['opener', '/etc/hostname'], [], /^1 \d+ /);
  t.is((await tlsctl(socket, 'attach', String(f.pid))).code, 0);

  // trace follows before the rule: it sees the injected failures.
  const trace = spawn(process.execPath, [tlsctlPath, '--socket', socket, 'trace', String(f.pid), '-e', 'trace=openat'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => trace.kill('SIGKILL'));
  let traced = '';
  trace.stdout.setEncoding('utf8').on('data', (s: string) => (traced += s));
  await waitUntil('trace to follow', async () => (await client.rules(f.pid)).length === 1);
  const inject = await tlsctl(socket, 'inject', String(f.pid), 'openat:error=ENOENT:when=1..3');
  t.is(inject.code, 0, inject.stderr);
  t.regex(inject.stdout, /^rule \d+ on \d+: openat:error=ENOENT:when=1\.\.3$/m);
  await waitUntil('three failures per thread in the trace', () => (traced.match(/openat\(.*"\/etc\/hostname".*= -1 ENOENT \(INJECTED\)/g) ?? []).length === 6 && traced);
  t.regex(traced, /^\[pid \d+\] openat\(0x[0-9a-f]+, "\/etc\/hostname", .*\) = \d+$/m);
  trace.kill('SIGINT');
  await new Promise((r) => trace.once('exit', r));
  const rules = await tlsctl(socket, 'rules', String(f.pid));
  t.regex(rules.stdout, /openat:error=ENOENT:when=1\.\.3/);
  t.notRegex(rules.stdout, /traced/, 'trace removed its rule when it stopped');
  const stats = await tlsctl(socket, 'stats', String(f.pid));
  t.regex(stats.stdout, /^% TIME\s+SECONDS\s+USECS\/CALL\s+CALLS\s+ERRORS\s+SYSCALL$/m);
  t.regex(stats.stdout, /^\S+\s+\S+\s+\d+\s+\d+\s+6\s+openat$/m);
  const id = (await client.rules(f.pid))[0]!.id;
  t.is((await tlsctl(socket, 'rules', 'rm', String(f.pid), String(id))).code, 0);
  t.deepEqual(await client.rules(f.pid), []);

  const spawned = await tlsctl(socket, 'spawn', '--stdout', path.join(dir, 'out'), '--inject', 'read:error=EIO:when=2+', '--trace', 'openat,read', '--', 'cat', '/etc/hostname');
  t.is(spawned.code, 0, spawned.stderr);
  const pid = Number(/^spawned (\d+)/.exec(spawned.stdout)![1]);
  await waitUntil('it to end', async () => (await client.process(pid)).state === 'exited');
  const log = await client.syscallLog(pid);
  t.true(log.records.some((r) => r.name === 'read' && r.error === 'EIO' && r.injected));

  // With the shim the rules are its engine's, unless --engine says otherwise.
  for (const [engine, args] of [['shim', []], ['ptrace', ['--engine', 'ptrace']]] as const) {
    const out = path.join(dir, `out-${engine}`);
    const r = await tlsctl(socket, 'spawn', '--shim', 'thread-pointer', ...args, '--stdout', out, '--inject', 'openat:error=ENOENT:when=2', '--', 'cat', '/etc/hostname');
    t.is(r.code, 0, r.stderr);
    const child = Number(/^spawned (\d+)/.exec(r.stdout)![1]);
    await waitUntil('it to end', async () => (await client.process(child)).state === 'exited');
    t.regex((await tlsctl(socket, 'rules', String(child))).stdout, new RegExp(`^\\d+\\s+${engine}\\s`, 'm'), engine);
    const stats = await client.syscallStats(child);
    t.is(stats.engine, engine);
    t.deepEqual(stats.syscalls.map((s) => s.name), ['openat']);
  }

  for (const [args, words] of [
    [['inject', '1', 'opnat:error=ENOENT'], /invalid system call 'opnat'/],
    [['inject', '1', 'openat:when=0'], /invalid inject argument 'when=0'/],
    [['inject', '1', 'openat'], /invalid inject argument 'openat'/],
    [['trace', '1', '-e', 'trace=%bogus'], /invalid system call '%bogus'/],
    [['spawn', '--inject', 'read:error=EIO:retval=1', '--', 'true'], /invalid inject argument/],
  ] as const) {
    const r = await tlsctl(socket, ...args);
    t.is(r.code, 2, args.join(' '));
    t.regex(r.stderr, words, args.join(' '));
  }
  t.true(noThreadInTracingStop(f.pid));
});

test('a cut output ends tlsctl quietly; cstrings are escaped as gdb does; events --descendants follows what a process forked', async (t) => {
  const { socket, client } = await startDaemon(t);
  // Asynchronously: the other tests of this file go on meanwhile.
  for (let i = 0; i < 50; i++) {
    const { stderr } = await run('sh', ['-c', `"${process.execPath}" "${tlsctlPath}" --socket "${socket}" ps | head -1`]);
    t.is(stderr, '', `run ${i}`);
  }
  t.is(cString('a\nb\t\x01\x1b"\\z'), '"a\\nb\\t\\001\\033\\"\\\\z"');

  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-cli-family-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p = await client.spawn({ argv: ['sh', '-c', 'sh -c "/bin/true; /bin/true"; /bin/true'], stdout: path.join(dir, 'o'), stderr: path.join(dir, 'e') });
  await waitUntil('it to end', async () => (await client.process(p.pid)).state === 'exited');
  const family = (await tlsctl(socket, '--json', 'events', '--pid', String(p.pid), '--descendants')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { pid: number; type: string });
  const pids = new Set(family.map((e) => e.pid));
  t.true(pids.size >= 3, `the shell, its child shell and the child's children: ${[...pids].join(', ')}`);
  t.is(family.filter((e) => e.type === 'process.exited').length, pids.size);
  const alone = (await tlsctl(socket, '--json', 'events', '--pid', String(p.pid))).stdout.trim().split('\n').map((l) => JSON.parse(l) as { pid: number });
  t.deepEqual([...new Set(alone.map((e) => e.pid))], [p.pid]);
  t.is((await tlsctl(socket, 'events', '--descendants')).code, 2);
});
