/* The daemon's domain, composed: the tracer (kept running by
 * tracer/keeper.ts), the registry its messages build, the records it
 * keeps, the shims, TLS reads; and what the API asks of them: attach,
 * spawn, detach, forget. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getSystemErrorName } from 'node:util';
import type { Logger } from 'pino';
import { attachError, attachThreads, preflightAttach } from './attach.js';
import { AttachPolicy } from './attach-policy.js';
import { EventBus } from './event-bus.js';
import { TlsdError } from './errors.js';
import { FsBases } from './fs-base.js';
import { openDatabase } from './records/database.js';
import { Records } from './records/records.js';
import { Retention, type RetentionPolicy } from './records/retention.js';
import { Registry, type ProcessRecord, type ThreadRecord } from './registry.js';
import { GoRuntime } from './go.js';
import { hasInjectionMappings, injectionError, injectionOf, injectRequest, type ShimRequest } from './shim/injection.js';
import { shimLibrary } from './paths.js';
import { ShimServer, type ShimConnection } from './shim/server.js';
import { prepareSpawn, type SpawnRequest } from './spawn-request.js';
import { Interposition } from './syscalls/interposition.js';
import { anyTrap } from './syscalls/rule.js';
import { TlsReader } from './tls/tls-reader.js';
import type { TracerReply } from './tracer/client.js';
import { TracerKeeper, type TracerRequest } from './tracer/keeper.js';
import { asPid, formatAddress, type Pid, type Tid } from './types.js';

export interface SupervisorOptions {
  tracerPath: string;
  /** Where spawned processes' output goes when the request names no file. */
  outputDir: string;
  log: Logger;
  /** Default: the daemon's own uid, no allowlist. */
  policy?: AttachPolicy;
  /** Where spawned processes' shims connect; default: in a new temporary directory. */
  shimSocket?: string;
  /** Where the records are kept (records/database.ts), or VOLATILE. */
  stateDir: string;
  retention?: RetentionPolicy;
  /** Syscall records kept per process (default DEFAULT_LOG_LIMIT). */
  syscallLogLimit?: number;
  /** How long rules hold in a shim's engine that the daemon no longer renews. */
  shimLeaseMs?: number;
}

const { ESRCH } = os.constants.errno;
/** How long a detach with kill waits for the process to be reaped. */
const KILL_WAIT_MS = 5000;
/** How long an injected shim's agent may take to connect. */
const HELLO_WAIT_MS = 5000;

export class Supervisor {
  readonly bus: EventBus;
  readonly records: Records;
  readonly registry: Registry;
  /** Where a records file SQLite could not read was moved, if one was. */
  readonly recordsKeptAside: string | undefined;
  private readonly retention: Retention;
  readonly tls: TlsReader;
  readonly shims: ShimServer;
  readonly fsBases: FsBases;
  readonly syscalls: Interposition;
  readonly go: GoRuntime;
  readonly startedAt = Date.now();
  private tracer!: TracerKeeper;
  private readonly attaching = new Set<Pid>();
  private readonly injecting = new Set<Pid>();
  private spawnCount = 0;
  private readonly log: Logger;
  private readonly policy: AttachPolicy;
  /** The shims' socket's directory, when this supervisor made it. */
  private readonly shimTempDir?: string;

  private constructor(private readonly opts: SupervisorOptions) {
    this.log = opts.log.child({ component: 'supervisor' });
    this.policy = opts.policy ?? new AttachPolicy();
    const { db, file, keptAside } = openDatabase(opts.stateDir, opts.log.child({ component: 'records' }));
    this.recordsKeptAside = keptAside;
    this.records = new Records(db, file, opts.log.child({ component: 'records' }));
    this.bus = new EventBus(this.records.lastEventId);
    this.bus.subscribe((e) => this.records.event(e)); // first: every other listener sees a kept event
    this.registry = new Registry(this.bus, this.records, this.records.beginRun(process.pid), opts.log.child({ component: 'registry' }));
    this.registry.settleEarlierRuns(new Date());
    this.retention = new Retention(db, this.records, opts.retention ?? {}, this.registry, opts.log.child({ component: 'retention' }));
    this.fsBases = new FsBases((c) => this.request(c));
    this.go = new GoRuntime(opts.log.child({ component: 'go' }));
    this.syscalls = new Interposition(
      (c) => this.request(c),
      {
        request: (...a) => this.shims.request(...a), tell: (pid, lines) => this.shims.tell(pid, lines),
        connected: (pid) => { const c = this.shims.get(pid); return !!c?.socket && !c.socket.destroyed && !c.forkedFrom; },
        startEngine: (pid, trap) => this.startEngine(pid, trap),
      },
      this.records.syscalls, opts.log.child({ component: 'syscalls' }), opts.syscallLogLimit, opts.shimLeaseMs,
    );
    this.tls = new TlsReader({ getProcess: (pid) => this.getProcess(pid), refreshFsBase: (t) => this.fsBases.refresh(t) }, opts.log.child({ component: 'tls' }));
    if (!opts.shimSocket) this.shimTempDir = mkdtempSync(path.join(os.tmpdir(), 'tlsd-shim-'));
    this.shims = new ShimServer(
      opts.shimSocket ?? path.join(this.shimTempDir!, 'shim.sock'),
      this.registry, this.bus, opts.log.child({ component: 'shim' }), (pid) => void this.tellTracerShim(pid),
      (pid, news) => this.syscalls.fromShim(pid, news),
    );
    this.records.shimFate = (p, x) => this.shims.settleFate(p, x);
    this.bus.subscribe((e) => {
      if (e.type === 'process.exec') this.syscalls.exec(asPid(e.data.pid), Date.parse(e.at));
      if (e.type === 'process.detached') this.syscalls.ended(this.getProcess(asPid(e.data.pid)));
      if (e.type !== 'process.exited') return;
      this.records.flush(); // its threads' slot fates, while the shim is known
      const pid = asPid(e.data.pid);
      const drained = this.shims.closed(pid);
      this.shims.ended(pid);
      this.syscalls.ended(this.getProcess(pid), drained);
    });
  }

  static async start(opts: SupervisorOptions): Promise<Supervisor> {
    const s = new Supervisor(opts);
    s.tracer = await TracerKeeper.start(opts.tracerPath, opts.log.child({ component: 'tracer' }), {
      onEvent: (e) => {
        if (e.type === 'syscall' || e.type === 'syscallCount') return s.syscalls.apply(e);
        s.registry.apply(e);
        if (e.type === 'processNew' && e.inheritsShim) s.shims.inherit(e.pid, e.parentPid);
        if (e.type === 'processNew' && e.origin !== 'attach' && e.origin !== 'spawn') s.syscalls.inherit(e.pid, e.parentPid);
      },
      onLost: (at) => s.registry.tracerLost(at),
      onRestarted: () => s.reattachAll(),
    });
    await s.shims.listen();
    s.retention.start();
    return s;
  }

  get tracerPid(): Pid | undefined { return this.tracer.pid; }
  get tracerRestarts(): number { return this.tracer.restarts; }

  private request(command: TracerRequest): Promise<TracerReply> {
    return this.tracer.request(command);
  }

  /** After a tracer restart: every process that was running is attached
   * again, and its shim table given to the new tracer. */
  private async reattachAll(): Promise<void> {
    for (const p of this.registry.list()) {
      if (p.state !== 'running' || !this.tracer.running) continue;
      this.registry.beginReattach(p);
      let ok = false;
      try {
        const { errno } = await attachThreads((c) => this.request(c), this.registry, p.pid, this.log);
        ok = errno === 0;
        if (!ok) this.log.warn({ tracee: p.pid, errno: getSystemErrorName(-errno) }, 're-attach failed: the process is taken for ended');
      } catch (e) {
        this.log.warn({ err: e, tracee: p.pid }, 're-attach failed');
      }
      this.registry.endReattach(p, ok, new Date());
      const leftovers = ok ? await this.tidy(p.pid) : undefined;
      if (leftovers && p.attach) {
        p.attach.leftovers = leftovers;
        this.registry.changed(p);
      }
      this.log.info({ tracee: p.pid, ok }, 're-attached after tracer restart');
      const shim = this.shims.get(p.pid);
      if (shim) {
        shim.reclaiming = false; // the new tracer knows nothing yet
        if (ok) await this.tellTracerShim(p.pid);
      }
      if (ok) await this.syscalls.resend(p);
    }
  }

  getProcess(pid: Pid): ProcessRecord {
    const p = this.registry.get(pid);
    if (!p) throw new TlsdError('NOT_FOUND', `process ${pid} is not supervised`);
    return p;
  }

  /** Attaches; with `shim`, injects it too, and on failure detaches again
   * (the process is left as it was found) and throws the injection's error. */
  async attach(pid: Pid, shim?: ShimRequest): Promise<{ process: ProcessRecord; reply: TracerReply }> {
    const attached = await this.attachOnly(pid);
    if (!shim) return attached;
    try {
      await this.injectShim(pid, shim);
    } catch (e) {
      if (this.shims.get(pid)) throw e; // loaded, and stays: the agent is late
      await this.detach(pid).catch(() => {});
      throw e;
    }
    return attached;
  }

  private async attachOnly(pid: Pid): Promise<{ process: ProcessRecord; reply: TracerReply }> {
    preflightAttach(pid, {
      policy: this.policy, tracerPid: this.tracerPid,
      supervised: (q) => this.registry.get(q)?.state === 'running' || this.attaching.has(q),
    });
    // An earlier daemon's tracer, killed during an injection, may have
    // left mappings in a process it supervised (this one is then in the
    // records, unsupervised): looked for only then, since reading
    // /proc/PID/maps costs about a millisecond per thousand threads.
    const supervisedBefore = this.registry.get(pid)?.state === 'unsupervised';
    this.attaching.add(pid);
    try {
      const reply = await attachThreads((c) => this.request(c), this.registry, pid, this.log);
      if (reply.errno !== 0) throw attachError(pid, reply.errno);
      const p = this.getProcess(pid);
      const leftovers = supervisedBefore ? await this.tidy(pid) : undefined;
      p.attach = {
        passes: reply.passes, threads: reply.threads, longestStopNs: reply.value, interrupted: reply.interrupted, ...(leftovers ? { leftovers } : {}),
      };
      this.registry.changed(p);
      this.bus.publish('process.attached', { ...this.registry.summary(p), threads: p.threads.size });
      this.log.info({ tracee: pid, threads: reply.threads, passes: reply.passes }, 'attached');
      return { process: p, reply };
    } finally {
      this.attaching.delete(pid);
    }
  }

  async spawn(req: SpawnRequest): Promise<ProcessRecord> {
    // With the shim, rules the shim's engine can apply are its own: the
    // engine starts at the exec, its filter trapping their calls.
    const rules = this.syscalls.compile(req.syscalls ?? [], () => false, req.shim ? anyTrap() : undefined);
    const trap = unionOf(rules.filter((r) => r.compiled.shim).map((r) => r.compiled.set));
    const prepared = prepareSpawn(req, {
      policy: this.policy, outputDir: this.opts.outputDir, shimSocket: this.shims.socketPath,
      outputName: `${Date.now()}-${process.pid}-${++this.spawnCount}`, ...(trap ? { trap } : {}),
    });
    const killWithDaemon = req.killWithDaemon ?? false;
    const reply = await this.tracer.answer({ type: 'spawn', ...prepared, killWithDaemon, rules: rules.map((r) => r.compiled) });
    // INJECTED comes at its exec, REPLY with the errno of an exec that failed.
    if (reply.type === 'injected' && reply.errno !== 0) throw injectionError(reply.pid, reply);
    if (reply.errno !== 0) throw new TlsdError('INVALID_ARGUMENT', `cannot start ${req.argv[0]}: ${getSystemErrorName(-reply.errno)}`);
    if (reply.type === 'injected') this.shims.injected(reply.pid, injectionOf(reply));
    const p = this.getProcess(reply.pid);
    this.syscalls.adopt(p, rules);
    const { stdout, stderr } = prepared;
    Object.assign(p, { stdout, stderr, ...(killWithDaemon ? { killWithDaemon } : {}) });
    this.registry.changed(p);
    this.bus.publish('process.spawned', { ...this.registry.summary(p), stdout, stderr });
    return p;
  }

  /** Starts the syscall engine of a running process's shim (the tracer
   * gives each thread the filter): how many threads have it, and why not
   * every one, if not. A tracer that died meanwhile may have given some
   * the filter: it is tried again (Interposition.resend). */
  private async startEngine(pid: Pid, trap: Buffer): Promise<{ threads?: number; error?: TlsdError }> {
    try {
      const answer = await this.tracer.inject({ type: 'engine', pid, shimPath: shimLibrary, trap });
      const error = answer.errno !== 0 ? injectionError(pid, answer, 'start the shim\'s engine in') : undefined;
      this.log.info({ tracee: pid, threads: answer.interrupted, longestStopUs: Number(answer.stoppedNs / 1000n), err: error }, 'shim engine started');
      return { threads: answer.interrupted, ...(error ? { error } : {}) };
    } catch (e) {
      if (!(e instanceof TlsdError) || e.code !== 'UNAVAILABLE') throw e;
      return { error: e }; // how many threads have the filter is not known
    }
  }

  /** Loads the shim into a supervised process and starts it: answered
   * once the shim's agent said hello. */
  async injectShim(pid: Pid, req: ShimRequest): Promise<ShimConnection> {
    const p = this.getProcess(pid);
    if (p.state !== 'running') throw new TlsdError('GONE', `process ${pid} is ${p.state}`);
    if (this.shims.get(pid) || this.injecting.has(pid)) throw new TlsdError('SHIM_LOADED', `process ${pid} has the shim already`);
    this.injecting.add(pid);
    const { hello, cancel } = this.shims.whenHello(pid, HELLO_WAIT_MS, 'injected');
    try {
      const answer = await this.tracer.inject({ type: 'inject', pid, ...injectRequest(req, this.shims.socketPath) });
      if (answer.errno !== 0) {
        cancel();
        throw injectionError(pid, answer);
      }
      this.shims.injected(pid, injectionOf(answer));
      this.log.info({ tracee: pid, base: formatAddress(answer.base), tid: answer.tid, stoppedUs: Number(answer.stoppedNs / 1000n) }, 'shim injected');
      return await hello;
    } catch (e) {
      cancel();
      throw e;
    } finally {
      this.injecting.delete(pid);
    }
  }

  /** Removes what a tracer killed during an injection left in a process
   * just attached (a stub page, a shim that never started), and says so;
   * undefined when it removed nothing. */
  private async tidy(pid: Pid): Promise<{ removed: number; startedShims: number } | undefined> {
    if (!hasInjectionMappings(pid)) return undefined;
    try {
      const r = await this.request({ type: 'tidy', pid, shimPath: shimLibrary });
      if (r.threads === 0) return undefined;
      const found = { removed: r.threads, startedShims: r.passes };
      this.log.warn({ tracee: pid, ...found, errno: r.errno }, 'an earlier injection left mappings in this process: those never used were removed');
      return found;
    } catch (e) {
      this.log.warn({ err: e, tracee: pid }, 'cannot remove what an earlier injection left');
      return undefined;
    }
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

  /** Detaches a process and, unless `keepChildren`, the processes
   * followed from it (its forks, theirs, ...), which are returned. With
   * `kill`, ends that one process instead. */
  async detach(pid: Pid, opts: { kill?: boolean; keepChildren?: boolean } = {}): Promise<{ process: ProcessRecord; descendants: ProcessRecord[] }> {
    const p = this.getProcess(pid);
    if (p.state !== 'running') throw new TlsdError('GONE', `process ${pid} is ${p.state === 'unsupervised' ? 'no longer supervised' : `already ${p.state}`}`);
    const kill = opts.kill ?? false;
    if (p.killWithDaemon && !kill) {
      throw new TlsdError('KILLS_WITH_DAEMON', `process ${pid} was started with killWithDaemon: its syscall pre-filter would make calls fail without tlsd, so it is never detached (?kill=true ends it)`);
    }
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
      const ended = this.records.hasExit(p, tid);
      throw new TlsdError(ended ? 'GONE' : 'NOT_FOUND', `thread ${tid} of process ${pid} ${ended ? 'has exited' : 'is not known'}`);
    }
    return { process: p, thread: t };
  }

  /** Detaches every tracee (the tracer does it when its socket closes). */
  /** Detaches every tracee (the tracer does it when its socket closes),
   * then commits the records. */
  async close(): Promise<void> {
    this.syscalls.close();
    this.shims.close();
    this.retention.stop();
    if (this.shimTempDir) rmSync(this.shimTempDir, { recursive: true, force: true });
    await this.tracer?.close();
    this.records.close();
  }

  /** For tests of crash safety: kill the tracer helper outright. */
  killTracer(): void {
    this.tracer.kill();
  }
}

/** The calls any of the sets select; undefined for none. */
function unionOf(sets: Buffer[]): Buffer | undefined {
  if (!sets.length) return undefined;
  const u = Buffer.alloc(sets[0]!.length);
  for (const set of sets) for (let i = 0; i < u.length; i++) u[i]! |= set[i]!;
  return u;
}
