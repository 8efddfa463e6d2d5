import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Health } from '../schemas.js';
import type { RouteDeps } from '../server.js';

export const healthRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor, version }) => {
  app.get('/v1/health', { schema: { summary: 'The daemon, its tracer and what it supervises', response: { 200: Health } } }, async () => {
    const running = supervisor.registry.list().filter((p) => p.state === 'running');
    const tracerPid = supervisor.tracerPid ?? null;
    return {
      status: tracerPid ? 'ok' as const : 'degraded' as const,
      version,
      pid: process.pid,
      tracerPid,
      uptimeSeconds: Math.round((Date.now() - supervisor.startedAt) / 1000),
      processes: running.length,
      threads: supervisor.registry.liveThreadCount,
      tracerRestarts: supervisor.tracerRestarts,
      run: supervisor.registry.run,
      records: { ...supervisor.records.summary(), ...(supervisor.recordsKeptAside ? { keptAside: supervisor.recordsKeptAside } : {}) },
    };
  });
};
