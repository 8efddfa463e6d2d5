/* Lifecycle events (docs/api.md "Events") from the registry to
 * whoever listens: the SSE route, metrics, tests. The last RETAINED
 * events are kept, so that a client can see what just happened
 * (`tlsctl events`) and an event stream can resume where it broke off
 * (SSE `Last-Event-ID`). */
import { EventEmitter } from 'node:events';
import type { EventData, LifecycleEventType } from './events.js';

export type { LifecycleEventType } from './events.js';
export { lifecycleEventTypes } from './events.js';

export type LifecycleEvent = { [K in LifecycleEventType]: {
  /** 1, 2, 3, ... in the order of publication, for the daemon's life. */
  id: number;
  type: K;
  at: string;
  data: EventData<K>;
} }[LifecycleEventType];

const RETAINED = 1000;

export class EventBus {
  private readonly emitter = new EventEmitter();
  private readonly retained: LifecycleEvent[] = [];
  private lastId = 0;
  /** Events published so far, by type (for /metrics). */
  readonly counts = new Map<LifecycleEventType, number>();
  constructor() { this.emitter.setMaxListeners(0); }

  publish<K extends LifecycleEventType>(type: K, data: EventData<K>, at = new Date()): void {
    const event = { id: ++this.lastId, type, at: at.toISOString(), data } as LifecycleEvent;
    this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
    this.retained.push(event);
    // Trimmed in batches, so that keeping history is O(1) per event.
    if (this.retained.length >= 2 * RETAINED) this.retained.splice(0, this.retained.length - RETAINED);
    this.emitter.emit('event', event);
  }

  /** Retained events after `afterId`, oldest first. */
  since(afterId = 0): LifecycleEvent[] {
    const first = this.retained.findIndex((e) => e.id > afterId);
    return first < 0 ? [] : this.retained.slice(Math.max(first, this.retained.length - RETAINED));
  }

  subscribe(listener: (e: LifecycleEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
