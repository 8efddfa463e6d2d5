#!/usr/bin/env node
/* tlsctl: the command line of tlsd. Every command is one or two calls of
 * the typed client (client.ts); this file is only arguments and output.
 *
 * Exit codes: 0 ok, 1 the API (or the connection) failed — the message and
 * the error code on stderr —, 2 a usage error. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { valueTypes } from '../daemon/tls/values.js';
import { version } from '../daemon/paths.js';
import { exitHows, processStates, type ExitHow, type ProcessState } from '../daemon/types.js';
import { parseInjectSpec, parseTraceSet, type Engine, type RuleInput } from '../daemon/syscalls/rule.js';
import { pathArg } from '../daemon/syscalls/table.js';
import { TlsdClient, type Process, type Shim, type SyscallRecord, type TlsdEvent, type TlsRead } from './client.js';
import { cString, JsonListWriter, printFields, printTable, shortTime, TableWriter } from './text-output.js';

const stdout = process.stdout;
const stderr = process.stderr;
/** Aborted when whoever reads our output has gone (`tlsctl trace 1 | head`):
 * a command that follows stops then, tidily, and nothing more is printed. */
const readerGone = new AbortController();
stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
  readerGone.abort();
});

interface GlobalOptions { socket?: string; http?: string; tokenFile?: string; json?: boolean }

function positiveInteger(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError('not a positive integer');
  return Number(text);
}

/** A repeatable --tid. */
function tidList(text: string, previous: number[] = []): number[] {
  return [...previous, positiveInteger(text)];
}

function nonNegativeInteger(text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError('not a number');
  return Number(text);
}

function exitCode(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 255) throw new InvalidArgumentError('not an exit code (0-255)');
  return Number(text);
}

function keyValue(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = text.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected KEY=VALUE');
  return { ...previous, [text.slice(0, eq)]: text.slice(eq + 1) };
}

/** strace's -e inject= and -e trace= strings: a bad one is a usage error,
 * in strace's words. */
function straceSyntax<T>(parse: (text: string) => T) {
  return (text: string, previous: T[] = []): T[] => {
    try {
      return [...previous, parse(text)];
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}
/** What applies a rule (docs/syscalls.md): by default the shim's engine
 * when the process has it and it can, else the tracer. */
const engineOption = () => new Option('--engine <engine>', 'what applies the rules: shim (the shim\'s engine, in a process with the shim: spawned with --shim, or attached with it) or ptrace (the tracer)').choices(['shim', 'ptrace']);
const injectSpec = straceSyntax(parseInjectSpec);
const traceSet = straceSyntax(parseTraceSet);

const program = new Command('tlsctl')
  .description('control tlsd: attach to processes, list their threads, read their thread-local storage')
  .version(version)
  .option('--socket <path>', 'the daemon\'s Unix socket (default TLSD_SOCKET, then /run/tlsd/tlsd.sock)')
  .option('--http <host:port>', 'use the daemon\'s TCP listener instead (default TLSD_HTTP)')
  .option('--token-file <file>', 'bearer token for --http (default TLSD_TOKEN_FILE, then /run/tlsd/token)')
  .option('--json', 'machine output: the API\'s JSON (events: one JSON object per line)')
  .showHelpAfterError('(tlsctl --help lists the commands and options)')
  .exitOverride();

function context(command: Command): { client: TlsdClient; json: boolean } {
  const g = command.optsWithGlobals<GlobalOptions>();
  const client = new TlsdClient({
    ...(g.socket !== undefined ? { socket: g.socket } : {}),
    ...(g.http !== undefined ? { http: g.http } : {}),
    ...(g.tokenFile !== undefined ? { tokenFile: g.tokenFile } : {}),
  });
  return { client, json: g.json ?? false };
}

function printJson(value: unknown): void {
  stdout.write(JSON.stringify(value, null, 2) + '\n');
}

const commandLine = (p: Process) => p.argv.join(' ') || p.exe;

/** Options every listing takes: how it ended, since when, how many. */
function listingOptions(command: Command, since: string): Command {
  return command
    .option('--exit-code <code>', 'those that ended with this exit code', exitCode)
    .option('--signal <n>', 'those killed by this signal', positiveInteger)
    .option('--since <time>', `those ${since} at this ISO-8601 time or later`)
    .option('--limit <n>', 'print at most this many', positiveInteger);
}

interface ListingOptions { exitCode?: number; signal?: number; since?: string; limit?: number }

/** Pages no larger than what --limit will print. */
const pageSize = (limit?: number) => (limit !== undefined ? { limit: Math.min(limit, 1000) } : {});

/** The query for a listing: its filters and its page size. */
function listingQuery(o: ListingOptions) {
  return {
    ...(o.exitCode !== undefined ? { exitCode: o.exitCode } : {}), ...(o.signal !== undefined ? { signal: o.signal } : {}),
    ...(o.since !== undefined ? { since: o.since } : {}), ...pageSize(o.limit),
  };
}

/** The items of the pages, a page at a time, the first `limit` only. */
async function* firstItems<T>(pages: AsyncIterable<T[]>, limit = Infinity): AsyncGenerator<T[]> {
  let left = limit;
  for await (const items of pages) {
    const some = items.slice(0, left);
    yield some;
    left -= some.length;
    if (left <= 0) return;
  }
}

/** Prints a list a page at a time, as a table or as the API's JSON, up
 * to `limit` rows: a ledger of millions of exits is never held whole. */
async function printPages<T>(pages: AsyncIterable<T[]>, name: string, json: boolean, headers: string[], row: (item: T) => string[], limit?: number): Promise<void> {
  const writer = json ? new JsonListWriter(stdout, name) : new TableWriter(stdout, headers);
  for await (const some of firstItems(pages, limit)) {
    if (json) (writer as JsonListWriter).add(some);
    else (writer as TableWriter).add(some.map(row));
  }
  writer.end();
}

/** RUN: the daemon's run that supervised it, starred when it is an
 * earlier one (from before a restart). */
const processRow = (p: Process) => [
  String(p.pid), p.state, p.origin, p.libc, p.linkage, String(p.threads), shortTime(p.startedAt), `${p.run}${p.earlierRun ? '*' : ''}`, commandLine(p),
];
const PROCESS_HEADERS = ['PID', 'STATE', 'ORIGIN', 'LIBC', 'LINKAGE', 'THREADS', 'STARTED', 'RUN', 'COMMAND'];

/** On a terminal, shows that a long request (an attach to 10,000 threads)
 * is under way; elsewhere, nothing. */
async function withProgress<T>(label: string, work: Promise<T>): Promise<T> {
  if (!stderr.isTTY) return work;
  const started = Date.now();
  const frames = '|/-\\';
  let i = 0;
  const timer = setInterval(() => {
    stderr.write(`\r${frames[i++ % frames.length]} ${label} ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 100);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    stderr.write('\r\x1b[K');
  }
}

/** Threads of the process, from /proc, for the progress label; over TCP
 * the daemon may be on another machine, so nothing. */
/** "1 thread", "2 threads". */
const count = (n: number, noun: string, nouns = `${noun}s`) => `${n} ${n === 1 ? noun : nouns}`;

function threadCount(client: TlsdClient, pid: number): string {
  if (client.where.startsWith('http')) return '';
  try {
    const n = /^Threads:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return n ? ` (${count(Number(n), 'thread')})` : '';
  } catch {
    return '';
  }
}

listingOptions(program.command('ps'), 'started')
  .description('list supervised processes, running and ended, oldest first')
  .addOption(new Option('--state <state>', 'those in this state').choices(processStates))
  .option('--exe <text>', 'those whose executable\'s path contains this')
  .option('--argv <text>', 'those whose command line contains this')
  .action(async (opts: ListingOptions & { state?: ProcessState; exe?: string; argv?: string }, command: Command) => {
    const { client, json } = context(command);
    const query = {
      ...listingQuery(opts), ...(opts.state ? { state: opts.state } : {}), ...(opts.exe ? { exe: opts.exe } : {}), ...(opts.argv ? { argv: opts.argv } : {}),
    };
    const pages = (async function* () { for await (const page of client.processPages(query)) yield page.processes; })();
    await printPages(pages, 'processes', json, PROCESS_HEADERS, processRow, opts.limit);
  });

const shimModeOption = (what: string) => new Option('--shim <mode>', what).choices(['thread-pointer', 'tid']);

/** "shim injected (tid mode, table 0x...)": what an injection gave. */
function printShim(s: Shim): void {
  stdout.write(`shim ${s.loadedBy === 'preload' ? 'loaded by LD_PRELOAD' : 'injected'} (${s.mode} mode, table ${s.table}, ${s.slotCount} slots of ${s.slotBytes} bytes)\n`);
}

program.command('attach')
  .description('attach to a running process and every one of its threads')
  .argument('<pid>', 'process id', positiveInteger)
  .addOption(shimModeOption('also inject libtlsshim, in this mode (the process is detached again if that fails)'))
  .action(async (pid: number, opts: { shim?: 'thread-pointer' | 'tid' }, command: Command) => {
    const { client, json } = context(command);
    const started = performance.now();
    const p = await withProgress(`attaching to ${pid}${threadCount(client, pid)}`, client.attach(pid, opts.shim ? { mode: opts.shim } : undefined));
    const took = performance.now() - started;
    if (json) return printJson(opts.shim ? { ...p, shim: await client.shim(pid) } : p);
    const a = p.attach;
    const stops = !a ? '' : a.interrupted
      ? `, ${a.interrupted} stopped to read ${a.interrupted === 1 ? 'its' : 'their'} thread pointer (longest stop ${Math.round(a.longestStopMicros)} µs)`
      : ', no thread stopped';
    stdout.write(`attached to ${p.pid} (${commandLine(p)}) in ${took < 1000 ? `${Math.round(took)} ms` : `${(took / 1000).toFixed(1)} s`}: ${count(p.threads, 'thread')}, ${count(a?.passes ?? 0, 'pass', 'passes')}${stops}\n`);
    if (opts.shim) printShim(await client.shim(pid));
  });

program.command('inject')
  .description('with SPEC, tamper with its syscalls as strace -e inject=SPEC does (SET:error=E|retval=V[:signal=S][:delay_enter=T][:delay_exit=T][:when=first..last+step]), at once; '
    + 'without, load libtlsshim into it with tlsd\'s own loader (no code of the program runs, so static programs and Go work too)')
  .argument('<pid>', 'process id', positiveInteger)
  .argument('[spec]', 'strace\'s inject expression, e.g. openat:error=ENOENT:when=3', (text) => injectSpec(text)[0]!)
  .option('--tid <tid>', 'SPEC: only this thread (repeatable)', tidList)
  .option('--path <path>', 'SPEC: only calls whose path argument is this')
  .option('--trace', 'SPEC: also record the calls it selects (tlsctl trace shows them)')
  .addOption(engineOption())
  .addOption(new Option('--mode <mode>', 'how the shim finds a thread\'s slot: its thread pointer, or its tid').choices(['thread-pointer', 'tid']).default('thread-pointer'))
  .option('--slots <n>', 'threads at once, a power of two (default 4096)', positiveInteger)
  .option('--slot-bytes <n>', 'variable bytes per thread (default 1024)', positiveInteger)
  .action(async (pid: number, spec: RuleInput | undefined, opts: { mode: 'thread-pointer' | 'tid'; slots?: number; slotBytes?: number; tid?: number[]; path?: string; trace?: boolean; engine?: Engine }, command: Command) => {
    const { client, json } = context(command);
    if (spec) {
      const rule = await client.addRule(pid, {
        ...spec, ...(opts.tid ? { tids: opts.tid } : {}), ...(opts.path ? { path: opts.path } : {}), ...(opts.trace ? { trace: true } : {}), ...(opts.engine ? { engine: opts.engine } : {}),
      });
      if (json) return printJson(rule);
      return void stdout.write(`rule ${rule.id} on ${pid}: ${ruleText(rule)}\n`);
    }
    const s = await withProgress(`injecting the shim into ${pid}`, client.injectShim(pid, {
      mode: opts.mode, ...(opts.slots ? { slots: opts.slots } : {}), ...(opts.slotBytes ? { slotBytes: opts.slotBytes } : {}),
    }));
    if (json) return printJson(s);
    printShim(s);
  });

program.command('spawn')
  .description('start a command under tlsd; it runs in this directory with this environment unless told otherwise')
  .option('--cwd <dir>', 'working directory (default: the current one)')
  .option('--env <key=value>', 'set a variable (repeatable)', keyValue)
  .option('--clear-env', 'start from an empty environment instead of this one')
  .option('--stdout <file>', 'where its stdout goes (default: a file the daemon names)')
  .option('--stderr <file>', 'where its stderr goes')
  .addOption(shimModeOption('start it with libtlsshim in this mode: LD_PRELOAD for a dynamic program; injected before its first instruction for a static one, or when its rules go to the shim\'s engine'))
  .option('--inject <spec>', 'tamper with its syscalls from its first instruction, as strace -e inject=SPEC (repeatable)', injectSpec)
  .option('--trace <set>', 'record these syscalls from its first instruction, as strace -e trace=SET (tlsctl trace, GET .../syscalls/log)', traceSet)
  .option('--kill-with-daemon', 'it dies with the daemon and cannot be detached; in exchange only the calls its rules select stop (a seccomp pre-filter, strace --seccomp-bpf)')
  .addOption(engineOption())
  .argument('<argv...>', 'the command and its arguments (after --)')
  .action(async (argv: string[], opts: {
    cwd?: string; env?: Record<string, string>; clearEnv?: boolean; stdout?: string; stderr?: string; shim?: 'thread-pointer' | 'tid';
    inject?: RuleInput[]; trace?: string[][]; killWithDaemon?: boolean; engine?: Engine;
  }, command: Command) => {
    const { client, json } = context(command);
    const base = opts.clearEnv ? {} : Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
    const p = await client.spawn({
      argv, cwd: opts.cwd ?? process.cwd(), env: { ...base, ...opts.env },
      ...(opts.stdout ? { stdout: opts.stdout } : {}), ...(opts.stderr ? { stderr: opts.stderr } : {}),
      ...(opts.shim ? { shim: { mode: opts.shim } } : {}),
      ...(opts.inject || opts.trace ? {
        syscalls: [...(opts.inject ?? []), ...(opts.trace ?? []).map((set) => ({ syscalls: set, trace: true }))].map((r) => (opts.engine ? { ...r, engine: opts.engine } : r)),
      } : {}),
      ...(opts.killWithDaemon ? { killWithDaemon: true } : {}),
    });
    if (json) return printJson(p);
    stdout.write(`spawned ${p.pid} (${commandLine(p)}); stdout ${p.stdout}, stderr ${p.stderr}\n`);
  });

program.command('show')
  .description('one process: what it runs, its libc, how it ended')
  .argument('<pid>', 'process id', positiveInteger)
  .action(async (pid: number, _opts, command: Command) => {
    const { client, json } = context(command);
    const p = await client.process(pid);
    if (json) return printJson(p);
    printFields(stdout, { ...p, gaps: p.gaps.length ? p.gaps : undefined });
  });

program.command('threads')
  .description('live threads of a process, with their thread pointers')
  .argument('<pid>', 'process id', positiveInteger)
  .action(async (pid: number, _opts, command: Command) => {
    const { client, json } = context(command);
    const threads = (await client.threads(pid)).sort((a, b) => a.tid - b.tid);
    if (json) return printJson({ threads });
    // A thread found by the attach was made before it, when is not known.
    // A Go program's threads say which goroutine each runs (0: none).
    const go = threads.some((t) => t.goroutine);
    printTable(stdout, ['TID', 'NAME', 'STATE', 'FS_BASE', 'FROM', 'CREATED', 'PARENT', ...(go ? ['GOROUTINE', 'M'] : [])], threads.map((t) => [
      String(t.tid), t.name, t.state, t.fsBase, t.fsBaseSource, t.fsBaseSource === 'attach' ? 'before attach' : shortTime(t.createdAt),
      t.parentTid ? String(t.parentTid) : '',
      ...(go ? [t.goroutine ? String(t.goroutine.goid) : '', t.goroutine ? String(t.goroutine.m) : ''] : []),
    ]));
  });

/** A read: the API's JSON, or one value per thread under a title line. */
function printRead(r: TlsRead, json: boolean): void {
  if (json) return printJson(r);
  stdout.write(`${r.readable ?? r.symbol} in ${r.module} (${r.type})${r.readable ? `, symbol ${r.symbol}` : ''}\n`);
  const shown = (value: unknown) => (value === null ? '' : r.type === 'cstring' && typeof value === 'string' ? cString(value) : String(value));
  printTable(stdout, ['TID', 'ADDRESS', 'STATE', 'VALUE'], [...r.values].sort((a, b) => a.tid - b.tid).map((v) => [
    String(v.tid), v.address ?? '', v.state, v.error ?? shown(v.value),
  ]));
}

type ValueOptions = { type?: (typeof valueTypes)[number]; tid?: number; length?: number };

/** --type, --tid and --length: how a read's value is shown, and where. */
function valueOptions(command: Command, typeDefault: string, lengthDefault: string): Command {
  return command
    .addOption(new Option('--type <type>', `how to show the value (default: ${typeDefault})`).choices(valueTypes))
    .option('--tid <tid>', 'one thread only', positiveInteger)
    .option('--length <bytes>', `bytes to read for bytes and cstring${lengthDefault}`, positiveInteger);
}

valueOptions(program.command('tls'), 'from its size', '')
  .description('a thread-local variable in every thread of a process')
  .argument('<pid>', 'process id', positiveInteger)
  .argument('<name>', 'the variable: its symbol, or its C++ or Rust name (app::counter; CONST_TLS when unique); errno for libc\'s errno')
  .option('--module <module>', 'the module that defines it, when several do (path, file name or id)')
  .action(async (pid: number, symbol: string, opts: ValueOptions & { module?: string }, command: Command) => {
    const { client, json } = context(command);
    printRead(await client.readTls(pid, symbol, opts), json);
  });

valueOptions(program.command('block'), 'bytes', ' (default 8)')
  .description('bytes of a module\'s TLS block at an offset, in every thread: TLS that has no symbol')
  .argument('<pid>', 'process id', positiveInteger)
  .argument('<module>', 'the module: id, path or file name (GET .../tls/modules lists them)')
  .argument('<offset>', 'in the module\'s TLS block', nonNegativeInteger)
  .action(async (pid: number, module: string, offset: number, opts: ValueOptions, command: Command) => {
    const { client, json } = context(command);
    printRead(await client.readTlsAt(pid, module, offset, opts), json);
  });

program.command('symbols')
  .description('the thread-local variables of a process, by module (as gdb\'s info variables)')
  .argument('<pid>', 'process id', positiveInteger)
  .argument('[match]', 'only the names that contain this (as --match)')
  .option('--match <text>', 'only the names (or readable names) that contain this')
  .action(async (pid: number, match: string | undefined, opts: { match?: string }, command: Command) => {
    const { client, json } = context(command);
    const symbols = await client.tlsSymbols(pid, opts.match ?? match);
    if (json) return printJson({ symbols });
    // As gdb shows them: the readable name; the symbol too when mangled.
    printTable(stdout, ['NAME', 'TYPE', 'SIZE', 'MODULE', 'SYMBOL'], symbols.map((s) => [s.readable ?? s.name, s.type ?? '', String(s.size), s.module, s.readable ? s.name : '']));
  });

program.command('modules')
  .description('the modules of a process that have TLS, with their blocks (tlsctl block reads one without a symbol)')
  .argument('<pid>', 'process id', positiveInteger)
  .action(async (pid: number, _opts, command: Command) => {
    const { client, json } = context(command);
    const modules = await client.tlsModules(pid);
    if (json) return printJson({ modules });
    printTable(stdout, ['ID', 'SIZE', 'ALIGN', 'INIT', 'STATIC_OFFSET', 'BASE', 'PATH'], modules.map((m) => [
      String(m.id), String(m.tlsSize), String(m.tlsAlign), String(m.initSize), m.staticOffset === undefined ? '' : String(m.staticOffset), m.base, m.path,
    ]));
  });

listingOptions(program.command('exits'), 'ended')
  .description('the exit ledger: how each thread of a process ended, in order')
  .argument('<pid>', 'process id', positiveInteger)
  .addOption(new Option('--how <how>', 'those that ended so').choices(exitHows))
  .action(async (pid: number, opts: ListingOptions & { how?: ExitHow }, command: Command) => {
    const { client, json } = context(command);
    const query = { ...listingQuery(opts), ...(opts.how ? { how: opts.how } : {}) };
    const pages = (async function* () { for await (const page of client.exitPages(pid, query)) yield page.exits; })();
    await printPages(pages, 'exits', json, ['TID', 'HOW', 'CODE', 'SIGNAL', 'EXITED', 'LEADER'], (x) => [
      String(x.tid), x.how, x.code === undefined ? '' : String(x.code),
      x.signal === undefined ? '' : `${x.signal}${x.coreDumped ? ' (core)' : ''}`, shortTime(x.exitedAt), x.leader ? 'yes' : '',
    ], opts.limit);
  });

function printEvent(e: TlsdEvent, json: boolean): void {
  if (json) return void stdout.write(JSON.stringify(e) + '\n');
  const { id, type, at, pid, ...rest } = e;
  const details = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');
  stdout.write(`${id}  ${shortTime(at)}  ${type.padEnd(16)}  ${pid}  ${details}\n`);
}

/** A process and everything it forked, and what they forked: grows as
 * the events tell of new children. */
class Family {
  private readonly pids: Set<number>;
  constructor(root: number, processes: Process[]) {
    this.pids = new Set([root]);
    // Oldest first: a parent comes before its children.
    for (const p of processes) if (p.parentPid !== undefined && this.pids.has(p.parentPid)) this.pids.add(p.pid);
  }
  has(e: TlsdEvent): boolean {
    const parent = e.type === 'process.spawned' ? (e as { parentPid?: number }).parentPid : undefined;
    if (parent !== undefined && this.pids.has(parent)) this.pids.add(e.pid);
    return this.pids.has(e.pid);
  }
}

program.command('events')
  .description('lifecycle events: the recorded ones, oldest first, as the pages come, then (--follow) new ones as they happen')
  .option('-f, --follow', 'keep printing events as they happen, until interrupted')
  .option('--pid <pid>', 'one process only', positiveInteger)
  .option('--descendants', 'with --pid: that process and every process it forked, and they forked')
  .option('--since <id>', 'those after this event id', nonNegativeInteger)
  .option('--limit <n>', 'print at most this many recorded ones', positiveInteger)
  .action(async (opts: { follow?: boolean; pid?: number; descendants?: boolean; since?: number; limit?: number }, command: Command) => {
    const { client, json } = context(command);
    const { follow, limit, descendants, ...filter } = opts;
    if (descendants && filter.pid === undefined) throw command.error('error: --descendants needs --pid', { exitCode: 2 });
    const family = descendants ? new Family(filter.pid!, await client.processes()) : undefined;
    // A family is filtered here: its members are not known in advance.
    const query = family ? { since: filter.since } : filter;
    const wanted = (e: TlsdEvent) => !family || family.has(e);
    let last = filter.since ?? 0;
    const pages = (async function* () {
      for await (const page of client.eventPages({ ...query, ...(family ? {} : pageSize(limit)) })) yield page.events.filter(wanted);
    })();
    for await (const some of firstItems(pages, limit)) {
      for (const e of some) {
        printEvent(e, json);
        last = e.id;
      }
    }
    if (!follow) return;
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    readerGone.signal.addEventListener('abort', () => stop.abort());
    // The stream replays whatever was recorded after the last one printed.
    for await (const e of client.events({ ...query, since: last, signal: stop.signal })) if (wanted(e)) printEvent(e, json);
  });

program.command('shim')
  .description('the shim in a process (its table and slots), or one thread\'s shim variables')
  .argument('<pid>', 'process id', positiveInteger)
  .argument('[tid]', 'a thread of it', positiveInteger)
  .action(async (pid: number, tid: number | undefined, _opts, command: Command) => {
    const { client, json } = context(command);
    if (tid === undefined) {
      const s = await client.shim(pid);
      if (json) return printJson(s);
      const { variables, ...rest } = s;
      printFields(stdout, rest);
      if (variables?.length) {
        stdout.write('\n');
        printTable(stdout, ['HANDLE', 'NAME', 'OFFSET', 'SIZE', 'ALIGN'], variables.map((v) => [
          String(v.handle), v.name, String(v.offset), String(v.size), String(v.align),
        ]));
      }
      return;
    }
    const t = await client.threadShim(pid, tid);
    if (json) return printJson(t);
    stdout.write(`thread ${t.tid}, key ${t.key}: ${t.slot ? `slot ${t.slot.index} at ${t.slot.address}` : 'no slot'}\n`);
    if (t.variables.length) printTable(stdout, ['NAME', 'SIZE', 'BYTES'], t.variables.map((v) => [v.name, String(v.size), v.bytes]));
  });

function ruleText(r: RuleInput & { id?: number; when?: string }): string {
  const effects = [
    r.error !== undefined ? `error=${r.error}` : '', r.retval !== undefined ? `retval=${r.retval}` : '', r.signal !== undefined ? `signal=${r.signal}` : '',
    r.delayEnterUs ? `delay_enter=${r.delayEnterUs}us` : '', r.delayExitUs ? `delay_exit=${r.delayExitUs}us` : '', r.when ? `when=${r.when}` : '',
  ].filter(Boolean);
  return [r.syscalls.join(','), ...effects].join(':') + (r.tids ? ` (threads ${r.tids.join(', ')})` : '') + (r.path ? ` (path ${r.path})` : '') + (r.trace ? ' (traced)' : '');
}

/** One record as strace prints a call, nearly: the path argument as a
 * string, the others raw (tlsd does not decode them), the first three. */
function printRecord(r: SyscallRecord): void {
  const result = r.retval === null ? '?' : r.error ? `-1 ${r.error}` : String(r.retval);
  const at = pathArg.get(r.name);
  const shown = r.args.map((a, i) => (i === at && r.path !== undefined ? JSON.stringify(r.path) : a));
  const args = shown.slice(0, Math.max(3, (at ?? 0) + 1)).join(', ') + ', ...';
  stdout.write(`[pid ${r.tid}] ${r.name}(${args}) = ${result}${r.injected ? ' (INJECTED)' : ''}${r.signaled ? ' (SIGNALED)' : ''}${r.delayed ? ' (DELAYED)' : ''}\n`);
}

program.command('trace')
  .description('print a process\'s syscalls as they happen, as strace -f -e trace=SET does, until interrupted (the rule is removed then)')
  .argument('<pid>', 'process id', positiveInteger)
  .option('-e, --expr <set>', 'the syscalls, in strace\'s syntax: trace=%file, openat,read, !write (default: all)', (text) => traceSet(text.replace(/^trace=/, ''))[0]!)
  .option('--tid <tid>', 'only this thread (repeatable)', tidList)
  .action(async (pid: number, opts: { expr?: string[]; tid?: number[] }, command: Command) => {
    const { client, json } = context(command);
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    readerGone.signal.addEventListener('abort', () => stop.abort());
    // Subscribed before the rule exists: no record is missed.
    const records = client.syscalls({ pid, signal: stop.signal });
    const first = records.next();
    const rule = await client.addRule(pid, { syscalls: opts.expr ?? ['all'], trace: true, ...(opts.tid ? { tids: opts.tid } : {}) });
    try {
      for (let r = await first; !r.done; r = await records.next()) {
        if (r.value.rule !== rule.id) continue;
        if (json) stdout.write(JSON.stringify(r.value) + '\n');
        else printRecord(r.value);
      }
    } finally {
      await client.removeRule(pid, rule.id).catch(() => {}); // it may have ended
    }
  });

program.command('stats')
  .description('what a process\'s rules counted, as strace -c -f prints it')
  .argument('<pid>', 'process id', positiveInteger)
  .action(async (pid: number, _opts, command: Command) => {
    const { client, json } = context(command);
    const stats = await client.syscallStats(pid);
    if (json) return printJson(stats);
    const total = stats.syscalls.reduce((a, s) => ({ calls: a.calls + s.calls, errors: a.errors + s.errors, timeNs: a.timeNs + s.timeNs }), { calls: 0, errors: 0, timeNs: 0 });
    const row = (name: string, c: { calls: number; errors: number; timeNs: number }) => [
      total.timeNs ? (100 * c.timeNs / total.timeNs).toFixed(2) : '0.00', (c.timeNs / 1e9).toFixed(6),
      c.calls ? String(Math.round(c.timeNs / 1000 / c.calls)) : '0', String(c.calls), c.errors ? String(c.errors) : '', name,
    ];
    const sorted = [...stats.syscalls].sort((a, b) => b.timeNs - a.timeNs || b.calls - a.calls);
    printTable(stdout, ['% TIME', 'SECONDS', 'USECS/CALL', 'CALLS', 'ERRORS', 'SYSCALL'], [...sorted.map((s) => row(s.name, s)), row('total', total)]);
  });

program.command('rules')
  .description('a process\'s syscall rules (tlsctl rules PID), or remove one (tlsctl rules rm PID ID)')
  .argument('<pid>', 'process id, or rm')
  .argument('[more...]', 'rm: PID ID')
  .action(async (first: string, more: string[], _opts, command: Command) => {
    const { client, json } = context(command);
    if (first === 'rm') {
      if (more.length !== 2) throw command.error('usage: tlsctl rules rm PID ID', { exitCode: 2 });
      const [pid, id] = more.map((m) => positiveInteger(m)) as [number, number];
      await client.removeRule(pid, id);
      return json ? printJson({ removed: id }) : void stdout.write(`removed rule ${id} of ${pid}\n`);
    }
    if (more.length) throw command.error('usage: tlsctl rules PID', { exitCode: 2 });
    const rules = await client.rules(positiveInteger(first));
    if (json) return printJson({ rules });
    printTable(stdout, ['ID', 'ENGINE', 'CREATED', 'RULE'], rules.map((r) => [String(r.id), r.engine, shortTime(r.createdAt), ruleText(r)]));
  });

program.command('detach')
  .description('stop supervising a process and the processes it forked while supervised (they keep running unless --kill)')
  .argument('<pid>', 'process id', positiveInteger)
  .option('--kill', 'end it with SIGKILL instead')
  .option('--keep-children', 'detach this process alone: what it forked stays supervised')
  .action(async (pid: number, opts: { kill?: boolean; keepChildren?: boolean }, command: Command) => {
    const { client, json } = context(command);
    const p = await client.detach(pid, opts);
    if (json) return printJson(p);
    if (opts.kill) return void stdout.write(`killed ${pid}\n`);
    const also = p.detachedDescendants;
    stdout.write(`detached from ${pid}${also.length ? ` and ${also.length === 1 ? 'its child' : 'the processes it forked'} ${also.join(', ')}` : ''}; ${also.length ? 'they run' : 'it runs'} on\n`);
  });

program.command('forget')
  .description('forget a process that is no longer supervised: its record and its exit ledger')
  .argument('<pid>', 'process id', positiveInteger)
  .action(async (pid: number, _opts, command: Command) => {
    const { client, json } = context(command);
    await client.forget(pid);
    if (json) return printJson({ forgotten: pid });
    stdout.write(`forgot ${pid}\n`);
  });

program.command('health')
  .description('is the daemon up, and its tracer')
  .action(async (_opts, command: Command) => {
    const { client, json } = context(command);
    const h = await client.health();
    if (json) return printJson(h);
    printFields(stdout, h);
  });

try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and version are not errors; commander printed the rest.
    process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
  } else {
    // A TlsdError's message starts with its code. The API names a bad
    // query field as querystring/name: here it is an option.
    const message = (e as Error).message.replace(/querystring\/(\w+)/g, (_m, name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    stderr.write(`tlsctl: ${message}\n`);
    process.exitCode = 1;
  }
}
