/* Crash safety of an injection (docs/shim.md "Injection"): the tracer
 * SIGKILLed when an injection reaches each of its steps (the tracer's test
 * hook TLSD_TRACER_DIE_AT_INJECT_STEP), and the daemon SIGKILLed while one
 * is under way. The target, with threads in hostile states, finishes its
 * work correctly every time; what may stay behind is only a named
 * mapping. */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { TlsdError } from '../clients/client.js';
import { injectSteps } from '../daemon/tracer/protocol.js';
import { startDaemon } from './helpers/daemon.js';
import { Fixture, waitUntil } from './helpers/fixture.js';

const HOSTILE_OUTPUT = [
  'ready', 'main kept its ymm registers across its read', 'reader got data', 'sleeper slept full', 'waiter woke', 'vector kept', 'signals all received',
];

/** Each thread's blocked signals (proc(5) SigBlk), by tid. */
function masks(pid: number): Map<number, string> {
  return new Map(readdirSync(`/proc/${pid}/task`).map((tid) => [Number(tid), readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').match(/SigBlk:\s+(\w+)/)![1]!]));
}

/** What /proc/PID/maps shows of an injection: only named mappings. */
function leftovers(pid: number): string[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => /tlsshim/.test(l)).map((l) => l.split(/\s+/).slice(5).join(' '));
}

// Steps 1 (borrow) to 7 (cleanup): the tracer dies as the step begins.
for (const step of injectSteps.slice(1, -1)) {
  // One at a time: each target keeps a CPU busy and takes thousands of
  // signals, and eight at once on two CPUs starve the rest of the suite.
  test.serial(`the tracer killed as an injection reaches step ${step}: the target finishes its work correctly`, async (t) => {
    const marker = path.join(mkdtempSync(path.join(os.tmpdir(), 'tlsd-hook-')), 'died');
    t.teardown(() => rmSync(path.dirname(marker), { recursive: true, force: true }));
    const d = await startDaemon(t, [], { env: { TLSD_TRACER_DIE_AT_INJECT_STEP: `${injectSteps.indexOf(step)}:${marker}` } });
    const f = await Fixture.start(t, 'inject-hostile', ['2'], [], /^ready$/);
    const started = Date.now();
    await d.client.attach(f.pid);
    const before = masks(f.pid);
    const e = await t.throwsAsync(d.client.injectShim(f.pid, { mode: 'tid' }));
    t.true(e instanceof TlsdError && e.code === 'UNAVAILABLE', String(e));
    // The borrowed thread puts its own mask back as it resumes (the
    // sleeper may have ended meanwhile, and an agent thread begun).
    const same = () => {
      const now = masks(f.pid);
      return [...before].filter(([tid]) => now.has(tid)).every(([tid, mask]) => now.get(tid) === mask);
    };
    await waitUntil('every thread\'s own signal mask', same, 3000).catch(() => t.deepEqual(masks(f.pid), before));
    // What stays is named; once the daemon has attached again, what was
    // never used is removed, and the shim can be injected (unless it had
    // started: then it said hello, and is the process's shim).
    for (const m of leftovers(f.pid)) t.regex(m, /^(\/memfd:tlsshim \(deleted\)|\[anon:tlsshim-stub\])$/);
    // The attach again says what it removed: the stub page from step
    // memfd on, and from step image on the shim's span, unless it had
    // started (step cleanup).
    const at = injectSteps.indexOf(step);
    const removed = (at >= injectSteps.indexOf('memfd') ? 1 : 0) + (at >= injectSteps.indexOf('image') && step !== 'cleanup' ? 1 : 0);
    const again = await waitUntil('the daemon to attach again', () => d.client.process(f.pid).then((p) =>
      p.gaps.length > 0 && p.gaps.every((g) => g.to) && (removed === 0 || p.attach?.leftovers) && p));
    t.is(again.attach?.leftovers?.removed ?? 0, removed);
    if (step === 'cleanup') t.is(again.attach?.leftovers?.startedShims, 1);
    if (step === 'cleanup') {
      await waitUntil('the started shim\'s hello', () => d.client.shim(f.pid).then((s) => s.loaded));
      await t.throwsAsync(d.client.injectShim(f.pid, { mode: 'tid' }), { message: /SHIM_LOADED/ });
    } else {
      await waitUntil('what was left to be removed', () => leftovers(f.pid).length === 0);
      t.like(await d.client.injectShim(f.pid, { mode: 'tid' }), { loaded: true, loadedBy: 'injected' });
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 2300 - (Date.now() - started))));
    f.send('finish');
    t.is(await f.exited(), 0, f.out.all.join('\n'));
    t.deepEqual(f.out.all, HOSTILE_OUTPUT);
  });
}

test.serial('the daemon SIGKILLed while an injection is under way: the tracer completes it or rolls it back, the target finishes correctly', async (t) => {
  for (const delayMs of [0, 1, 3]) {
    const d = await startDaemon(t);
    const f = await Fixture.start(t, 'inject-hostile', ['2'], [], /^ready$/);
    const started = Date.now();
    await d.client.attach(f.pid);
    const injecting = d.client.injectShim(f.pid, { mode: 'tid' }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, delayMs));
    d.child.kill('SIGKILL');
    await injecting;
    await waitUntil('the tracer to let the target go', () => !/TracerPid:\s+[1-9]/.test(readFileSync(`/proc/${f.pid}/status`, 'utf8')));
    await new Promise((r) => setTimeout(r, Math.max(0, 2300 - (Date.now() - started))));
    f.send('finish');
    t.is(await f.exited(), 0, f.out.all.join('\n'));
    t.deepEqual(f.out.all, HOSTILE_OUTPUT, `daemon killed ${delayMs} ms into the injection`);
  }
});
