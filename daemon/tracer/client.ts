/* The daemon's end of the tracer: starts tlsd-tracer with a socketpair on
 * its fd 3, matches replies to requests, and hands every other message to
 * its listener. */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Pid } from '../types.js';
import {
  decodeMessage, encodeCommand, FrameSplitter, PROTOCOL_VERSION,
  type TracerCommand, type TracerMessage,
} from './protocol.js';

type Reply = Extract<TracerMessage, { type: 'reply' }>;
type Injected = Extract<TracerMessage, { type: 'injected' }>;
/** A command's answer: REPLY, or INJECTED for INJECT and a SPAWN with a shim. */
type Answer = Reply | Injected;
type Event = Exclude<TracerMessage, { type: 'reply' | 'injected' | 'hello' | 'log' }>;
type Pending = { resolve: (r: Answer) => void; reject: (e: Error) => void };
type CommandBody = TracerCommand extends infer C ? C extends TracerCommand ? Omit<C, 'req'> : never : never;

export class TracerGoneError extends Error {
  constructor() { super('the tracer helper is not running'); }
}

export class TracerClient {
  private nextReq = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private closeRequested = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly channel: Duplex,
    readonly pid: Pid,
    private readonly log: Logger,
  ) {}

  /** Starts the tracer and waits for its HELLO. `onEvent` receives every
   * lifecycle message in order; `onExit` is called once when it dies. */
  static start(binary: string, log: Logger, onEvent: (e: Event) => void,
    onExit: (why: string) => void): Promise<TracerClient> {
    // Its own session: a Ctrl-C meant for the daemon must not kill the
    // tracer before it has detached everything.
    const child = spawn(binary, ['3'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], detached: true });
    const channel = child.stdio[3] as Duplex;
    child.stderr?.setEncoding('utf8').on('data', (text: string) => log.warn({ text: text.trimEnd() }, 'tracer stderr'));
    return new Promise((resolve, reject) => {
      let client: TracerClient | undefined;
      const splitter = new FrameSplitter();
      const fail = (why: string) => {
        if (client) client.shutdown(why, onExit);
        else reject(new Error(`tlsd-tracer did not start: ${why}`));
      };
      channel.on('data', (chunk: Buffer) => {
        try {
          for (const body of splitter.push(chunk)) {
            const msg = decodeMessage(body);
            if (msg.type === 'hello') {
              if (msg.version !== PROTOCOL_VERSION) return fail(`protocol version ${msg.version}, expected ${PROTOCOL_VERSION}`);
              client = new TracerClient(child, channel, msg.tracerPid, log);
              resolve(client);
            } else if (!client) {
              return fail(`message ${msg.type} before hello`);
            } else if (msg.type === 'reply' || msg.type === 'injected') {
              client.settle(msg);
            } else if (msg.type === 'log') {
              log[msg.level]({ from: 'tracer' }, msg.text);
            } else {
              onEvent(msg);
            }
          }
        } catch (e) {
          log.error({ err: e }, 'tracer protocol error');
          child.kill('SIGKILL');
        }
      });
      channel.on('error', () => { /* the exit handler reports it */ });
      child.on('error', (e) => fail(e.message));
      child.on('exit', (code, signal) => fail(signal ? `killed by ${signal}` : `exited with ${code}`));
    });
  }

  private settle(reply: Answer): void {
    const p = this.pending.get(reply.req);
    if (!p) return;
    this.pending.delete(reply.req);
    p.resolve(reply);
  }

  private shutdown(why: string, onExit: (why: string) => void): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new TracerGoneError());
    this.pending.clear();
    if (this.closeRequested) this.log.info({ why }, 'tracer exited after detaching everything');
    else this.log.warn({ why }, 'tracer exited');
    onExit(why);
  }

  get running(): boolean { return !this.closed; }

  request(command: CommandBody): Promise<Answer> {
    if (this.closed) return Promise.reject(new TracerGoneError());
    const req = this.nextReq++;
    const frame = encodeCommand({ ...command, req } as TracerCommand);
    return new Promise((resolve, reject) => {
      this.pending.set(req, { resolve, reject });
      this.channel.write(frame);
    });
  }

  /** Closing our end makes the tracer detach every tracee and exit. */
  close(): Promise<void> {
    if (this.closed || this.child.exitCode !== null) return Promise.resolve();
    this.closeRequested = true;
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.channel.end();
    });
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

export type { Answer as TracerAnswer, Event as TracerEvent, Injected as TracerInjected, Reply as TracerReply };
