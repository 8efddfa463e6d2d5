/* Keeps a tracer running: starts it, and when it dies (the kernel then
 * detaches every tracee) starts another, after a growing delay, and says
 * so, so that the supervisor can attach again (docs/architecture.md "Why a
 * helper process"). Requests fail with UNAVAILABLE while there is none. */
import type { Logger } from 'pino';
import { TlsdError } from '../errors.js';
import type { Pid } from '../types.js';
import { TracerClient, TracerGoneError, type TracerAnswer, type TracerEvent, type TracerInjected, type TracerReply } from './client.js';

/** Delays before each new attempt; the last is repeated. */
const RESTART_DELAYS_MS = [0, 100, 500, 1000, 5000];

export type TracerRequest = Parameters<TracerClient['request']>[0];

export interface TracerKeeperEvents {
  /** Every lifecycle message, in order. */
  onEvent(e: TracerEvent): void;
  /** The tracer died; a new one is being started. */
  onLost(at: Date): void;
  /** A new tracer answers, after a death. */
  onRestarted(): Promise<void>;
}

export class TracerKeeper {
  private tracer?: TracerClient;
  private closing = false;
  restarts = 0;

  private constructor(private readonly binary: string, private readonly log: Logger, private readonly events: TracerKeeperEvents) {}

  static async start(binary: string, log: Logger, events: TracerKeeperEvents): Promise<TracerKeeper> {
    const k = new TracerKeeper(binary, log, events);
    await k.startOne();
    return k;
  }

  get pid(): Pid | undefined { return this.tracer?.running ? this.tracer.pid : undefined; }
  get running(): boolean { return this.tracer?.running ?? false; }

  /** A command answered with REPLY. */
  async request(command: TracerRequest): Promise<TracerReply> {
    return expect(await this.answer(command), 'reply');
  }

  /** INJECT, or a SPAWN with a shim: answered with INJECTED. */
  async inject(command: TracerRequest): Promise<TracerInjected> {
    return expect(await this.answer(command), 'injected');
  }

  /** A command whose answer may be either (a SPAWN with a shim: INJECTED
   * at its exec, REPLY if the exec failed). */
  async answer(command: TracerRequest): Promise<TracerAnswer> {
    if (!this.tracer?.running) throw new TlsdError('UNAVAILABLE', 'the tracer helper is restarting; try again shortly');
    try {
      return await this.tracer.request(command);
    } catch (e) {
      if (e instanceof TracerGoneError) throw new TlsdError('UNAVAILABLE', 'the tracer helper died during the request; try again');
      throw e;
    }
  }

  /** Lets it detach every tracee and end (it does when its socket closes). */
  async close(): Promise<void> {
    this.closing = true;
    await this.tracer?.close();
  }

  /** For tests of crash safety: kill the tracer helper outright. */
  kill(): void {
    this.tracer?.kill();
  }

  private async startOne(): Promise<void> {
    this.tracer = await TracerClient.start(this.binary, this.log, (e) => this.events.onEvent(e), (why) => this.exited(why));
    this.log.info({ tracerPid: this.tracer.pid }, 'tracer started');
  }

  private exited(why: string): void {
    if (this.closing) return;
    this.log.error({ why }, 'tracer died; the kernel detached its tracees; restarting it');
    this.events.onLost(new Date());
    void this.restart();
  }

  private async restart(): Promise<void> {
    this.restarts++;
    for (let attempt = 0; !this.closing; attempt++) {
      const delay = RESTART_DELAYS_MS[Math.min(attempt, RESTART_DELAYS_MS.length - 1)] ?? 0;
      await new Promise((r) => setTimeout(r, delay));
      try {
        await this.startOne();
        break;
      } catch (e) {
        this.log.error({ err: e, attempt }, 'tracer restart failed');
      }
    }
    if (!this.closing) await this.events.onRestarted();
  }
}

function expect<T extends TracerAnswer['type']>(a: TracerAnswer, type: T): Extract<TracerAnswer, { type: T }> {
  if (a.type !== type) throw new TlsdError('INTERNAL', `the tracer answered ${a.type} where ${type} was due`);
  return a as Extract<TracerAnswer, { type: T }>;
}
