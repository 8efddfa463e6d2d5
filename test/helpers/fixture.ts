/* Fixture programs (test/fixtures/*.c) run as real processes; every one a
 * test starts is killed by pid when the test ends, however it ends. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { packageRoot } from '../../daemon/paths.js';
import { statFields } from '../../daemon/procfs.js';

export const fixturePath = (name: string) => path.join(packageRoot, 'test', 'fixtures', 'build', name);

/** Every process whose parent is `pid`, and theirs, read from /proc. */
export function descendantsOf(pid: number): number[] {
  const children: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const ppid = statFields(readFileSync(`/proc/${name}/stat`, 'utf8'))[4 - 1];
      if (Number(ppid) === pid) children.push(Number(name));
    } catch { /* gone */ }
  }
  return children.flatMap((c) => [...descendantsOf(c), c]);
}

/** True once a process has ended: gone from /proc, or a zombie (the
 * reaper of an orphan may take its time, and kill(pid, 0) still finds a
 * zombie). */
export function processEnded(pid: number): boolean {
  try {
    return /^[ZX]$/.test(statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[3 - 1]!);
  } catch {
    return true;
  }
}

export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch { /* already gone */ }
}

/** Polls `check` until it returns a value other than undefined/false. */
export async function waitUntil<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface ThreadReport {
  index: number;
  tid: number;
  fsBase: string;
  value: number;
}

/** Lines a fixture printed, from its stdout pipe or from a file. */
export class Lines {
  readonly all: string[] = [];

  add(text: string): void {
    this.all.push(...text.split('\n').filter((l) => l !== ''));
  }

  async waitFor(re: RegExp, from = 0, timeoutMs = 20000): Promise<RegExpMatchArray> {
    return waitUntil(`a line matching ${re}`, () => {
      for (const line of this.all.slice(from)) {
        const m = line.match(re);
        if (m) return m;
      }
      return undefined;
    }, timeoutMs);
  }

  /** The "thread I TID FSBASE VALUE" lines of the threads fixture. */
  threads(): ThreadReport[] {
    return this.all.flatMap((line) => {
      const m = line.match(/^thread (\d+) (\d+) (0x[0-9a-f]+) (\d+)$/);
      return m ? [{ index: Number(m[1]), tid: Number(m[2]), fsBase: m[3]!, value: Number(m[4]) }] : [];
    });
  }
}

export class Fixture {
  readonly out = new Lines();
  private readonly extraPids = new Set<number>();

  private closed = false;

  private constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => this.out.add(s));
    child.once('close', () => { this.closed = true; });
  }

  /** Starts a fixture and waits for its "ready" line. */
  static async start(t: ExecutionContext, name: string, args: string[] = [], prefix: string[] = [], ready = /^ready \d+/): Promise<Fixture> {
    const argv = [...prefix, fixturePath(name), ...args];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
    const f = new Fixture(child);
    t.teardown(() => f.kill());
    await f.out.waitFor(ready);
    return f;
  }

  /** Resolves with the fixture's exit code once it ended and all it
   * printed was read. */
  exited(): Promise<number | null> {
    const { child } = this;
    if (this.closed) return Promise.resolve(child.exitCode);
    return new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /** The fixture's own pid (not that of a wrapper such as strace). */
  get pid(): number {
    const m = this.out.all.map((l) => l.match(/^ready (\d+)/)).find(Boolean);
    return Number(m?.[1] ?? this.child.pid);
  }

  send(command: string): void {
    this.child.stdin!.write(command + '\n');
  }

  /** Also kill this pid at teardown (a child the fixture forked). */
  owns(pid: number): void {
    this.extraPids.add(pid);
  }

  /** Kills the fixture, what it forked, and what the test said it owns;
   * closes its pipes, which an orphan could otherwise keep open. */
  kill(): void {
    const roots = [this.pid, ...(this.child.pid ? [this.child.pid] : [])];
    for (const pid of [...this.extraPids, ...roots.flatMap(descendantsOf)]) killPid(pid);
    for (const pid of roots) killPid(pid);
    this.child.stdin?.destroy();
    this.child.stdout?.destroy();
  }
}

/** Scheduler state letters of every thread of a process (proc(5)). */
export function taskStates(pid: number): Map<number, string> {
  const states = new Map<number, string>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch { /* gone */ }
  for (const tid of tids) {
    try {
      states.set(Number(tid), statFields(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'))[3 - 1]!);
    } catch { /* exited meanwhile */ }
  }
  return states;
}

/** A numeric field of /proc/PID/task/TID/status ("TracerPid",
 * "Seccomp_filters") for every thread of a process; threads that end
 * meanwhile are left out. */
export function taskStatus(pid: number, field: string): Map<number, number> {
  const values = new Map<number, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch { /* gone */ }
  const line = new RegExp(`^${field}:\\s+(\\d+)$`, 'm');
  for (const tid of tids) {
    try {
      values.set(Number(tid), Number(line.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))![1]));
    } catch { /* exited meanwhile */ }
  }
  return values;
}

/** A new directory, removed after the test. */
export function scratchDir(t: ExecutionContext, prefix = 'tlsd-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function tracerPidOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(status.match(/^TracerPid:\s*(\d+)/m)?.[1]);
}

/** True once no thread of the process is stopped by a tracer ('t'). */
export const noThreadInTracingStop = (pid: number): boolean => ![...taskStates(pid).values()].includes('t');
