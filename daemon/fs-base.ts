/* Keeping a thread's FS base right (docs/architecture.md invariant 3): the
 * value from its latest stop is believed while its TCB's self pointer
 * names it; otherwise, or while it is unknown (0 after an exec, until the
 * program sets it without a stop), the tracer interrupts that one thread
 * briefly and reads it. */
import type { ProcessRecord, ThreadRecord } from './registry.js';
import { readTcb, tcbIsCurrent, type Tcb } from './tcb.js';
import type { TracerReply } from './tracer/client.js';
import type { TracerRequest } from './tracer/keeper.js';
import { asAddress } from './types.js';

export class FsBases {
  constructor(private readonly request: (c: TracerRequest) => Promise<TracerReply>) {}

  async refresh(t: ThreadRecord): Promise<void> {
    const reply = await this.request({ type: 'refresh', tid: t.tid });
    if (reply.errno === 0) Object.assign(t, { fsBase: asAddress(reply.value), fsBaseSource: 'refresh' });
  }

  /** Threads whose FS base is not known yet are asked for it. */
  async refreshUnknown(p: ProcessRecord): Promise<void> {
    const unknown = [...p.threads.values()].filter((t) => t.fsBase === 0n);
    await Promise.all(unknown.map((t) => this.refresh(t).catch(() => undefined)));
  }

  /** The thread's TCB, its FS base refreshed first if the cached one is
   * not the TCB's; undefined when there is none there (static Go). */
  async tcb(p: ProcessRecord, t: ThreadRecord): Promise<Tcb | undefined> {
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
    await this.refresh(t).catch(() => undefined);
    return attempt();
  }
}
