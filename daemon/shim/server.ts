/* The daemon's side of the shims' IPC (native/shim/ipc.c; the messages
 * are in messages.ts): a Unix socket that each shim's agent thread
 * connects to. A shim says hello (its pid, mode, table address), then
 * sends slot events; the daemon asks it ping and stats.
 *
 * A hello from a process tlsd does not supervise is refused (the
 * connection is closed): the socket is 0600, but a shim is code in
 * somebody else's process, so what it says is checked, not trusted. */
import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { TlsdError } from '../errors.js';
import { claimSocketPath } from '../socket-file.js';
import type { EventBus } from '../event-bus.js';
import type { ExitRecord, ProcessRecord, Registry, ShimFate } from '../registry.js';
import { asAddress, asPid, asTid, formatAddress, type Address, type Pid, type ShimMode, type Tid } from '../types.js';
import { shimOrigin, type ShimOrigin } from './injection.js';
import { parseShimMessage, type ShimAnswer, type ShimEngineNews, type ShimHelloMessage, type ShimMessage, type ShimRequestType } from './messages.js';

const REQUEST_TIMEOUT_MS = 2000;
/** How long a hello waits for its process to be known. */
const HELLO_KNOWN_WAIT_MS = 3000;
const MAX_LINE = 64 * 1024;

/** What an injection cost the process (native/tracer/inject.c). */
export interface Injection {
  base: Address;
  /** The thread borrowed to load it, and how long it was stopped. */
  tid: Tid;
  stoppedNs: bigint;
  /** Threads stopped to choose it (it among them). */
  threadsStopped: number;
}

/** A shim's hello, as the daemon keeps it. */
export interface ShimHello {
  pid: Pid;
  shimVersion: number;
  mode: ShimMode;
  table: Address;
  slotCount: number;
  slotBytes: number;
}

export interface ShimConnection {
  hello: ShimHello;
  /** Threads that claimed a slot, by the shim's events, until their
   * end is in the ledger (settleFate). */
  claimedBy: Set<Tid>;
  /** The tracer has the table: it frees the slots of threads that end holding one. */
  reclaiming: boolean;
  /** A forked child's: its copy of the parent's table, without an agent
   * thread (fork copies only the forking thread). */
  forkedFrom?: Pid;
  loadedBy: ShimOrigin;
  /** How tlsd's tracer loaded it, when it did. */
  injection?: Injection;
  connectedAt: Date;
  /** Undefined once the shim's agent has gone (the process ended). */
  socket?: net.Socket;
  pending: Map<number, (answer: ShimAnswer) => void>;
  nextId: number;
}

/** Lines of JSON for the shim, whose numbers are unsigned and up to 64
 * bits: a bigint is written as its digits. */
const encodeLines = (lines: object[]): string =>
  lines.map((l) => JSON.stringify(l, (_, v: unknown) => (typeof v === 'bigint' ? `\u0000${v}\u0000` : v)).replace(/"\\u0000(\d+)\\u0000"/g, '$1') + '\n').join('');

const helloOf = (m: ShimHelloMessage): ShimHello => ({
  pid: asPid(m.pid), shimVersion: m.shimVersion, mode: m.mode, table: asAddress(BigInt(m.table)), slotCount: m.slotCount, slotBytes: m.slotBytes,
});

export class ShimServer {
  private readonly server = net.createServer((socket) => this.accept(socket));
  private readonly shims = new Map<Pid, ShimConnection>();
  private readonly helloWaiters = new Map<Pid, { origin: ShimOrigin; hello: (shim: ShimConnection) => void }>();
  /** Injections whose shim has not said hello yet. */
  private readonly injections = new Map<Pid, Injection>();

  constructor(
    readonly socketPath: string,
    private readonly registry: Registry,
    private readonly bus: EventBus,
    private readonly log: Logger,
    /** Called on each accepted hello (the supervisor tells the tracer). */
    private readonly onHello: (pid: Pid, hello: ShimHello) => void = () => {},
    /** What a shim's syscall engine sends (syscalls/interposition.ts). */
    private readonly onEngine: (pid: Pid, news: ShimEngineNews) => void = () => {},
  ) {
    // A new program image has no table where the old one had: forget the
    // old image's shim (the tracer does the same). A shim in the new image
    // says hello again, possibly before this event arrives (the tracer
    // sends lifecycle events in batches): a hello received after the exec
    // is the new image's, and is kept.
    bus.subscribe((e) => {
      if (e.type !== 'process.exec') return;
      const pid = asPid(e.data.pid);
      const shim = this.shims.get(pid);
      if (shim && shim.connectedAt.getTime() < Date.parse(e.at)) this.shims.delete(pid);
    });
  }

  /** In an existing directory: the API socket's, or a temporary one. */
  async listen(): Promise<void> {
    await claimSocketPath(this.socketPath, 'shim socket');
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => { this.server.off('error', reject); resolve(); });
    });
    chmodSync(this.socketPath, 0o600);
  }

  close(): void {
    for (const s of this.shims.values()) s.socket?.destroy();
    this.server.close();
    try { unlinkSync(this.socketPath); } catch { /* gone */ }
  }

  get(pid: Pid): ShimConnection | undefined {
    return this.shims.get(pid);
  }

  /** Resolves once pid's shim connection has closed, all it sent read
   * (its process ended: the kernel closes it), or after `ms`. */
  closed(pid: Pid, ms = 2000): Promise<void> {
    const socket = this.shims.get(pid)?.socket;
    if (!socket || socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      socket.once('close', () => { clearTimeout(timer); resolve(); });
    });
  }

  /** A process that ended: its shim is forgotten (the ledger has what
   * became of its threads' slots). Its socket is left to close by itself:
   * what the agent sent last is still read (message). */
  ended(pid: Pid): void {
    this.shims.delete(pid);
    this.injections.delete(pid);
  }

  /** A child with a copy of its parent's memory (a fork, or a clone
   * without CLONE_VM: the tracer says which) has a copy of its table at
   * the same address, which the tracer fixed at the child's first stop
   * and watches as the parent's (native/tracer/shim.c). */
  inherit(child: Pid, parent: Pid): void {
    const from = this.shims.get(parent);
    if (!from) return;
    this.shims.set(child, {
      hello: { ...from.hello, pid: child }, claimedBy: new Set(), reclaiming: from.reclaiming,
      forkedFrom: parent, loadedBy: from.loadedBy, connectedAt: new Date(), pending: new Map(), nextId: 1,
    });
  }

  /** What became of an ended thread's slot (the exit ledger's `shim`), or
   * undefined for a process without a shim; asked once per thread, when
   * its ledger row is written, after which the thread is forgotten here. */
  settleFate(p: ProcessRecord, x: ExitRecord): ShimFate | undefined {
    const shim = this.shims.get(p.pid);
    if (!shim) return undefined;
    const claimed = shim.claimedBy.delete(x.tid);
    if (x.shimReclaimed) return 'reclaimed';
    return claimed ? 'released' : 'none';
  }

  /** The tracer injected pid's shim: kept with its connection, which may
   * come before or after this. */
  injected(pid: Pid, injection: Injection): void {
    const shim = this.shims.get(pid);
    if (shim) shim.injection = injection;
    else this.injections.set(pid, injection);
  }

  /** The hello of pid's shim, which is on its way, loaded by `origin`:
   * waits at most `ms`. `cancel` stops waiting (the injection failed). */
  whenHello(pid: Pid, ms: number, origin: ShimOrigin): { hello: Promise<ShimConnection>; cancel: () => void } {
    let cancel = () => {};
    const hello = new Promise<ShimConnection>((resolve, reject) => {
      const done = () => { clearTimeout(timer); this.helloWaiters.delete(pid); };
      const timer = setTimeout(() => {
        done();
        reject(new TlsdError('UNAVAILABLE', `the shim was loaded into process ${pid}, but its agent did not connect within ${ms} ms`));
      }, ms);
      this.helloWaiters.set(pid, { origin, hello: (shim) => { done(); resolve(shim); } });
      cancel = done;
    });
    return { hello, cancel };
  }

  /** Asks a shim; its answer, or UNAVAILABLE. `fields` go with the
   * request, `after` are lines that follow it (a rule set's rules). */
  request(pid: Pid, type: ShimRequestType, fields: object = {}, after: object[] = []): Promise<ShimAnswer> {
    const shim = this.shims.get(pid);
    if (!shim?.socket) return Promise.reject(new TlsdError('UNAVAILABLE', `the shim of process ${pid} is not connected`));
    const id = shim.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        shim.pending.delete(id);
        reject(new TlsdError('UNAVAILABLE', `the shim of process ${pid} did not answer ${type} in ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      shim.pending.set(id, (answer) => { clearTimeout(timer); resolve(answer); });
      shim.socket!.write(encodeLines([{ type, id, ...fields }, ...after]));
    });
  }

  /** Lines that want no answer. */
  tell(pid: Pid, lines: object[]): void {
    this.shims.get(pid)?.socket?.write(encodeLines(lines));
  }

  private accept(socket: net.Socket): void {
    let shim: ShimConnection | undefined;
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (!shim) return;
      shim.socket = undefined;
      for (const [id, resolve] of shim.pending) resolve({ type: 'error', id, message: 'the shim disconnected' });
      shim.pending.clear();
    });
    // Messages in order; the first waits while its process is not known.
    const queue: ShimMessage[] = [];
    let waiting = false, waited = false;
    const handle = (): void => {
      while (queue.length && !waiting && !socket.destroyed) {
        const message = queue[0]!;
        if (shim) {
          queue.shift();
          this.message(shim, message);
          continue;
        }
        // A spawn's shim, loaded at its exec, can say hello before the
        // tracer's news of the spawn is read (another socket).
        if (message.type === 'hello' && !waited && !this.registry.get(asPid(message.pid))) {
          waiting = waited = true;
          void this.known(asPid(message.pid)).then(() => { waiting = false; handle(); });
          return;
        }
        queue.shift();
        shim = this.hello(message, socket);
        if (!shim) return void socket.destroy();
      }
    };
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_LINE) return socket.destroy();
      let end;
      while ((end = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        const message = parseShimMessage(line);
        if (!message) {
          this.log.warn({ line: line.slice(0, 200) }, 'a shim sent a line that is not one of its messages; disconnected');
          return socket.destroy();
        }
        queue.push(message);
      }
      handle();
    });
  }

  /** Resolves once the registry knows pid, or after HELLO_KNOWN_WAIT_MS. */
  private async known(pid: Pid): Promise<void> {
    for (const end = Date.now() + HELLO_KNOWN_WAIT_MS; !this.registry.get(pid) && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
  }

  /** A thread's claim. It comes through the shim's socket, its exit
   * through the tracer: the claim can come second, after the exit's
   * ledger row was written as holding no slot. That row is corrected. */
  private claimed(shim: ShimConnection, tid: Tid): void {
    shim.claimedBy.add(tid);
    const p = this.registry.get(shim.hello.pid);
    if (p && !p.threads.has(tid) && this.registry.records.claimedAfterExit(p, tid)) shim.claimedBy.delete(tid);
  }

  private hello(message: ShimMessage, socket: net.Socket): ShimConnection | undefined {
    const hello = message.type === 'hello' ? helloOf(message) : undefined;
    const p = hello && this.registry.get(hello.pid);
    if (!hello || !p || p.state !== 'running') {
      this.log.warn({ hello: message }, 'a shim hello from no supervised process; refused');
      return undefined;
    }
    const injection = this.injections.get(p.pid);
    this.injections.delete(p.pid);
    const waiter = this.helloWaiters.get(p.pid);
    // Told by the one who loaded it, or else by the process's mappings
    // (a spawn's injection can say hello before its answer is read).
    const loadedBy = waiter?.origin ?? (injection ? 'injected' : shimOrigin(p.pid));
    const shim: ShimConnection = {
      hello, claimedBy: new Set(), reclaiming: false, loadedBy, ...(injection ? { injection } : {}),
      connectedAt: new Date(), socket, pending: new Map(), nextId: 1,
    };
    this.shims.set(p.pid, shim);
    waiter?.hello(shim);
    this.onHello(p.pid, hello);
    this.bus.publish('shim.handshake', {
      pid: p.pid, mode: hello.mode, shimVersion: hello.shimVersion, table: formatAddress(hello.table),
      slotCount: hello.slotCount, slotBytes: hello.slotBytes,
    });
    this.log.info({ tracee: p.pid, mode: hello.mode }, 'shim connected');
    return shim;
  }

  private message(shim: ShimConnection, m: ShimMessage): void {
    if (m.type === 'hello') return; // said once; a second is ignored
    if (m.type === 'slot') {
      if (m.event === 'claimed') this.claimed(shim, asTid(m.tid));
      this.bus.publish('shim.slot', { pid: shim.hello.pid, event: m.event, slot: m.slot, tid: m.tid, key: m.key });
      return;
    }
    if (m.type === 'engine' || m.type === 'sysc' || m.type === 'syst' || m.type === 'syscall') return this.onEngine(shim.hello.pid, m);
    shim.pending.get(m.id)?.(m);
    shim.pending.delete(m.id);
  }
}
