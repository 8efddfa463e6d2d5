/* GET /v1/events: server-sent events (text/event-stream), one per
 * lifecycle event, optionally only those of one process. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { EventsQuery } from '../schemas.js';
import type { RouteDeps } from '../server.js';

const KEEPALIVE_MS = 15000;

export const eventRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  app.get('/v1/events', { schema: { summary: 'Lifecycle events as server-sent events (text/event-stream)', produces: ['text/event-stream'], querystring: EventsQuery } }, (request, reply) => {
    const only = request.query.pid;
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    out.write(': tlsd events\n\n');
    let id = 0;
    const unsubscribe = supervisor.bus.subscribe((e) => {
      if (only !== undefined && e.data.pid !== only) return;
      out.write(`id: ${++id}\nevent: ${e.type}\ndata: ${JSON.stringify({ at: e.at, ...e.data })}\n\n`);
    });
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
    request.raw.on('close', () => {
      clearInterval(keepalive);
      unsubscribe();
    });
  });
};
