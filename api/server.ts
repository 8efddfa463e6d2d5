/* The app factory: returns an un-started
 * server; tests use app.inject(), the daemon listens on a socket. */
import { randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { TlsdError } from '../daemon/errors.js';
import type { Supervisor } from '../daemon/supervisor.js';
import type { TokenGuard } from './auth.js';
import { installDocs } from './docs.js';
import { frameworkError, installErrorHandling } from './errors.js';
import { MAX_PARAM_LENGTH } from './schemas.js';
import { Metrics } from './metrics.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { processRoutes } from './routes/processes.js';
import { shimRoutes } from './routes/shim.js';
import { syscallRoutes } from './routes/syscalls.js';
import { threadRoutes } from './routes/threads.js';
import { tlsRoutes } from './routes/tls.js';

export interface RouteDeps {
  supervisor: Supervisor;
  version: string;
  metrics: Metrics;
}

export interface ServerOptions {
  supervisor: Supervisor;
  version: string;
  log: Logger;
  /** Set when a TCP listener will be added: its requests need the token. */
  tokenGuard?: TokenGuard;
  /** Requests per second per client; default 1000. */
  rateLimit?: number;
}

const BODY_LIMIT = 1024 * 1024;
const DEFAULT_RATE_LIMIT = 1000;
const REQUEST_ID_HEADER = 'x-request-id';

export function buildServer(opts: ServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.log.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // The router's own refusals (a bad URL, a parameter too long) get the
    // API's error shape too.
    frameworkErrors: frameworkError,
    // Event streams never go idle; closing must not wait for them.
    forceCloseConnections: true,
    // Unknown fields are an error, not silently dropped (docs/architecture.md invariant 5).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true } },
    // A caller's own request id is kept, so that its logs and ours join up.
    requestIdHeader: REQUEST_ID_HEADER,
    genReqId: () => randomUUID(),
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as FastifyInstance;
  app.addHook('onRequest', async (request, reply) => { reply.header(REQUEST_ID_HEADER, request.id); });
  installErrorHandling(app);
  // Every request, matched or not, pays into the budget before anything
  // else (the token check included, so guessing tokens is limited too).
  void app.register(rateLimit, {
    global: false,
    max: opts.rateLimit ?? DEFAULT_RATE_LIMIT,
    timeWindow: 1000,
    // A Unix socket has no client address: its clients share one budget
    // (the socket's mode already says who they are).
    keyGenerator: (request) => request.raw.socket.remoteAddress ?? 'unix-socket',
    errorResponseBuilder: (_request, context) =>
      new TlsdError('RATE_LIMITED', `more than ${context.max} requests per second; retry in ${context.after}`),
  });
  app.after(() => {
    app.addHook('onRequest', app.rateLimit());
    opts.tokenGuard?.install(app);
  });
  installDocs(app, opts.version);
  const metrics = new Metrics(opts.supervisor);
  metrics.install(app);
  const routeDeps: RouteDeps = { supervisor: opts.supervisor, version: opts.version, metrics };
  void app.register(healthRoutes, routeDeps);
  void app.register(processRoutes, routeDeps);
  void app.register(threadRoutes, routeDeps);
  void app.register(tlsRoutes, routeDeps);
  void app.register(shimRoutes, routeDeps);
  void app.register(syscallRoutes, routeDeps);
  void app.register(eventRoutes, routeDeps);
  return app;
}
