/* A typed client for the tlsd HTTP API v1, over the Unix socket or over
 * TCP with the bearer token. The types are the server's own schemas
 * (api/schemas.ts): one source of truth.
 *
 *   const tlsd = new TlsdClient();                       // TLSD_SOCKET or /run/tlsd/tlsd.sock
 *   const tlsd = new TlsdClient({ http: '127.0.0.1:7878', tokenFile: '/run/tlsd/token' });
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { Static } from 'typebox';
import type {
  DetachedJson, EventJson, EventList as EventListSchema, ExitJson, ExitList as ExitListSchema, ExitsQuery, HealthJson,
  ModuleBytesQuery, ProcessList as ProcessListSchema, ProcessesQuery, ProcessJson, Rule as RuleSchema, RuleBody, ShimRequestBody, ShimStatus, SpawnBody,
  SymbolQuery, SyscallLog, SyscallLogQuery, SyscallRecord as SyscallRecordSchema, SyscallStats as SyscallStatsSchema, ThreadShim, ThreadJson, ThreadWithTcb, TlsModule, TlsSymbol, TlsValues,
} from '../api/schemas.js';
import { parseHostPort } from '../api/listen.js';
import type { ErrorCode } from '../daemon/errors.js';

export const DEFAULT_SOCKET = '/run/tlsd/tlsd.sock';
export const DEFAULT_TOKEN_FILE = '/run/tlsd/token';

export interface ClientOptions {
  /** Unix socket path; default TLSD_SOCKET, then /run/tlsd/tlsd.sock. */
  socket?: string;
  /** `host:port`: use TCP instead of the socket (default TLSD_HTTP). */
  http?: string;
  /** The bearer token for TCP; default: read from tokenFile. */
  token?: string;
  /** Default TLSD_TOKEN_FILE, then /run/tlsd/token. */
  tokenFile?: string;
}

/** `code` is the API's error code, or the client's own: UNREACHABLE (no
 * daemon answered) or BAD_RESPONSE (the answer was not the API's). */
export type ClientErrorCode = ErrorCode | 'UNREACHABLE' | 'BAD_RESPONSE';

export class TlsdError extends Error {
  constructor(readonly status: number, readonly code: ClientErrorCode, message: string) {
    super(`${code}: ${message}`);
  }
}

/** One lifecycle event, told apart by `type` (daemon/events.ts). */
export type TlsdEvent = EventJson;

export type Spawn = Static<typeof SpawnBody>;
export type ShimRequest = Static<typeof ShimRequestBody>;
export type Shim = Static<typeof ShimStatus>;
/** A page of a list and where the next one starts (`next`, absent on the last). */
export type ProcessList = Static<typeof ProcessListSchema>;
export type ExitList = Static<typeof ExitListSchema>;
export type EventList = Static<typeof EventListSchema>;
/** Filters and paging: `limit` per page, `after` a page's `next`. */
export type ProcessQuery = Static<typeof ProcessesQuery>;
export type ExitQuery = Static<typeof ExitsQuery>;
export type TlsModuleReadQuery = Omit<Static<typeof ModuleBytesQuery>, 'offset'>;
export type Thread = ThreadJson;
export type ThreadDetail = Static<typeof ThreadWithTcb>;
export type Module = Static<typeof TlsModule>;
export type Symbol = Static<typeof TlsSymbol>;
export type TlsRead = Static<typeof TlsValues>;
export type TlsReadQuery = Static<typeof SymbolQuery>;
export type RuleRequest = Static<typeof RuleBody>;
export type SyscallRule = Static<typeof RuleSchema>;
export type SyscallStats = Static<typeof SyscallStatsSchema>;
export type SyscallRecord = Static<typeof SyscallRecordSchema>;
export type { ExitJson as Exit, HealthJson as Health, ProcessJson as Process };

type Target = { socketPath: string } | { host: string; port: number };

export class TlsdClient {
  private readonly target: Target;
  private readonly headers: Record<string, string> = {};
  /** Where requests go, for messages. */
  readonly where: string;

  constructor(opts: ClientOptions = {}) {
    const env = process.env;
    const httpAddress = opts.http ?? env.TLSD_HTTP;
    if (httpAddress) {
      this.target = parseHostPort(httpAddress);
      this.headers.authorization = `Bearer ${opts.token ?? readToken(opts.tokenFile ?? env.TLSD_TOKEN_FILE ?? DEFAULT_TOKEN_FILE)}`;
      this.where = `http://${httpAddress}`;
    } else {
      const socketPath = opts.socket ?? env.TLSD_SOCKET ?? DEFAULT_SOCKET;
      this.target = { socketPath };
      this.where = socketPath;
    }
  }

  private send(method: string, path: string, body: unknown, onResponse: (res: http.IncomingMessage) => void, signal?: AbortSignal) {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      ...this.target, method, path, ...(signal ? { signal } : {}),
      headers: { ...this.headers, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
    }, onResponse);
    req.end(payload);
    return req;
  }

  private unreachable(e: Error): TlsdError {
    return new TlsdError(0, 'UNREACHABLE', `cannot reach tlsd at ${this.where}: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
  }

  /** One request; a non-2xx answer throws TlsdError with the API's code. */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = this.send(method, path, body, (res) => {
        readAll(res).then((text) => {
          const status = res.statusCode ?? 0;
          const json = (res.headers['content-type'] ?? '').startsWith('application/json') ? parseJson(text) : text;
          if (json === undefined) return reject(new TlsdError(status, 'BAD_RESPONSE', text.slice(0, 200)));
          if (status >= 200 && status < 300) return resolve(json as T);
          reject(apiError(status, json, text));
        }, reject);
      });
      req.on('error', (e) => reject(this.unreachable(e)));
    });
  }

  health() { return this.request<HealthJson>('GET', '/v1/health'); }
  /** Every process that matches, oldest first: all the pages. */
  async processes(query: ProcessQuery = {}): Promise<ProcessJson[]> {
    const all: ProcessJson[] = [];
    for await (const page of this.processPages(query)) all.push(...page.processes);
    return all;
  }
  /** The pages of processes, one request each, until the last. */
  processPages(query: ProcessQuery = {}): AsyncGenerator<ProcessList> {
    return this.pages((after) => this.request<ProcessList>('GET', `/v1/processes${queryString({ ...query, after })}`), query.after);
  }
  /** Attaches; with `shim`, injects libtlsshim too (detached again if that fails). */
  attach(pid: number, shim?: ShimRequest) { return this.request<ProcessJson>('POST', '/v1/processes', { pid, ...(shim ? { shim } : {}) }); }
  spawn(body: Spawn) { return this.request<ProcessJson>('POST', '/v1/processes', body); }
  process(pid: number) { return this.request<ProcessJson>('GET', `/v1/processes/${pid}`); }
  /** Detaches a process and the processes followed from it (unless
   * `keepChildren`); with `kill`, ends it instead. */
  detach(pid: number, opts: { kill?: boolean; keepChildren?: boolean } = {}) {
    const query = new URLSearchParams({ ifState: 'running' });
    if (opts.kill) query.set('kill', 'true');
    if (opts.keepChildren) query.set('keepChildren', 'true');
    return this.request<DetachedJson>('DELETE', `/v1/processes/${pid}?${query}`);
  }
  /** Forgets a process that is no longer supervised: its record and ledger. */
  async forget(pid: number): Promise<void> {
    await this.request<string>('DELETE', `/v1/processes/${pid}?ifState=ended`);
  }
  threads(pid: number) { return this.request<{ threads: Thread[] }>('GET', `/v1/processes/${pid}/threads`).then((r) => r.threads); }
  thread(pid: number, tid: number) { return this.request<ThreadDetail>('GET', `/v1/processes/${pid}/threads/${tid}`); }
  /** The exit ledger, in order: all the pages. */
  async exits(pid: number, query: ExitQuery = {}): Promise<ExitJson[]> {
    const all: ExitJson[] = [];
    for await (const page of this.exitPages(pid, query)) all.push(...page.exits);
    return all;
  }
  /** The pages of the exit ledger, one request each, until the last. */
  exitPages(pid: number, query: ExitQuery = {}): AsyncGenerator<ExitList> {
    return this.pages((after) => this.request<ExitList>('GET', `/v1/processes/${pid}/exits${queryString({ ...query, after })}`), query.after);
  }
  tlsModules(pid: number) {
    return this.request<{ modules: Module[] }>('GET', `/v1/processes/${pid}/tls/modules`).then((r) => r.modules);
  }
  /** Every TLS variable, or those whose name contains `match`. */
  tlsSymbols(pid: number, match?: string) {
    return this.request<{ symbols: Symbol[] }>('GET', `/v1/processes/${pid}/tls/symbols${queryString({ match })}`).then((r) => r.symbols);
  }
  /** One TLS variable in every thread (or in `query.tid`). */
  readTls(pid: number, name: string, query: TlsReadQuery = {}) {
    return this.request<TlsRead>('GET', `/v1/processes/${pid}/tls/symbols/${encodeURIComponent(name)}${queryString(query)}`);
  }
  /** Bytes of a module's TLS block at an offset, in every thread (or in
   * `query.tid`): TLS that has no symbol. `module`: an id, a path or a
   * file name. */
  readTlsAt(pid: number, module: string | number, offset: number, query: TlsModuleReadQuery = {}) {
    return this.request<TlsRead>('GET', `/v1/processes/${pid}/tls/modules/${encodeURIComponent(String(module))}/bytes${queryString({ offset, ...query })}`);
  }
  /** The process's shim: mode, table, slots, variables ({ loaded: false } without one). */
  shim(pid: number) { return this.request<Shim>('GET', `/v1/processes/${pid}/shim`); }
  /** Injects libtlsshim into a supervised process; its view once it said hello. */
  injectShim(pid: number, shim: ShimRequest) { return this.request<Shim>('POST', `/v1/processes/${pid}/shim`, shim); }
  /** One thread's shim slot and the bytes of its variables. */
  threadShim(pid: number, tid: number) { return this.request<Static<typeof ThreadShim>>('GET', `/v1/processes/${pid}/threads/${tid}/shim`); }
  /** Adds a syscall rule (strace's semantics: docs/syscalls.md), in force at once:
   *
   *   await tlsd.addRule(pid, { syscalls: ['openat'], error: 'ENOENT', when: '1..3', trace: true });
   */
  addRule(pid: number, rule: RuleRequest) { return this.request<SyscallRule>('POST', `/v1/processes/${pid}/syscalls/rules`, rule); }
  rules(pid: number) { return this.request<{ rules: SyscallRule[] }>('GET', `/v1/processes/${pid}/syscalls/rules`).then((r) => r.rules); }
  removeRule(pid: number, id: number) { return this.request<null>('DELETE', `/v1/processes/${pid}/syscalls/rules/${id}`); }
  /** Calls, errors and time per syscall and thread, as strace -c -f counts them. */
  syscallStats(pid: number) { return this.request<SyscallStats>('GET', `/v1/processes/${pid}/syscalls/stats`); }
  /** The recorded calls of tracing rules, oldest first. */
  syscallLog(pid: number, query: Static<typeof SyscallLogQuery> = {}) {
    return this.request<Static<typeof SyscallLog>>('GET', `/v1/processes/${pid}/syscalls/log${queryString(query)}`);
  }
  /** Prometheus text. */
  metrics() { return this.request<string>('GET', '/metrics'); }
  /** The OpenAPI document. */
  openapi() { return this.request<Record<string, unknown>>('GET', '/docs/json'); }

  /** The recorded events, oldest first: all the pages. */
  async recentEvents(opts: EventsOptions = {}): Promise<TlsdEvent[]> {
    const all: TlsdEvent[] = [];
    for await (const page of this.eventPages(opts)) all.push(...page.events);
    return all;
  }
  /** The pages of recorded events, one request each, until the last. */
  eventPages(opts: EventsOptions & { limit?: number } = {}): AsyncGenerator<EventList> {
    return this.pages((after) => this.request<EventList>('GET', `/v1/events/recent${queryString({ pid: opts.pid, since: opts.since, limit: opts.limit, after })}`));
  }

  private async *pages<P extends { next?: string }>(get: (after?: string) => Promise<P>, after?: string): AsyncGenerator<P> {
    for (let cursor = after; ;) {
      const page = await get(cursor);
      yield page;
      if (page.next === undefined) return;
      cursor = page.next;
    }
  }

  /** Lifecycle events as they happen (after the recorded ones newer than
   * `since`, if given: at most 10,000), until `signal` aborts (the loop then ends quietly)
   * or the daemon goes away (it throws UNREACHABLE).
   *
   *   for await (const e of tlsd.events({ pid })) if (e.type === 'thread.exited') ...
   */
  events(opts: EventsOptions & { signal?: AbortSignal } = {}): AsyncGenerator<TlsdEvent> {
    return this.stream(queryString({ pid: opts.pid, since: opts.since }), opts.signal) as AsyncGenerator<TlsdEvent>;
  }

  /** The calls tracing rules select, as they happen (live only), until
   * `signal` aborts or the daemon goes away. */
  async *syscalls(opts: { pid?: number; signal?: AbortSignal } = {}): AsyncGenerator<SyscallRecord> {
    for await (const e of this.stream(queryString({ pid: opts.pid, types: 'syscall' }), opts.signal)) {
      const { id: _id, type: _type, ...record } = e as unknown as SyscallRecord & { id: number; type: string };
      yield record as SyscallRecord;
    }
  }

  private async *stream(query: string, signal?: AbortSignal): AsyncGenerator<unknown> {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = this.send('GET', `/v1/events${query}`, undefined, resolve, signal);
      req.on('error', (e) => reject(signal?.aborted ? e : this.unreachable(e)));
    }).catch((e: Error) => {
      if (signal?.aborted) return undefined;
      throw e;
    });
    if (!res) return;
    if (res.statusCode !== 200) {
      const text = await readAll(res);
      throw apiError(res.statusCode ?? 0, parseJson(text), text);
    }
    res.setEncoding('utf8');
    let buffered = '';
    try {
      for await (const chunk of res as AsyncIterable<string>) {
        buffered += chunk;
        let end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const event = parseEvent(buffered.slice(0, end));
          buffered = buffered.slice(end + 2);
          if (event) yield event;
        }
      }
    } catch (e) {
      if (!signal?.aborted) throw this.unreachable(e as Error);
    }
    if (!signal?.aborted) throw new TlsdError(0, 'UNREACHABLE', `tlsd at ${this.where} closed the event stream`);
  }
}

function readToken(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new TlsdError(0, 'UNAUTHORIZED', `cannot read the token file ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}

export interface EventsOptions {
  pid?: number;
  /** An event id: only later events. */
  since?: number;
}

/** `?a=1&b=x` of the fields that are set; '' when none is. */
function queryString(fields: Record<string, string | number | boolean | undefined>): string {
  const text = new URLSearchParams(
    Object.entries(fields).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]])),
  ).toString();
  return text ? `?${text}` : '';
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return undefined;
  }
}

/** The API's `{ error: { code, message } }`, or what came instead. */
function apiError(status: number, json: unknown, text: string): TlsdError {
  const err = (json as { error?: { code?: ClientErrorCode; message?: string } } | null | undefined)?.error;
  return new TlsdError(status, err?.code ?? 'BAD_RESPONSE', err?.message ?? text.slice(0, 200));
}

/** One server-sent event block (comments, keepalives: undefined). */
function parseEvent(block: string): TlsdEvent | undefined {
  let id = 0, type = '', data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('id: ')) id = Number(line.slice(4));
    else if (line.startsWith('event: ')) type = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (!type || !data) return undefined;
  return { id, type, ...JSON.parse(data) } as TlsdEvent;
}
