/* The app factory (STYLE.md, "From fastify"): returns an un-started
 * server; tests use app.inject(), the daemon listens on a socket. */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Supervisor } from '../daemon/supervisor.js';
import { installErrorHandling } from './errors.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { processRoutes } from './routes/processes.js';
import { threadRoutes } from './routes/threads.js';
import { tlsRoutes } from './routes/tls.js';

export interface RouteDeps {
  supervisor: Supervisor;
  version: string;
}

const BODY_LIMIT = 1024 * 1024;

export function buildServer(deps: RouteDeps & { log: Logger }): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.log.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    // Event streams never go idle; closing must not wait for them.
    forceCloseConnections: true,
    // Unknown fields are an error, not silently dropped (DESIGN.md invariant 5).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app);
  const routeDeps = { supervisor: deps.supervisor, version: deps.version };
  void app.register(healthRoutes, routeDeps);
  void app.register(processRoutes, routeDeps);
  void app.register(threadRoutes, routeDeps);
  void app.register(tlsRoutes, routeDeps);
  void app.register(eventRoutes, routeDeps);
  return app as unknown as FastifyInstance;
}
