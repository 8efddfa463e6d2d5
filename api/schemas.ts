/* The v1 contract (docs/api.md) as TypeBox schemas: each is the
 * validation, the serialization and the TypeScript type at once. */
import { Type, type Static } from 'typebox';
import { DEFAULT_PAGE, MAX_PAGE } from '../daemon/paging.js';
import { MAX_READ_LENGTH } from '../daemon/tls/tls-reader.js';
import { valueTypes } from '../daemon/tls/values.js';
import { Ending, eventData, Hex, Time, type LifecycleEventType } from '../daemon/events.js';
import { exitHows, fsBaseSources, processOrigins, processStates, shimModes, type Pid, type Tid } from '../daemon/types.js';

const PidNumber = Type.Integer({ minimum: 1, maximum: 4194304, description: 'a process id (kernel pid_max is at most 2^22)' });
/** A path parameter's longest: a TLS symbol's name (mangled C++ and Rust
 * names run past fastify's default of 100 characters). */
export const MAX_PARAM_LENGTH = 4096;
/** Ids in a request's path, typed as what they name (the client builds
 * paths from plain numbers, so only path parameters are branded). */
const PidParam = Type.Unsafe<Pid>(PidNumber);
const TidParam = Type.Unsafe<Tid>(Type.Integer({ minimum: 1, maximum: 4194304, description: 'a thread id' }));

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

export const Process = Type.Object({
  pid: Type.Integer(),
  state: Type.Enum(processStates, {
    description: 'running: supervised now; exited, detached: supervised until then; unsupervised: still running, supervised by an earlier run of the daemon only; '
      + 'lost: an earlier run supervised it until that run ended, and it has ended since, unseen',
  }),
  origin: Type.Enum(processOrigins),
  exe: Type.String(),
  argv: Type.Array(Type.String(), { description: 'while it runs, its command line as /proc shows it now (a program may rename itself); after, as it was at its start or exec' }),
  libc: Type.Union([Type.Literal('glibc'), Type.Literal('musl'), Type.Literal('none'), Type.Literal('unknown')]),
  linkage: Type.Union([Type.Literal('dynamic'), Type.Literal('static')]),
  threads: Type.Integer({ description: 'live threads' }),
  threadsExited: Type.Integer({ description: 'threads in its exit ledger, exact even after retention dropped rows' }),
  exitsDropped: Type.Optional(Type.Integer({ description: 'exit ledger rows retention dropped (the oldest)' })),
  run: Type.Integer({ description: 'the run of the daemon that supervised it (1, 2, ... on one state directory)' }),
  earlierRun: Type.Optional(Type.Literal(true, { description: 'supervised by an earlier run of the daemon, before a restart' })),
  startedAt: Time,
  endedAt: Type.Optional(Time),
  parentPid: Type.Optional(Type.Integer({ description: 'for a forked process: the supervised process that forked it' })),
  stdout: Type.Optional(Type.String({ description: 'for a spawned process: the file its stdout goes to' })),
  killWithDaemon: Type.Optional(Type.Literal(true, { description: 'spawned with killWithDaemon (or forked by such a process): it dies with the daemon, and cannot be detached' })),
  stderr: Type.Optional(Type.String()),
  gaps: Type.Array(Type.Object({ from: Time, to: Type.Optional(Time) }), {
    description: 'spans when no tracer watched the process (the tracer helper restarted): events in them may be missed',
  }),
  exit: Type.Optional(Type.Object({ ...Ending, at: Time })),
  attach: Type.Optional(Type.Object({
    passes: Type.Integer({ description: 'scans of /proc/PID/task until one found no new thread' }),
    threads: Type.Integer(),
    interrupted: Type.Integer({
      description: 'threads stopped to read their thread pointer: those the C library\'s own thread list did not account for (all of them for a program on neither glibc nor musl)',
    }),
    longestStopMicros: Type.Number({ description: 'the longest one of them can have been stopped by the attach: from the last time it was seen running to its stop; 0 when none was' }),
    leftovers: Type.Optional(Type.Object({
      removed: Type.Integer({ description: 'mappings removed: stub pages and shims that never started' }),
      startedShims: Type.Integer({ description: 'injected shims that had started, which stay' }),
    }, { description: 'what injections by an earlier tracer left in the process (a tracer killed during one) and this attach removed' })),
  })),
});

export const Thread = Type.Object({
  tid: Type.Integer(),
  pid: Type.Integer(),
  name: Type.String(),
  state: Type.String({ description: 'scheduler state from /proc: running, sleeping, stopped, ...' }),
  fsBase: Hex,
  fsBaseSource: Type.Enum(fsBaseSources),
  createdAt: Time,
  parentTid: Type.Optional(Type.Integer()),
  goroutine: Type.Optional(Type.Object({
    goid: Type.Integer({ description: '0: no goroutine (the scheduler\'s g0)' }),
    m: Type.Integer({ description: 'the id of its M' }),
  }, { description: 'a static Go program: the goroutine the thread runs now, from Go\'s own layout (read from the binary\'s DWARF)' })),
});

export const ThreadWithTcb = Type.Intersect([Thread, Type.Object({
  tcb: Type.Union([Type.Object({ self: Hex, dtv: Hex, stackGuard: Type.String({ description: 'decimal' }) }), Type.Null()], {
    description: 'null when the thread pointer does not point at a TCB (e.g. a static Go program)',
  }),
})]);

export const Exit = Type.Object({
  tid: Type.Integer(),
  pid: Type.Integer(),
  leader: Type.Boolean(),
  exitedAt: Time,
  ...Ending,
  how: Type.Enum(exitHows),
  shim: Type.Optional(Type.Enum(['none', 'released', 'reclaimed'], {
    description: 'with a shim: none (no slot), released (gave its slot back), reclaimed (held one at its end; tlsd freed it)',
  })),
});

export const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  version: Type.String(),
  pid: Type.Integer(),
  tracerPid: Type.Union([Type.Integer(), Type.Null()]),
  uptimeSeconds: Type.Number(),
  processes: Type.Integer({ description: 'supervised processes that are running' }),
  threads: Type.Integer({ description: 'their live threads' }),
  tracerRestarts: Type.Integer(),
  run: Type.Integer({ description: 'this run of the daemon on its state directory' }),
  records: Type.Object({
    file: Type.String({ description: 'the database, or :memory:' }),
    bytes: Type.Integer({ description: 'the bytes its records use' }),
    keptAside: Type.Optional(Type.String({ description: 'where a database file that could not be read at start was moved' })),
    forgotten: Type.Object({
      processes: Type.Integer(), exits: Type.Integer(), events: Type.Integer(),
    }, { description: 'records dropped by retention or forgotten on request, for good' }),
  }),
});

const shimRequestFields = {
  mode: Type.Enum(shimModes, { description: 'how the shim keys a thread\'s slot: its thread pointer (FS base) or its tid' }),
  slots: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20, description: 'threads at once, a power of two (default 4096)' })),
  slotBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20, description: 'variable bytes per thread (default 1024)' })),
};
const shimRequest = (description: string) => Type.Object(shimRequestFields, { additionalProperties: false, description });
export const ShimRequestBody = shimRequest('load libtlsshim into the running process and start it');

export const AttachBody = Type.Object({
  pid: PidParam,
  shim: Type.Optional(shimRequest('inject libtlsshim once attached (the process is detached again if that fails)')),
}, { additionalProperties: false });

/* Syscall interposition (docs/syscalls.md). */
const Microseconds = Type.Integer({ minimum: 0, maximum: 60_000_000, description: 'microseconds, at most a minute' });
const Engine = Type.Union([Type.Literal('shim'), Type.Literal('ptrace')], {
  description: 'what applies it: shim, the shim\'s engine in the process (a SIGSYS handler; a process spawned with `shim` has it, and a running process with the shim gets it with its first such rule); ptrace, the tracer, at ptrace stops. Default: shim when the process has the shim and the engine can take the rule (its filter, once started, traps the rule\'s calls)',
});
export const RuleBody = Type.Object({
  syscalls: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), {
    minItems: 1, maxItems: 512,
    description: 'strace\'s syscall set, element by element: names (openat), numbers (257), classes (%file, %desc, %network, %process, %signal, %ipc, %memory, %creds, %clock, %pure), /regex, all, none; !X takes X out (as the first element: out of every call)',
  }),
  tids: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 4194304 }), { minItems: 1, maxItems: 4096, description: 'only these threads; default: every thread' })),
  path: Type.Optional(Type.String({ minLength: 1, maxLength: 4095, description: 'only calls whose path argument is exactly this' })),
  error: Type.Optional(Type.Union([Type.String({ pattern: '^E[A-Z0-9]+$' }), Type.Integer({ minimum: 1, maximum: 4095 })], { description: 'the call is not made and fails with this errno (strace error=)' })),
  retval: Type.Optional(Type.Integer({ description: 'the call is not made and returns this (strace retval=)' })),
  signal: Type.Optional(Type.Union([Type.String({ pattern: '^(SIG)?[A-Z0-9]+$' }), Type.Integer({ minimum: 1, maximum: 64 })], { description: 'sent to the thread at the call\'s entry (strace signal=)' })),
  delayEnterUs: Type.Optional(Microseconds),
  delayExitUs: Type.Optional(Microseconds),
  when: Type.Optional(Type.String({ minLength: 1, maxLength: 32, description: 'strace\'s first[..last][+[step]]: which calls of each syscall, counted per thread, the effects apply to; default every one' })),
  trace: Type.Optional(Type.Boolean({ description: 'record each call it selects (GET .../syscalls/log, SSE syscall events)' })),
  engine: Type.Optional(Engine),
}, { additionalProperties: false, description: 'a rule with no effect (error, retval, signal, delay) only selects: its calls are counted' });
export const Rule = Type.Intersect([Type.Object({
  id: Type.Integer(),
  engine: Engine,
  createdAt: Time,
}), RuleBody]);
export const RuleList = Type.Object({ rules: Type.Array(Rule) });
export const RuleParams = Type.Object({ pid: PidParam, id: Type.Integer({ minimum: 1 }) });
export const SyscallStats = Type.Object({
  engine: Type.Union([Type.Literal('shim'), Type.Literal('ptrace')], { description: 'shim once the process\'s shim engine applies its shim rules' }),
  since: Type.Optional(Time),
  syscalls: Type.Array(Type.Object({
    name: Type.String(), nr: Type.Integer(), calls: Type.Integer(), errors: Type.Integer(),
    timeNs: Type.Integer({ description: 'wall time from entry to exit, summed' }),
  }), { description: 'every syscall a rule selected, as strace -c -f counts it' }),
  threads: Type.Array(Type.Object({ tid: Type.Integer(), calls: Type.Integer(), errors: Type.Integer() })),
});
export const SyscallRecord = Type.Object({
  seq: Type.Integer({ description: '1, 2, 3, ... across processes, for the daemon\'s life' }),
  pid: Type.Integer(),
  tid: Type.Integer(),
  name: Type.String(),
  nr: Type.Integer(),
  args: Type.Array(Hex, { description: 'the six argument registers' }),
  retval: Type.Union([Type.Integer(), Type.Null()], { description: 'what the program got; null: the call never returned (exit, exit_group)' }),
  error: Type.Optional(Type.String({ description: 'retval -1..-4095 as an errno name' })),
  durationNs: Type.Integer(),
  injected: Type.Optional(Type.Literal(true)),
  signaled: Type.Optional(Type.Literal(true)),
  delayed: Type.Optional(Type.Literal(true)),
  path: Type.Optional(Type.String({ description: 'its path argument' })),
  at: Time,
  rule: Type.Integer({ description: 'the tracing rule that selected it' }),
});
export const SyscallLogQuery = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'records with a greater seq only' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'default 100,000' })),
}, { additionalProperties: false });
export const SyscallLog = Type.Object({
  records: Type.Array(SyscallRecord),
  dropped: Type.Optional(Type.Literal(true, { description: 'records after since were dropped (only the last ones are kept)' })),
});

export const SpawnBody = Type.Object({
  argv: Type.Array(Type.String({ maxLength: 131072 }), { minItems: 1, maxItems: 4096 }),
  env: Type.Optional(Type.Record(Type.String({ pattern: '^[^=\\u0000]+$' }), Type.String(), {
    // A Record is patternProperties: without this, a name with '=' in it
    // would match no pattern and pass unchecked.
    additionalProperties: false,
    description: 'the whole environment of the new process; omitted: the daemon\'s',
  })),
  cwd: Type.Optional(Type.String({ minLength: 1 })),
  stdout: Type.Optional(Type.String({ minLength: 1 })),
  stderr: Type.Optional(Type.String({ minLength: 1 })),
  shim: Type.Optional(shimRequest('start with libtlsshim: loaded by LD_PRELOAD into a dynamic program, injected by the tracer into a static one before its first instruction')),
  syscalls: Type.Optional(Type.Array(RuleBody, { maxItems: 64, description: 'syscall rules in force from its first instruction after execve' })),
  killWithDaemon: Type.Optional(Type.Boolean({
    description: 'it dies with the daemon and its tracer, and cannot be detached; in exchange its syscall rules get a seccomp pre-filter (strace --seccomp-bpf): only the calls they select stop',
  })),
}, { additionalProperties: false });

export const ProcessParams = Type.Object({ pid: PidParam });
export const ThreadParams = Type.Object({ pid: PidParam, tid: TidParam });
export const DetachQuery = Type.Object({
  kill: Type.Optional(Type.Boolean({ description: 'end the process with SIGKILL instead (its children stay supervised)' })),
  keepChildren: Type.Optional(Type.Boolean({ description: 'detach this process alone: the processes it forked while supervised stay supervised' })),
  ifState: Type.Optional(Type.Enum(['running', 'ended'], {
    description: 'act only on a process in this state: running (detach; one that is not is 410 and kept), ended (forget; one running is 409 and left supervised)',
  })),
}, { additionalProperties: false });

export const Detached = Type.Intersect([Process, Type.Object({
  detachedDescendants: Type.Array(Type.Integer(), {
    description: 'the processes followed from it (its forks while supervised, theirs, ...), detached with it',
  }),
})]);
/** Paging (daemon/paging.ts): at most `limit` items after the cursor `after`. */
const Paging = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, description: `items per page; default ${DEFAULT_PAGE}` })),
  after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'the `next` of the page before' })),
};
const PageEnd = {
  next: Type.Optional(Type.String({ description: 'the cursor of the next page; absent on the last' })),
  total: Type.Integer({ description: 'items that match, on every page' }),
};
const EndingFilter = {
  exitCode: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
  signal: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  since: Type.Optional(Type.String({ minLength: 1, description: 'an ISO-8601 time' })),
};

export const ProcessesQuery = Type.Object({
  ...Paging,
  ...EndingFilter,
  state: Type.Optional(Type.Enum(processStates)),
  exe: Type.Optional(Type.String({ minLength: 1, description: 'a substring of the executable\'s path' })),
  argv: Type.Optional(Type.String({ minLength: 1, description: 'a substring of the command line, arguments joined by spaces' })),
}, { additionalProperties: false, description: 'since: started at or after' });
export const ProcessList = Type.Object({ processes: Type.Array(Process), ...PageEnd });

export const ExitsQuery = Type.Object({
  ...Paging,
  ...EndingFilter,
  how: Type.Optional(Type.Enum(exitHows)),
}, { additionalProperties: false, description: 'since: ended at or after' });
export const ExitList = Type.Object({
  exits: Type.Array(Exit), ...PageEnd,
  dropped: Type.Optional(Type.Integer({ description: 'the oldest rows, dropped by retention: not among the pages, nor in total' })),
});

export const EventsQuery = Type.Object({
  pid: Type.Optional(PidNumber),
  types: Type.Optional(Type.String({ pattern: '^[a-z.]+(,[a-z.]+)*$', description: 'a comma-separated list of event types to stream; default: every lifecycle type. syscall: the records of tracing rules, live only (never replayed), without ids' })),
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'events with a greater id only; the stream replays the recorded ones first (as for the Last-Event-ID header), at most 10,000' })),
}, { additionalProperties: false });

/** One lifecycle event: its id, type and time, and what its type says
 * (daemon/events.ts). */
const eventOf = <K extends LifecycleEventType>(type: K) => Type.Object({
  id: Type.Integer({ description: '1, 2, 3, ... in order, for the daemon\'s life' }),
  type: Type.Literal(type),
  at: Time,
  ...eventData[type].properties,
}, { title: type, description: (eventData[type] as { description?: string }).description });

export const Event = Type.Union([
  eventOf('process.attached'), eventOf('process.spawned'), eventOf('thread.created'), eventOf('thread.exited'),
  eventOf('process.exec'), eventOf('process.exited'), eventOf('process.detached'), eventOf('shim.handshake'), eventOf('shim.slot'),
], { description: 'told apart by type' });
/** A type error unless every event type is in the union. */
type EveryEventType<T extends Static<typeof Event>['type']> = T;
export type EventType = EveryEventType<LifecycleEventType>;
export type EventJson = Static<typeof Event>;

export const RecentEventsQuery = Type.Object({ ...EventsQuery.properties, ...Paging }, { additionalProperties: false });
export const EventList = Type.Object({ events: Type.Array(Event), ...PageEnd });

export const TlsModule = Type.Object({
  id: Type.Integer({ description: 'TLS module id (glibc: from the link_map; musl: load-order rank)' }),
  path: Type.String(),
  base: Hex,
  tlsSize: Type.Integer({ description: 'PT_TLS p_memsz' }),
  tlsAlign: Type.Integer(),
  initSize: Type.Integer({ description: 'PT_TLS p_filesz: the initialised part (.tdata)' }),
  staticOffset: Type.Optional(Type.Integer({ description: 'the block is at fsBase - staticOffset in every thread' })),
});

export const SymbolsQuery = Type.Object({
  match: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'only the names that contain this' })),
}, { additionalProperties: false });

export const TlsSymbol = Type.Object({
  name: Type.String({ description: 'the symbol, as the file has it' }),
  readable: Type.Optional(Type.String({ description: 'for a mangled C++ or Rust name: the name its programmer knows (proj::CONST_TLS); it, or its last component when no other variable has that, reads the variable too' })),
  module: Type.String(), size: Type.Integer(),
  type: Type.Optional(Type.String({ description: 'its C type as the module\'s debug information declares it (its own, or its separate debug file\'s): a read shows it so unless asked otherwise' })),
  offset: Type.Optional(Type.Integer({ description: 'in its module\'s TLS block (not for musl\'s errno, which is in the TCB)' })),
});

export const ModuleParams = Type.Object({ pid: PidParam, module: Type.String({ minLength: 1, maxLength: MAX_PARAM_LENGTH, description: 'a module id, path or file name' }) });

export const ModuleBytesQuery = Type.Object({
  offset: Type.Integer({ minimum: 0, maximum: 2 ** 31, description: 'in the module\'s TLS block' }),
  type: Type.Optional(Type.Enum(valueTypes, { description: 'default bytes' })),
  length: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_READ_LENGTH, description: 'bytes to read, for bytes and cstring; default 8' })),
  tid: Type.Optional(PidNumber),
}, { additionalProperties: false });

export const SymbolParams = Type.Object({ pid: PidParam, name: Type.String({ minLength: 1, maxLength: MAX_PARAM_LENGTH }) });

export const SymbolQuery = Type.Object({
  module: Type.Optional(Type.String({ minLength: 1, description: 'module path, file name or id' })),
  type: Type.Optional(Type.Enum(valueTypes, {
    description: 'default from the size: 1 u8, 2 i16, 4 i32, 8 i64, otherwise bytes',
  })),
  length: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_READ_LENGTH, description: 'bytes to read, for bytes and cstring' })),
  tid: Type.Optional(PidNumber),
}, { additionalProperties: false });

export const TlsValues = Type.Object({
  symbol: Type.String(),
  readable: Type.Optional(Type.String({ description: 'the readable name of a mangled symbol' })),
  module: Type.String(),
  type: Type.String(),
  values: Type.Array(Type.Object({
    tid: Type.Integer(),
    // `type: [...]` rather than anyOf: the serializer then writes each of a
    // thousand values directly instead of trying the alternatives in turn.
    address: Type.Unsafe<string | null>({ type: ['string', 'null'], description: 'lowercase hex; null when the block is not allocated' }),
    state: Type.Enum(['ok', 'unallocated', 'no-tls', 'error'], {
      description: 'no-tls: the thread has no C-library TLS (no DTV: a raw clone on a page of its own, such as the shim\'s agent)',
    }),
    value: Type.Unsafe<number | string | null>({
      type: ['number', 'string', 'null'],
      description: 'numbers up to 32 bits as numbers; i64/u64 decimal strings; ptr hex; bytes hex digits; unallocated: the initial image',
    }),
    error: Type.Optional(Type.String()),
  })),
});

export const ShimVariable = Type.Object({
  handle: Type.Integer(), name: Type.String(), offset: Type.Integer(), size: Type.Integer(), align: Type.Integer(),
});

export const ShimStatus = Type.Object({
  loaded: Type.Boolean({ description: 'a shim said hello from this process' }),
  loadedBy: Type.Optional(Type.Enum(['preload', 'injected'], { description: 'the dynamic linker (LD_PRELOAD), or tlsd\'s tracer' })),
  injection: Type.Optional(Type.Object({
    base: Hex,
    borrowedTid: Type.Integer({ description: 'the one thread that ran the loader\'s system calls' }),
    stoppedMicros: Type.Number({ description: 'how long that thread was stopped' }),
    threadsStopped: Type.Integer({ description: 'threads stopped to choose it, it among them (the others kept running)' }),
  }, { description: 'what the injection cost, when tlsd\'s tracer loaded the shim' })),
  connected: Type.Optional(Type.Boolean({ description: 'its agent thread is still connected' })),
  forkedFrom: Type.Optional(Type.Integer({ description: 'a forked child: the parent whose shim (and table) it has a copy of; it has no agent thread' })),
  reclaiming: Type.Optional(Type.Boolean({ description: 'the tracer has the table and frees the slots of threads that end holding one' })),
  mode: Type.Optional(Type.Enum(shimModes)),
  version: Type.Optional(Type.Integer()),
  table: Type.Optional(Hex),
  handshakeAt: Type.Optional(Time),
  slotCount: Type.Optional(Type.Integer()),
  slotBytes: Type.Optional(Type.Integer()),
  slotsInUse: Type.Optional(Type.Integer()),
  slotsFree: Type.Optional(Type.Integer()),
  usesRdfsbase: Type.Optional(Type.Boolean()),
  variables: Type.Optional(Type.Array(ShimVariable)),
});

export const ThreadShim = Type.Object({
  tid: Type.Integer(),
  key: Type.String({ description: 'the thread\'s key in the table: its FS base or its tid, hex' }),
  slot: Type.Union([Type.Object({ index: Type.Integer(), address: Hex, claims: Type.Integer() }), Type.Null()], {
    description: 'null: the thread has not used shim TLS (or gave its slot back)',
  }),
  variables: Type.Array(Type.Object({ name: Type.String(), size: Type.Integer(), bytes: Type.String({ description: 'hex digits' }) })),
});

export type ProcessJson = Static<typeof Process>;
export type DetachedJson = Static<typeof Detached>;
export type ThreadJson = Static<typeof Thread>;
export type ExitJson = Static<typeof Exit>;
export type HealthJson = Static<typeof Health>;
