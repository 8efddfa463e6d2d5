/* GET /metrics: Prometheus text format, every series prefixed `tlsd_`.
 *
 * What the registry and the event bus already count is read when scraped
 * (collect), so that the tracer's hot paths never touch a metric; only
 * requests and TLS reads are counted as they happen. */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Supervisor } from '../daemon/supervisor.js';

export class Metrics {
  readonly registry = new Registry();
  private readonly requestSeconds: Histogram<'method' | 'route' | 'status'>;
  private readonly tlsValues: Counter<'state'>;

  constructor(supervisor: Supervisor) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'tlsd_' });
    new Gauge({
      name: 'tlsd_supervised_processes', help: 'Processes in the records (running, or supervised before), by state', labelNames: ['state'], registers,
      collect() {
        this.reset();
        for (const { state, n } of supervisor.records.countByState()) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'tlsd_supervised_threads', help: 'Live threads of supervised processes', registers,
      collect() { this.set(supervisor.registry.liveThreadCount); },
    });
    new Counter({
      name: 'tlsd_events_total', help: 'Lifecycle events, by kind', labelNames: ['kind'], registers,
      collect() {
        // The bus's counts only grow, so setting them keeps counter semantics.
        this.reset();
        for (const [kind, n] of supervisor.bus.counts) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: 'tlsd_tracer_restarts_total', help: 'Times the tracer helper died and was started again', registers,
      collect() { this.reset(); this.inc(supervisor.tracerRestarts); },
    });
    new Gauge({
      name: 'tlsd_tracer_up', help: '1 when the tracer helper is running', registers,
      collect() { this.set(supervisor.tracerPid === undefined ? 0 : 1); },
    });
    this.requestSeconds = new Histogram({
      name: 'tlsd_http_request_duration_seconds', help: 'API requests, by route and status',
      labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers,
    });
    this.tlsValues = new Counter({
      name: 'tlsd_tls_values_total', help: 'Per-thread TLS values read, by outcome', labelNames: ['state'], registers,
    });
  }

  tlsRead(values: ReadonlyArray<{ state: string }>): void {
    for (const v of values) this.tlsValues.inc({ state: v.state });
  }

  /** The request-duration hook and the /metrics route. */
  install(app: FastifyInstance): void {
    app.addHook('onResponse', async (request, reply) => {
      this.requestSeconds.observe({
        method: request.method,
        // The route's pattern, not the URL: one series per route, not per pid.
        route: request.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      }, reply.elapsedTime / 1000);
    });
    // A plugin, so that it is added after the docs generator is loaded.
    void app.register(async (scope) => {
      scope.get('/metrics', { schema: { summary: 'Prometheus text format', produces: ['text/plain'] } }, async (_request, reply) => {
        return reply.type(this.registry.contentType).send(await this.registry.metrics());
      });
    });
  }
}
