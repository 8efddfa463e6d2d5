/* Lifecycle events (DESIGN.md `GET /v1/events`) from the registry to
 * whoever listens: the SSE route, metrics, tests. */
import { EventEmitter } from 'node:events';

export type LifecycleEventType =
  | 'process.attached' | 'process.spawned' | 'thread.created' | 'thread.exited'
  | 'process.exec' | 'process.exited' | 'process.detached';

export interface LifecycleEvent {
  type: LifecycleEventType;
  at: string;
  data: Record<string, unknown>;
}

export class EventBus {
  private readonly emitter = new EventEmitter();
  /** Events published so far, by type (for /metrics). */
  readonly counts = new Map<LifecycleEventType, number>();
  constructor() { this.emitter.setMaxListeners(0); }

  /** `data` is only called when someone listens: with nobody listening,
   * thread churn must not pay for building events. */
  publish(type: LifecycleEventType, data: () => Record<string, unknown>, at = new Date()): void {
    this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
    if (this.emitter.listenerCount('event') === 0) return;
    this.emitter.emit('event', { type, at: at.toISOString(), data: data() } satisfies LifecycleEvent);
  }

  subscribe(listener: (e: LifecycleEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
