/* The daemon's core: starts the tracer (and restarts it if it dies), keeps
 * the registry, and answers what the API asks. */
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getSystemErrorName } from 'node:util';
import type { Logger } from 'pino';
import { AttachPolicy } from './attach-policy.js';
import { EventBus } from './event-bus.js';
import { TlsdError } from './errors.js';
import { mayTraceAnything, readExe, readStatus, readTaskIds } from './procfs.js';
import { Registry, type ProcessRecord, type ThreadRecord } from './registry.js';
import { readTcb, tcbIsCurrent, type Tcb } from './tcb.js';
import { ShimServer } from './shim/server.js';
import { loadElf } from './tls/elf-cache.js';
import { TlsReader } from './tls/tls-reader.js';
import { shimLibrary } from './paths.js';
import { readThreadList } from './thread-list/thread-list.js';
import { TracerClient, TracerGoneError, type TracerReply } from './tracer/client.js';
import { asAddress, asPid, type Address, type Pid, type ShimMode, type Tid } from './types.js';

export interface SupervisorOptions {
  tracerPath: string;
  /** Where spawned processes' output goes when the request names no file. */
  outputDir: string;
  log: Logger;
  /** Default: the daemon's own uid, no allowlist. */
  policy?: AttachPolicy;
  /** Where spawned processes' shims connect; default: in a new temporary directory. */
  shimSocket?: string;
}

export interface SpawnRequest {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  stdout?: string;
  stderr?: string;
  /** Load libtlsshim with LD_PRELOAD, in this mode. */
  shim?: { mode: ShimMode };
}

const ESRCH = 3;
const EPERM = 1;
const EEXIST = 17;
const RESTART_DELAYS_MS = [0, 100, 500, 1000, 5000];
const KILL_WAIT_MS = 5000;

export class Supervisor {
  readonly bus = new EventBus();
  readonly registry: Registry;
  readonly tls: TlsReader;
  readonly shims: ShimServer;
  readonly startedAt = Date.now();
  tracerRestarts = 0;
  private tracer?: TracerClient;
  private closing = false;
  private readonly inFlight = new Set<Pid>();
  private spawnCount = 0;
  private readonly log: Logger;
  private readonly policy: AttachPolicy;
  /** The shims' socket's directory, when this supervisor made it. */
  private readonly shimTempDir?: string;

  private constructor(private readonly opts: SupervisorOptions) {
    this.log = opts.log.child({ component: 'supervisor' });
    this.policy = opts.policy ?? new AttachPolicy();
    this.registry = new Registry(this.bus, opts.log.child({ component: 'registry' }));
    this.tls = new TlsReader(this, opts.log.child({ component: 'tls' }));
    if (!opts.shimSocket) this.shimTempDir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-shim-'));
    this.shims = new ShimServer(
      opts.shimSocket ?? path.join(this.shimTempDir!, 'shim.sock'),
      this.registry, this.bus, opts.log.child({ component: 'shim' }), (pid) => void this.tellTracerShim(pid),
    );
  }

  static async start(opts: SupervisorOptions): Promise<Supervisor> {
    const s = new Supervisor(opts);
    await s.startTracer();
    await s.shims.listen();
    return s;
  }

  get tracerPid(): Pid | undefined { return this.tracer?.running ? this.tracer.pid : undefined; }

  private async startTracer(): Promise<void> {
    this.tracer = await TracerClient.start(
      this.opts.tracerPath, this.opts.log.child({ component: 'tracer' }),
      (e) => {
        this.registry.apply(e);
        if (e.type === 'processNew' && e.inheritsShim) this.shims.inherit(e.pid, e.parentPid);
      },
      (why) => this.tracerExited(why),
    );
    this.log.info({ tracerPid: this.tracer.pid }, 'tracer started');
  }

  private tracerExited(why: string): void {
    if (this.closing) return;
    this.log.error({ why }, 'tracer died; the kernel detached its tracees; restarting it');
    this.registry.tracerLost(new Date());
    void this.restartTracer();
  }

  /** Starts a new tracer and re-attaches every process that was running. */
  private async restartTracer(): Promise<void> {
    this.tracerRestarts++;
    for (let attempt = 0; !this.closing; attempt++) {
      const delay = RESTART_DELAYS_MS[Math.min(attempt, RESTART_DELAYS_MS.length - 1)] ?? 0;
      await new Promise((r) => setTimeout(r, delay));
      try {
        await this.startTracer();
        break;
      } catch (e) {
        this.log.error({ err: e, attempt }, 'tracer restart failed');
      }
    }
    for (const p of this.registry.list()) {
      if (p.state !== 'running' || !this.tracer) continue;
      this.registry.beginReattach(p);
      let ok = false;
      try {
        ok = (await this.attachThreads(p.pid)).errno === 0;
      } catch (e) {
        this.log.warn({ err: e, tracee: p.pid }, 're-attach failed');
      }
      this.registry.endReattach(p, ok, new Date());
      this.log.info({ tracee: p.pid, ok }, 're-attached after tracer restart');
      const shim = this.shims.get(p.pid);
      if (shim) {
        shim.reclaiming = false; // the new tracer knows nothing yet
        if (ok) await this.tellTracerShim(p.pid);
      }
    }
  }

  private requireTracer(): TracerClient {
    if (!this.tracer?.running) throw new TlsdError('UNAVAILABLE', 'the tracer helper is restarting; try again shortly');
    return this.tracer;
  }

  private async request(command: Parameters<TracerClient['request']>[0]): Promise<TracerReply> {
    try {
      return await this.requireTracer().request(command);
    } catch (e) {
      if (e instanceof TracerGoneError) throw new TlsdError('UNAVAILABLE', 'the tracer helper died during the request; try again');
      throw e;
    }
  }

  getProcess(pid: number): ProcessRecord {
    const p = this.registry.get(asPid(pid));
    if (!p) throw new TlsdError('NOT_FOUND', `process ${pid} is not supervised`);
    return p;
  }

  /** docs/ptrace.md "Attach", step 1: refuse what must not be traced. */
  private preflight(pid: Pid): void {
    if (pid === 1) throw new TlsdError('FORBIDDEN', 'pid 1 (init) is never traced');
    if (pid === process.pid) throw new TlsdError('FORBIDDEN', `pid ${pid} is the tlsd daemon itself`);
    if (pid === this.tracerPid) throw new TlsdError('FORBIDDEN', `pid ${pid} is tlsd's own tracer`);
    let status;
    try {
      status = readStatus(pid);
    } catch {
      throw new TlsdError('NOT_FOUND', `no process ${pid}`);
    }
    if (status.kernelThread) throw new TlsdError('FORBIDDEN', `pid ${pid} is a kernel thread`);
    if (status.tgid !== pid) throw new TlsdError('INVALID_ARGUMENT', `${pid} is a thread of process ${status.tgid}, not a process`);
    this.policy.checkAttach(pid, status.uid, readExe(pid));
    if (this.registry.get(pid)?.state === 'running' || this.inFlight.has(pid)) {
      throw new TlsdError('ALREADY_TRACED', `process ${pid} is already supervised by tlsd (tracer pid ${this.tracerPid})`);
    }
    if (status.tracerPid !== 0) throw new TlsdError('ALREADY_TRACED', `process ${pid} is already traced by pid ${status.tracerPid}`);
  }

  async attach(pid: Pid): Promise<{ process: ProcessRecord; reply: TracerReply }> {
    this.preflight(pid);
    this.inFlight.add(pid);
    try {
      const reply = await this.attachThreads(pid);
      if (reply.errno !== 0) throw this.attachError(pid, reply.errno);
      const p = this.getProcess(pid);
      p.attach = { passes: reply.passes, threads: reply.threads, longestStopNs: reply.value, interrupted: reply.interrupted };
      this.bus.publish('process.attached', { ...this.registry.summary(p), threads: p.threads.size });
      this.log.info({ tracee: pid, threads: reply.threads, passes: reply.passes }, 'attached');
      return { process: p, reply };
    } finally {
      this.inFlight.delete(pid);
    }
  }

  /** Seizes every thread without stopping one, then gives the tracer the
   * thread pointers the C library's own list accounts for: only the others
   * are interrupted (native/tracer/attach.c). */
  private async attachThreads(pid: Pid): Promise<TracerReply> {
    const seized = await this.request({ type: 'attach', pid });
    if (seized.errno !== 0) return seized;
    return this.request({ type: 'settle', pid, threadPointers: this.threadList(pid) });
  }

  private threadList(pid: Pid): Map<Tid, Address> {
    const p = this.registry.get(pid);
    if (!p) return new Map();
    try {
      return readThreadList(pid, p.exe, p, readTaskIds(pid));
    } catch (e) {
      this.log.debug({ err: e, tracee: pid }, 'no thread list: every thread is read at a stop');
      return new Map();
    }
  }

  private attachError(pid: Pid, errno: number): TlsdError {
    const exited = new TlsdError('NOT_FOUND', `process ${pid} exited before it could be attached`);
    if (errno === ESRCH) return exited;
    if (errno === EEXIST) return new TlsdError('ALREADY_TRACED', `process ${pid} is already supervised by tlsd`);
    if (errno === EPERM) {
      // The kernel refuses to seize a thread that is exiting with EPERM
      // too: that is not a matter of permission.
      let status;
      try { status = readStatus(pid); } catch { return exited; }
      if (status.tracerPid) return new TlsdError('ALREADY_TRACED', `process ${pid} is already traced by pid ${status.tracerPid}`);
      if (status.exiting || mayTraceAnything()) return new TlsdError('NOT_FOUND', `process ${pid} is exiting: there is nothing left to attach`);
      return new TlsdError('FORBIDDEN', `not permitted to trace process ${pid} (needs root or CAP_SYS_PTRACE)`);
    }
    return new TlsdError('INTERNAL', `attach to ${pid} failed: ${getSystemErrorName(-errno)}`);
  }

  async spawn(req: SpawnRequest): Promise<ProcessRecord> {
    const cwd = req.cwd ?? process.cwd();
    if (!isDirectory(cwd)) throw new TlsdError('INVALID_ARGUMENT', `cwd ${cwd} is not a directory`);
    const given = req.env ?? (process.env as Record<string, string>);
    const program = resolveExecutable(req.argv[0] ?? '', cwd, given.PATH ?? '/usr/local/bin:/usr/bin:/bin');
    this.policy.checkSpawn(program);
    const env = req.shim ? this.withShim(program, given, req.shim.mode) : given;
    const name = `${Date.now()}-${process.pid}-${++this.spawnCount}`;
    mkdirSync(this.opts.outputDir, { recursive: true, mode: 0o700 });
    const stdout = path.resolve(cwd, req.stdout ?? path.join(this.opts.outputDir, `${name}.stdout`));
    const stderr = path.resolve(cwd, req.stderr ?? path.join(this.opts.outputDir, `${name}.stderr`));
    const reply = await this.request({
      type: 'spawn', path: program, argv: req.argv, env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      cwd, stdout, stderr,
    });
    if (reply.errno !== 0) {
      throw new TlsdError('INVALID_ARGUMENT', `cannot start ${req.argv[0]}: ${getSystemErrorName(-reply.errno)}`);
    }
    const p = this.getProcess(reply.pid);
    Object.assign(p, { stdout, stderr });
    this.bus.publish('process.spawned', { ...this.registry.summary(p), stdout, stderr });
    return p;
  }

  /** Tells the tracer where a process's shim table is, so that it frees
   * the slot of every thread that ends holding one (native/tracer/shim.c).
   * Threads that end before this are not reclaimed. */
  private async tellTracerShim(pid: Pid): Promise<void> {
    const shim = this.shims.get(pid);
    if (!shim) return;
    try {
      const reply = await this.request({ type: 'shim', pid, table: shim.hello.table });
      shim.reclaiming = reply.errno === 0;
      if (reply.errno !== 0) this.log.warn({ tracee: pid, errno: reply.errno }, 'the tracer did not take the shim table');
    } catch (e) {
      this.log.warn({ err: e, tracee: pid }, 'cannot give the tracer the shim table; dead threads\' slots will not be reclaimed');
    }
  }

  /** What became of a thread's shim slot (the exit ledger's `shim`), or
   * undefined for a process without a shim. */
  shimFate(p: ProcessRecord, tid: Tid): 'reclaimed' | 'released' | 'none' | undefined {
    const shim = this.shims.get(p.pid);
    if (!shim) return undefined;
    if (p.shimReclaimed?.has(tid)) return 'reclaimed';
    return shim.claimedBy.has(tid) ? 'released' : 'none';
  }

  /** The environment that makes the dynamic linker load libtlsshim and
   * tells the shim where tlsd listens. */
  private withShim(program: string, env: Record<string, string>, mode: ShimMode): Record<string, string> {
    let interp;
    try {
      interp = loadElf(program).interp;
    } catch (e) {
      throw new TlsdError('INVALID_ARGUMENT', `cannot load the shim into ${program}: ${(e as Error).message}`);
    }
    if (!interp) throw new TlsdError('INVALID_ARGUMENT', `${program} is static: LD_PRELOAD needs a dynamic linker to load the shim`);
    const preload = env.LD_PRELOAD ? `${shimLibrary}:${env.LD_PRELOAD}` : shimLibrary;
    return { ...env, LD_PRELOAD: preload, TLSSHIM_MODE: mode, TLSSHIM_SOCKET: this.shims.socketPath };
  }

  /** Detaches a process and, unless `keepChildren`, the processes
   * followed from it (its forks, theirs, ...), which are returned. With
   * `kill`, ends that one process instead. */
  async detach(pid: Pid, opts: { kill?: boolean; keepChildren?: boolean } = {}): Promise<{ process: ProcessRecord; descendants: ProcessRecord[] }> {
    const p = this.getProcess(pid);
    if (p.state !== 'running') throw new TlsdError('GONE', `process ${pid} is already ${p.state}`);
    const kill = opts.kill ?? false;
    const exited = kill ? this.whenExited(p) : undefined;
    const detachedBefore = new Set(this.registry.descendants(pid).filter((q) => q.state === 'detached'));
    const reply = await this.request({ type: 'detach', pid, kill, keepChildren: opts.keepChildren ?? false });
    if (reply.errno === ESRCH) throw new TlsdError('GONE', `process ${pid} has exited`);
    if (reply.errno !== 0) throw new TlsdError('UNAVAILABLE', `process ${pid} is busy (${getSystemErrorName(-reply.errno)}); try again`);
    await exited;
    // The tracer sent each one's news before its answer, a child forked
    // during the detach included.
    const descendants = kill ? [] : this.registry.descendants(pid).filter((q) => q.state === 'detached' && !detachedBefore.has(q));
    return { process: p, descendants };
  }

  private whenExited(p: ProcessRecord): Promise<void> {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); stop(); resolve(); };
      const stop = this.bus.subscribe((e) => { if (e.type === 'process.exited' && e.data.pid === p.pid) done(); });
      const timer = setTimeout(done, KILL_WAIT_MS);
    });
  }

  getThread(pid: Pid, tid: Tid): { process: ProcessRecord; thread: ThreadRecord } {
    const p = this.getProcess(pid);
    const t = p.threads.get(tid);
    if (!t) {
      const ended = p.exits.some((x) => x.tid === tid);
      throw new TlsdError(ended ? 'GONE' : 'NOT_FOUND', `thread ${tid} of process ${pid} ${ended ? 'has exited' : 'is not known'}`);
    }
    return { process: p, thread: t };
  }

  /** Threads whose FS base is not known yet (0 after an exec, until the
   * program sets it without a stop) are asked for it. */
  async refreshUnknownFsBases(p: ProcessRecord): Promise<void> {
    const unknown = [...p.threads.values()].filter((t) => t.fsBase === 0n);
    await Promise.all(unknown.map((t) => this.refreshFsBase(t).catch(() => undefined)));
  }

  async refreshFsBase(t: ThreadRecord): Promise<void> {
    const reply = await this.request({ type: 'refresh', tid: t.tid });
    if (reply.errno === 0) Object.assign(t, { fsBase: asAddress(reply.value), fsBaseSource: 'refresh' });
  }

  /** docs/architecture.md invariant 3: the TCB self pointer must name the cached
   * thread pointer; if not, interrupt the thread briefly and read again. */
  async threadTcb(p: ProcessRecord, t: ThreadRecord): Promise<Tcb | undefined> {
    const attempt = (): Tcb | undefined => {
      if (t.fsBase === 0n) return undefined;
      try {
        const tcb = readTcb(p.pid, t.fsBase);
        return tcbIsCurrent(tcb, t.fsBase) ? tcb : undefined;
      } catch {
        return undefined;
      }
    };
    const tcb = attempt();
    if (tcb) return tcb;
    await this.refreshFsBase(t).catch(() => undefined);
    return attempt();
  }

  /** Detaches every tracee (the tracer does it when its socket closes). */
  async close(): Promise<void> {
    this.closing = true;
    this.shims.close();
    if (this.shimTempDir) rmSync(this.shimTempDir, { recursive: true, force: true });
    await this.tracer?.close();
  }

  /** For tests of crash safety: kill the tracer helper outright. */
  killTracer(): void {
    this.tracer?.kill();
  }
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** execvp(3)'s search, done here so a bad name is a clear 400. */
function resolveExecutable(name: string, cwd: string, searchPath: string): string {
  if (!name) throw new TlsdError('INVALID_ARGUMENT', 'argv[0] is empty');
  const candidates = name.includes('/') ? [path.resolve(cwd, name)] : searchPath.split(':').map((d) => path.resolve(cwd, d || '.', name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch { /* next */ }
  }
  throw new TlsdError('INVALID_ARGUMENT', `executable not found: ${name}`);
}
