/* Lifecycle events (docs/api.md "Events") from the registry to
 * whoever listens: the records (which keep them: records/records.ts),
 * the SSE route, metrics, tests. */
import { EventEmitter } from 'node:events';
import type { EventData, LifecycleEventType } from './events.js';

export type { LifecycleEventType } from './events.js';
export { lifecycleEventTypes } from './events.js';

export type LifecycleEvent = { [K in LifecycleEventType]: {
  /** 1, 2, 3, ... in the order of publication, across the daemon's runs. */
  id: number;
  type: K;
  at: string;
  data: EventData<K>;
} }[LifecycleEventType];

export class EventBus {
  private readonly emitter = new EventEmitter();
  /** Events published so far by this run, by type (for /metrics). */
  readonly counts = new Map<LifecycleEventType, number>();

  /** `lastId`: the id of the last event an earlier run published. */
  constructor(private lastId = 0) { this.emitter.setMaxListeners(0); }

  publish<K extends LifecycleEventType>(type: K, data: EventData<K>, at = new Date()): void {
    const event = { id: ++this.lastId, type, at: at.toISOString(), data } as LifecycleEvent;
    this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
    this.emitter.emit('event', event);
  }

  subscribe(listener: (e: LifecycleEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
