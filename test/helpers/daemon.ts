/* A real tlsd daemon for a test: `node dist/bin/tlsd.js` on a socket
 * of its own, stopped (or found already dead) at teardown. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Value } from 'typebox/value';
import { Event } from '../../api/schemas.js';
import { TlsdClient, TlsdError, type TlsdEvent } from '../../clients/client.js';
import { daemonEntry } from '../../daemon/paths.js';
import { killPid, waitUntil } from './fixture.js';

export interface TestDaemon {
  child: ChildProcess;
  client: TlsdClient;
  socket: string;
  dir: string;
}

/** `args` are more daemon flags (--http, --attach-allow, ...). The
 * records are in `stateDir`, by default a directory of this daemon's own. */
export async function startDaemon(t: ExecutionContext, args: string[] = [], opts: { socket?: string; stateDir?: string; env?: Record<string, string> } = {}): Promise<TestDaemon> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-test-'));
  const socket = opts.socket ?? path.join(dir, 'tlsd.sock');
  const stateDir = opts.stateDir ?? path.join(dir, 'state');
  const child = spawn(process.execPath, [daemonEntry, '--socket', socket, '--state-dir', stateDir, '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'inherit', 'inherit'], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  const exited = new Promise((r) => child.once('exit', r));
  const client = new TlsdClient({ socket });
  t.teardown(async () => {
    const running = () => child.exitCode === null && child.signalCode === null;
    try {
      if (running()) await checkEvents(client);
    } finally {
      if (running()) {
        child.kill('SIGTERM'); // detaches every tracee
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
        killPid(child.pid!);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
  await waitUntil('the daemon to answer', () => client.health().catch(() => undefined));
  return { child, client, socket, dir };
}

/** Every event the daemon kept is one its schema describes (daemon/events.ts):
 * checked after every test that ran a daemon. */
async function checkEvents(client: TlsdClient): Promise<void> {
  const recent = (): Promise<TlsdEvent[]> => client.recentEvents().catch(async (e: unknown) => {
    if (e instanceof TlsdError && e.code === 'UNREACHABLE') return []; // a test stopped it
    // A test of the rate limit spent this second's budget.
    if (e instanceof TlsdError && e.code === 'RATE_LIMITED') return new Promise((r) => setTimeout(() => r(recent()), 1100));
    throw e;
  });
  const events = await recent();
  for (const e of events) {
    if (!Value.Check(Event, e)) throw new Error(`event ${JSON.stringify(e)} is not as its schema says: ${JSON.stringify([...Value.Errors(Event, e)].slice(0, 3))}`);
  }
}

/** Waits until the daemon has seen the process end; returns its record. */
export function processEnd(client: TlsdClient, pid: number) {
  return waitUntil(`process ${pid} to end`, async () => {
    const p = await client.process(pid);
    return p.state === 'exited' ? p : undefined;
  });
}
