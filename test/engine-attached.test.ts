/* The shim's syscall engine started in a running process that tlsd
 * attached to (native/tracer/engine.c): every thread but the shim's agent
 * is given the filter one by one, while the program runs. Expected values
 * are known by construction (test/fixtures/syscalls/engine.c). */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, noThreadInTracingStop, waitUntil } from './helpers/fixture.js';

function scratch(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-engine-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** How many of pid's threads have a seccomp filter, as /proc counts. */
function filteredThreads(pid: number): number {
  const filters = (tid: string) => Number(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/^Seccomp_filters:\s+(\d+)/m)?.[1] ?? 0);
  return readdirSync(`/proc/${pid}/task`).filter((tid) => filters(tid) > 0).length;
}

/** The engine fixture's `threads N K GO` mode, started alone: N threads
 * print their tid, wait for GO, then each calls getppid K times. */
async function waitingThreads(t: ExecutionContext, fixture: string, n: number, k: number) {
  const go = path.join(scratch(t), 'go');
  const f = await Fixture.start(t, fixture, ['threads', String(n), String(k), go], [], /^tid \d+ fs/);
  const tids = await waitUntil(`${n} threads`, () => {
    const found = f.out.all.flatMap((l) => l.match(/^tid (\d+) fs/)?.[1] ?? []).map(Number);
    return found.length === n ? found : undefined;
  });
  return { f, tids, go: () => writeFileSync(go, '') };
}

for (const [kind, fixture] of [['glibc-dynamic', 'engine'], ['musl-static', 'musl-static/engine']] as const) {
  test(`${kind}: attached, the shim injected, a rule starts the engine in each running thread; the counts are exact per thread`, async (t) => {
    const d = await startDaemon(t);
    const { f, tids, go } = await waitingThreads(t, fixture, 20, 50);
    await d.client.attach(f.pid, { mode: 'thread-pointer' });
    const rule = await d.client.addRule(f.pid, { syscalls: ['getppid'], retval: 42 });
    t.is(rule.engine, 'shim');
    t.is((await d.client.syscallStats(f.pid)).engine, 'shim');
    // Every thread but the agent: the workers and the main thread.
    t.is(filteredThreads(f.pid), tids.length + 1);
    t.true(noThreadInTracingStop(f.pid));
    go();
    t.is(await f.exited(), 0);
    for (const tid of tids) t.true(f.out.all.includes(`${tid} got 42`), `thread ${tid}: ${f.out.all.join('|')}`);
    const stats = await d.client.syscallStats(f.pid);
    t.deepEqual(stats.syscalls.map((c) => [c.name, c.calls]), [['getppid', 1000]]);
    t.deepEqual(stats.threads.map((th) => [th.tid, th.calls]), [...tids].sort((a, b) => a - b).map((tid) => [tid, 50]));
  });
}
