/* Syscall interposition, the daemon's side: each process's rules, the
 * counts and records sent back, and the live stream of records
 * (docs/syscalls.md). Rules go whole to the tracer, which matches them at
 * syscall stops (native/tracer/syscalls.c); those of the shim's engine
 * (native/shim/engine.c) go to the process's shim too, which applies them
 * in the process once the tracer hands them over (HANDOFF), until the
 * process's next exec. A running process's are in memory; when it ends
 * or is detached they move to the records (records/syscall-store.ts). */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { Logger } from 'pino';
import { TlsdError } from '../errors.js';
import type { ProcessRecord } from '../registry.js';
import type { TracerEvent, TracerReply } from '../tracer/client.js';
import type { ShimAnswer, ShimEngineNews, ShimRequestType } from '../shim/messages.js';
import type { SyscallStore } from '../records/syscall-store.js';
import type { TracerCommand } from '../tracer/protocol.js';
import { syscallFlags } from '../tracer/protocol.js';
import type { Pid, Tid } from '../types.js';
import { anyTrap, compileRule, errnoName, SHIM_MAX_RULES, shimCapable, syscallName, type CompiledRule, type Engine, type RuleInput } from './rule.js';

const { EBUSY } = os.constants.errno;

export type { Engine };

export interface Rule extends RuleInput {
  id: number;
  engine: Engine;
  createdAt: string;
}

export interface SyscallRecord {
  seq: number;
  pid: number;
  tid: number;
  name: string;
  nr: number;
  /** The six argument registers, as hex. */
  args: string[];
  /** What the program got; null for a call that never returns (exit_group). */
  retval: number | null;
  /** The errno name, when retval is -1..-4095 read as an error. */
  error?: string;
  durationNs: number;
  injected?: true;
  signaled?: true;
  delayed?: true;
  /** Its path argument, for a call that has one. */
  path?: string;
  at: string;
  rule: number;
}

export interface SyscallStats {
  engine: Engine;
  since?: string;
  syscalls: { name: string; nr: number; calls: number; errors: number; timeNs: number }[];
  threads: { tid: number; calls: number; errors: number }[];
}

/** The last this many records of each process are kept. */
export const DEFAULT_LOG_LIMIT = 100_000;

type Counts = { calls: number; errors: number; timeNs: number };
/** A traced call, from either engine. */
type Call = { pid: number; tid: number; nr: number; args: string[]; retval: bigint; durationNs: bigint; flags: number; path: string; atMs: number; rule: number };
/** What the records keep of a process that ended. */
interface Saved { rules: Rule[]; engine?: Engine; since?: string; syscalls: Array<[number, Counts]>; threads: Array<[number, Counts]>; droppedThrough: number }
type Request = (c: Extract<TracerCommand, { type: 'rules' | 'counts' | 'handoff' }> extends infer C ? C extends TracerCommand ? Omit<C, 'req'> : never : never) => Promise<TracerReply>;

/** The shims' side (shim/server.ts). */
export interface ShimPort {
  request(pid: Pid, type: ShimRequestType, fields?: object, after?: object[]): Promise<ShimAnswer>;
  tell(pid: Pid, lines: object[]): void;
  /** Whether the process has a shim that talks to tlsd. */
  connected(pid: Pid): boolean;
  /** Starts the engine of the process's shim, its filter trapping `trap`,
   * in every thread (the tracer's ENGINE): how many threads have the
   * filter (not known if the tracer died meanwhile), and why not all, if
   * not. */
  startEngine(pid: Pid, trap: Buffer): Promise<{ threads?: number; error?: TlsdError }>;
}

/** How long rules hold in a shim that tlsd no longer renews. */
export const DEFAULT_LEASE_MS = 5000;

/** A rule as the API has it, and as the tracer and the shim do. */
type CompiledPair = { rule: Rule; compiled: CompiledRule };

/** One process's rules, counts and records. */
class ProcessSyscalls {
  rules: CompiledPair[] = [];
  since?: string;
  readonly bySyscall = new Map<number, Counts>();
  readonly byThread = new Map<number, Counts>();
  /** Its records; past logLimit, the oldest are dropped (in chunks:
   * from firstKept() on is what is readable). */
  log: SyscallRecord[] = [];
  /** The seq of the last record dropped, 0 for none. */
  droppedThrough = 0;
  /** Rule changes one after the other: each sends the whole set. */
  changes: Promise<unknown> = Promise.resolve();
  /** Its spawn's rules are known (a spawn's shim may say hello first). */
  adopted = false;
  /** It ended; what it had is saved once `done`. */
  ending?: { serial: number; done: Promise<void> };
  /** Its shim's engine: the calls it traps; handedOff once it applies
   * the shim's rules (until the next exec). */
  engine?: { trap: Buffer; handedOff: boolean; at: number; held?: Call[]; partial?: boolean };
  /** Its shim's engine is started by a rule (ENGINE), not at its exec:
   * what the shim says of it is not a cue for a handoff. */
  engineByRule = false;
  /** What its shim said its engine traps, if it said so. */
  shimTrap?: Buffer;
}

function add(map: Map<number, Counts>, key: number, calls: number, errors: number, timeNs: number): void {
  const c = map.get(key) ?? { calls: 0, errors: 0, timeNs: 0 };
  c.calls += calls;
  c.errors += errors;
  c.timeNs += timeNs;
  map.set(key, c);
}

export class Interposition {
  private readonly byPid = new Map<Pid, ProcessSyscalls>();
  private nextRule = 1;
  private nextSeq = 1;
  private readonly live = new EventEmitter();

  private readonly leaseTimer: NodeJS.Timeout;

  constructor(
    private readonly request: Request, private readonly shims: ShimPort, private readonly store: SyscallStore, private readonly log: Logger,
    private readonly logLimit = DEFAULT_LOG_LIMIT, private readonly leaseMs = DEFAULT_LEASE_MS,
  ) {
    this.live.setMaxListeners(0);
    // Renewed well before it runs out: a third of it.
    this.leaseTimer = setInterval(() => this.renewLeases(), Math.max(50, Math.floor(leaseMs / 3))).unref();
  }

  close(): void {
    clearInterval(this.leaseTimer);
  }

  private of(pid: Pid): ProcessSyscalls {
    let s = this.byPid.get(pid);
    if (!s) this.byPid.set(pid, (s = new ProcessSyscalls()));
    return s;
  }

  /** Checks rules and gives them ids (a spawn's, before it starts).
   * `trap`: the calls the process's shim engine traps (or will), if it
   * has one: a rule the engine can apply is the engine's unless it asks
   * for the tracer. */
  compile(inputs: readonly RuleInput[], tidOk: (tid: number) => boolean, trap?: Buffer, shimRules = 0): CompiledPair[] {
    const createdAt = new Date().toISOString();
    return inputs.map((input) => {
      const compiled = compileRule(this.nextRule, input, tidOk);
      const why = !trap ? 'the process has no shim (spawn it with `shim`, or load one: attach with `shim`)'
        : shimRules >= SHIM_MAX_RULES ? `the shim's engine holds at most ${SHIM_MAX_RULES} rules` : shimCapable(compiled, trap);
      if (!why) shimRules++;
      if (input.engine === 'shim' && why) throw new TlsdError('INVALID_ARGUMENT', `engine shim: ${why}`);
      const engine: Engine = input.engine ?? (why ? 'ptrace' : 'shim');
      compiled.shim = engine === 'shim';
      return { rule: { id: this.nextRule++, ...input, engine, createdAt }, compiled };
    });
  }

  /** A spawned process's rules, which the tracer had in its SPAWN. A
   * command that ended before its spawn was answered here (all its news
   * can come in one read of the tracer's socket) has them added to what
   * the records kept. */
  adopt(p: ProcessRecord, rules: CompiledPair[]): void {
    if (!rules.length) return;
    if (p.state === 'running') return this.take(p.pid, rules);
    const saved = this.store.load<Saved>(p.serial) ?? { syscalls: [], threads: [], droppedThrough: 0 };
    this.store.save(p.serial, { ...saved, rules: rules.map((r) => r.rule), since: rules[0]!.rule.createdAt }, []);
  }

  private take(pid: Pid, rules: CompiledPair[]): void {
    const s = this.of(pid);
    s.rules = rules;
    s.since = rules[0]!.rule.createdAt;
    s.adopted = true;
    if (s.engine) void this.handOff(pid, s);
  }

  /** A forked child has its parent's rules (the tracer copied them). */
  inherit(child: Pid, parent: Pid): void {
    const from = this.byPid.get(parent);
    if (from?.rules.length) this.take(child, [...from.rules]);
  }

  private change(p: ProcessRecord, edit: (rules: ProcessSyscalls['rules']) => ProcessSyscalls['rules']): Promise<void> {
    if (p.state !== 'running') throw new TlsdError('GONE', `process ${p.pid} is ${p.state}: its rules can be read, not changed`);
    const s = this.of(p.pid);
    const run = s.changes.then(async () => {
      const rules = edit(s.rules);
      await this.tracerRules(p.pid, rules);
      s.rules = rules;
      s.since ??= new Date().toISOString();
      if (s.engine?.handedOff) await this.giveShim(p.pid, s.rules);
    });
    s.changes = run.catch(() => {});
    return run;
  }

  async addRule(p: ProcessRecord, input: RuleInput): Promise<Rule> {
    const s = this.byPid.get(p.pid);
    // A shim whose engine has not started yet can trap any call.
    const startsEngine = !s?.engine && this.shims.connected(p.pid);
    const trap = s?.engine?.trap ?? (startsEngine ? anyTrap() : undefined);
    let [made] = this.compile([input], (tid) => p.threads.has(tid as Tid), trap, s?.rules.filter((r) => r.compiled.shim).length);
    if (startsEngine && made!.compiled.shim) made = await this.withEngine(p, made!, input.engine === 'shim');
    else await this.change(p, (rules) => [...rules, made!]);
    this.log.info({ tracee: p.pid, rule: made!.rule.id, engine: made!.rule.engine }, 'syscall rule added');
    return made!.rule;
  }

  /** The first rule of the shim's engine in a running process: the shim
   * has the rules before any thread has the filter, and the tracer applies
   * them to the calls of the threads without it (per thread, ENGINE), so
   * that each call is either's, once. Once every thread has the filter,
   * the tracer hands the rules over (HANDOFF). If none could be given it,
   * the tracer keeps the rule, unless the shim's engine was `asked` for:
   * then there is none. If some could not, the engine is `partial`: the
   * tracer goes on with the others, and it is tried again after a tracer
   * restart (resend). */
  private withEngine(p: ProcessRecord, made: CompiledPair, asked: boolean): Promise<CompiledPair> {
    const s = this.of(p.pid);
    const run = s.changes.then(async () => {
      if (s.engine) throw new TlsdError('UNAVAILABLE', `the shim's engine of process ${p.pid} started meanwhile; try again`);
      s.engineByRule = true;
      const rules = [...s.rules, made];
      await this.giveShim(p.pid, rules);
      await this.tracerRules(p.pid, rules);
      s.rules = rules;
      s.since ??= made.rule.createdAt;
      const started = await this.shims.startEngine(p.pid, made.compiled.set);
      if (started.threads === 0) {
        // A spawn's engine, started at its exec, that said so meanwhile
        // (the tracer refuses ENGINE then): its handoff comes next.
        s.engineByRule = false;
        if (s.shimTrap && !s.engine) this.engineAtExec(p.pid, s);
        // The shim lets go first: a call is never both's.
        this.shims.tell(p.pid, [{ type: 'rules', id: 0, count: 0, lease: 0 }]);
        const instead = { rule: { ...made.rule, engine: 'ptrace' as const }, compiled: { ...made.compiled, shim: false } };
        s.rules = asked ? s.rules.filter((r) => r !== made) : s.rules.map((r) => (r === made ? instead : r));
        await this.tracerRules(p.pid, s.rules);
        if (asked) throw started.error;
        this.log.warn({ err: started.error, tracee: p.pid }, 'the shim\'s engine did not start: the tracer applies the rule');
        return instead;
      }
      s.engine = { trap: made.compiled.set, handedOff: true, at: Date.now(), partial: !!started.error };
      // Renewed from now on; the start may have taken longer than the
      // lease given with the rules.
      await this.shims.request(p.pid, 'lease', { lease: this.leaseMs });
      if (started.error) this.log.warn({ err: started.error, tracee: p.pid, threads: started.threads }, 'the shim\'s engine started in some threads only: the tracer applies the rules to the others');
      else await this.request({ type: 'handoff', pid: p.pid });
      return made;
    });
    s.changes = run.catch(() => {});
    return run;
  }

  async removeRule(p: ProcessRecord, id: number): Promise<void> {
    if (p.state !== 'running') throw new TlsdError('GONE', `process ${p.pid} is ${p.state}: its rules can be read, not changed`);
    if (!this.byPid.get(p.pid)?.rules.some((r) => r.rule.id === id)) throw new TlsdError('NOT_FOUND', `process ${p.pid} has no rule ${id}`);
    await this.change(p, (rules) => rules.filter((r) => r.rule.id !== id));
  }

  /** After a tracer restart: the new tracer is given every running
   * process's rules again. */
  async resend(p: ProcessRecord): Promise<void> {
    const s = this.byPid.get(p.pid);
    if (!s?.rules.length) return;
    try {
      // First: the shim has its rules already, and the new tracer must
      // never apply them too (a partial engine's: not in the threads
      // with its filter, which ENGINE tells it).
      const partial = s.engine?.partial;
      const complete = partial && !(await this.shims.startEngine(p.pid, s.engine!.trap)).error;
      if (s.engine?.handedOff && !partial) await this.request({ type: 'handoff', pid: p.pid });
      await this.change(p, (rules) => rules);
      if (complete) {
        s.engine!.partial = false;
        await this.request({ type: 'handoff', pid: p.pid });
      }
      // A handoff cut short before the shim had its rules: again, whole.
      if (s.engine && !s.engine.handedOff) await this.handOff(p.pid, s);
    } catch (e) {
      this.log.warn({ err: e, tracee: p.pid }, 'cannot give the tracer the rules again');
    }
  }

  /** A process that ended or was detached: what it had goes to the
   * records, and its pid may be another process's from now on. */
  ended(p: ProcessRecord, drained?: Promise<void>): void {
    const s = this.byPid.get(p.pid);
    if (!s || s.ending) return;
    const save = () => {
      this.release(s);
      if (this.byPid.get(p.pid) === s) this.byPid.delete(p.pid);
      this.store.save(p.serial, this.saved(s), s.log.slice(this.firstKept(s)));
    };
    if (!drained) {
      // Detached: its shim's engine lets its rules go at once, as the
      // tracer does (not at the end of their lease).
      if (s.engine?.handedOff) this.shims.tell(p.pid, [{ type: 'rules', id: 0, count: 0, lease: 0 }]);
      return save();
    }
    // What its shim sent last is still on its way (another socket than
    // the tracer's): kept until that socket has closed.
    s.ending = { serial: p.serial, done: drained.then(save) };
  }

  /** Its records are complete: a process that ended has its shim's last
   * news read. */
  async settled(p: ProcessRecord): Promise<void> {
    const s = this.byPid.get(p.pid);
    if (s?.ending?.serial === p.serial) await s.ending.done;
  }

  /** Where the last logLimit records begin in the log (it is trimmed in
   * chunks, so it may hold a few more). */
  private firstKept(s: ProcessSyscalls): number {
    return Math.max(0, s.log.length - this.logLimit);
  }

  /** The seq of the last record no longer kept, 0 for none. */
  private droppedThrough(s: ProcessSyscalls): number {
    const first = this.firstKept(s);
    return first > 0 ? s.log[first - 1]!.seq : s.droppedThrough;
  }

  private saved(s: ProcessSyscalls): Saved {
    return {
      rules: s.rules.map((r) => r.rule), engine: this.engineOf(s), ...(s.since ? { since: s.since } : {}), syscalls: [...s.bySyscall], threads: [...s.byThread],
      droppedThrough: this.droppedThrough(s),
    };
  }

  /** A running process's, from memory (its whole log, read from
   * firstKept on); else what the records kept. */
  private state(p: ProcessRecord): { saved: Saved; live?: ProcessSyscalls } | undefined {
    const live = this.byPid.get(p.pid);
    const s = p.state === 'running' || live?.ending?.serial === p.serial ? live : undefined;
    if (s) return { saved: this.saved(s), live: s };
    const saved = this.store.load<Saved>(p.serial);
    return saved ? { saved } : undefined;
  }

  rules(p: ProcessRecord): Rule[] {
    return this.state(p)?.saved.rules ?? [];
  }

  async stats(p: ProcessRecord): Promise<SyscallStats> {
    await this.settled(p);
    // What the tracer and the shim counted and did not send yet comes
    // before their answers.
    const s = p.state === 'running' ? this.byPid.get(p.pid) : undefined;
    if (s?.rules.length) {
      await Promise.all([
        this.request({ type: 'counts', pid: p.pid }).catch(() => {}),
        s.engine?.handedOff ? this.shims.request(p.pid, 'counts').catch(() => {}) : undefined,
      ]);
    }
    const saved = this.state(p)?.saved;
    return {
      engine: saved?.engine ?? 'ptrace',
      ...(saved?.since ? { since: saved.since } : {}),
      syscalls: (saved?.syscalls ?? []).sort(([a], [b]) => a - b).map(([nr, c]) => ({ name: syscallName(nr), nr, ...c })),
      threads: (saved?.threads ?? []).sort(([a], [b]) => a - b).map(([tid, c]) => ({ tid, calls: c.calls, errors: c.errors })),
    };
  }

  /** Records after `since` (a seq), at most `limit`, oldest first;
   * `dropped` when some after `since` are no longer kept. */
  records(p: ProcessRecord, since = 0, limit = DEFAULT_LOG_LIMIT): { records: SyscallRecord[]; dropped: boolean } {
    const state = this.state(p);
    const dropped = since < (state?.saved.droppedThrough ?? 0);
    if (!state?.live) return { records: this.store.records<SyscallRecord>(p.serial, since, limit), dropped };
    const { log } = state.live;
    // seq grows along the log: find the first after `since` by halving.
    let lo = this.firstKept(state.live), hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (log[mid]!.seq <= since) lo = mid + 1;
      else hi = mid;
    }
    return { records: log.slice(lo, lo + limit), dropped };
  }

  /** Every record of a process (or of all), as it comes. */
  subscribe(listener: (r: SyscallRecord) => void): () => void {
    this.live.on('record', listener);
    return () => this.live.off('record', listener);
  }

  /** What the tracer sends: counts and traced calls. */
  apply(m: Extract<TracerEvent, { type: 'syscall' | 'syscallCount' }>): void {
    const s = this.of(m.pid);
    if (m.type === 'syscallCount') {
      add(s.bySyscall, m.nr, m.calls, m.errors, Number(m.timeNs));
      add(s.byThread, m.tid, m.calls, m.errors, Number(m.timeNs));
      return;
    }
    this.keep(s, { pid: m.pid, tid: m.tid, nr: m.nr, args: m.args.map((a) => '0x' + a.toString(16)), retval: m.retval, durationNs: m.durationNs, flags: m.flags, path: m.path, atMs: Number(m.at / 1_000_000n), rule: m.rule });
  }

  /** What a shim's engine sends. */
  fromShim(pid: Pid, m: ShimEngineNews): void {
    const s = this.of(pid);
    switch (m.type) {
      case 'engine':
        s.shimTrap = Buffer.from(m.trap, 'hex');
        if (!s.engineByRule) this.engineAtExec(pid, s);
        return;
      case 'sysc': return add(s.bySyscall, m.nr, m.calls, m.errors, m.timeNs);
      case 'syst': return add(s.byThread, m.tid, m.calls, m.errors, 0);
      case 'syscall': {
        const record: Call = { pid, tid: m.tid, nr: m.nr, args: m.args, retval: BigInt(m.retval), durationNs: BigInt(m.durationNs), flags: m.flags, path: m.path ?? '', atMs: Math.floor(m.atNs / 1e6), rule: m.rule };
        if (s.engine?.held) s.engine.held.push(record);
        else this.keep(s, record);
      }
    }
  }

  /** The calls the shim recorded while the tracer's answer to the handoff
   * was on its way, after what the tracer recorded before (the spawn's
   * execve): in the order they were made. */
  private release(s: ProcessSyscalls): void {
    const held = s.engine?.held ?? [];
    if (s.engine) s.engine.held = undefined;
    for (const record of held) this.keep(s, record);
  }

  /** The process exec'd (at `at`): a shim engine of the image before is
   * gone, and the tracer has its rules again. */
  exec(pid: Pid, at: number): void {
    const s = this.byPid.get(pid);
    if (s?.engine && s.engine.at < at) s.engine = undefined;
    if (s) Object.assign(s, { engineByRule: false, shimTrap: undefined });
  }

  /** The shim's engine started at a spawn's exec (it said so). */
  private engineAtExec(pid: Pid, s: ProcessSyscalls): void {
    s.engine = { trap: s.shimTrap!, handedOff: false, at: Date.now() };
    void this.handOff(pid, s);
  }

  /** The shim's engine is up, its process kept at its exec by the
   * tracer: the shim gets the rules it can apply, then the tracer stops
   * applying them and lets the program start (HANDOFF). If the shim
   * cannot take them, the tracer keeps them all. */
  private handOff(pid: Pid, s: ProcessSyscalls): Promise<void> {
    const run = s.changes.then(async () => {
      const engine = s.engine;
      if (!engine || !s.adopted || engine.handedOff) return;
      // A rule the engine's filter does not trap stays the tracer's.
      const shim = (r: ProcessSyscalls['rules'][number], ok: boolean) => ({ ...r, compiled: { ...r.compiled, shim: ok && r.rule.engine === 'shim' && !shimCapable(r.compiled, engine.trap) } });
      const rules = s.rules.map((r) => shim(r, true));
      try {
        if (rules.some((r, i) => r.compiled.shim !== s.rules[i]!.compiled.shim)) await this.request({ type: 'rules', pid, rules: rules.map((r) => r.compiled) });
        s.rules = rules;
        await this.giveShim(pid, s.rules);
      } catch (e) {
        this.log.warn({ err: e, tracee: pid }, 'the shim did not take its rules: the tracer keeps them');
        s.rules = s.rules.map((r) => shim(r, false));
        await this.request({ type: 'rules', pid, rules: s.rules.map((r) => r.compiled) });
      }
      // Before the answer: the process may end in the same read of the
      // tracer's socket as the answer.
      engine.handedOff = true;
      engine.held = [];
      try {
        await this.request({ type: 'handoff', pid });
      } finally {
        this.release(s);
      }
    });
    s.changes = run.catch((e) => this.log.warn({ err: e, tracee: pid }, 'cannot hand the rules to the shim'));
    return s.changes as Promise<void>;
  }

  /** The rules, whole, to the tracer. */
  private async tracerRules(pid: Pid, rules: readonly CompiledPair[]): Promise<void> {
    const reply = await this.request({ type: 'rules', pid, rules: rules.map((r) => r.compiled) });
    if (reply.errno === EBUSY) {
      throw new TlsdError('ALREADY_TRACED', `process ${pid} is traced by another program (a debugger?): its shim has every rule, so tlsd let go of it, and a rule tlsd's tracer applies needs it back; detach the other program, or ask for the shim engine`);
    }
    if (reply.errno !== 0) throw new TlsdError('GONE', `process ${pid} has ended`);
  }

  /** The shim's rules, whole, to the shim. */
  private async giveShim(pid: Pid, rules: readonly CompiledPair[]): Promise<void> {
    const mine = rules.filter((r) => r.compiled.shim).map((r) => r.compiled);
    const lines = mine.map((c) => ({
      type: 'rule', rule: c.id, set: c.set.toString('hex'), fault: c.fault, value: BigInt.asUintN(64, c.value),
      signal: c.signal, first: c.first, last: c.last, step: c.step, trace: c.trace ? 1 : 0, enter: c.delayEnterUs, exit: c.delayExitUs,
      tids: c.tids.join(','), path: Buffer.from(c.path).toString('hex'),
      paths: [...c.pathArgs].flatMap((arg, nr) => (arg ? [`${nr}:${arg}`] : [])).join(','),
    }));
    const answer = await this.shims.request(pid, 'rules', { count: lines.length, lease: this.leaseMs }, lines);
    if (answer.type !== 'rules') throw new TlsdError('UNAVAILABLE', `the shim of process ${pid} refused its rules`);
  }

  /** What applies the process's rules now: its shim's engine once it has
   * taken some. */
  private engineOf(s: ProcessSyscalls): Engine {
    return s.engine?.handedOff && s.rules.some((r) => r.compiled.shim) ? 'shim' : 'ptrace';
  }

  private renewLeases(): void {
    for (const [pid, s] of this.byPid) if (s.engine?.handedOff) this.shims.tell(pid, [{ type: 'lease', id: 0, lease: this.leaseMs }]);
  }

  private keep(s: ProcessSyscalls, m: Call): void {
    const noReturn = (m.flags & syscallFlags.noReturn) !== 0;
    const retval = noReturn ? null : Number(BigInt.asIntN(64, m.retval));
    const error = retval !== null && retval < 0 && retval >= -4095 ? errnoName(-retval) ?? `errno ${-retval}` : undefined;
    const record: SyscallRecord = {
      seq: this.nextSeq++, pid: m.pid, tid: m.tid, name: syscallName(m.nr), nr: m.nr,
      args: m.args, retval, ...(error ? { error } : {}),
      durationNs: Number(m.durationNs),
      ...(m.flags & syscallFlags.injected ? { injected: true as const } : {}),
      ...(m.flags & syscallFlags.signaled ? { signaled: true as const } : {}),
      ...(m.flags & syscallFlags.delayed ? { delayed: true as const } : {}),
      ...(m.path ? { path: m.path } : {}),
      at: new Date(m.atMs).toISOString(), rule: m.rule,
    };
    s.log.push(record);
    if (s.log.length > this.logLimit * 1.25) {
      s.droppedThrough = this.droppedThrough(s);
      s.log = s.log.slice(this.firstKept(s));
    }
    this.live.emit('record', record);
  }
}
