/* Lifecycle events: GET /v1/events streams them as server-sent events
 * (text/event-stream); GET /v1/events/recent pages through the recorded
 * ones. Both can be limited to one process; both take `since` (an event
 * id), and the stream also the standard Last-Event-ID header, to resume
 * (with at most MAX_REPLAY recorded events: more is for paging). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { LifecycleEvent } from '../../daemon/event-bus.js';
import { asPid } from '../../daemon/types.js';
import { pageRequest } from '../query.js';
import { EventList, EventsQuery, RecentEventsQuery } from '../schemas.js';
import type { RouteDeps } from '../server.js';

const KEEPALIVE_MS = 15000;

const eventJson = (e: LifecycleEvent) => ({ id: e.id, type: e.type, at: e.at, ...e.data });

export const eventRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  app.get('/v1/events/recent', {
    schema: { summary: 'The recorded lifecycle events, oldest first, a page at a time', querystring: RecentEventsQuery, response: { 200: EventList } },
  }, async (request) => {
    const { pid, since } = request.query;
    const filter = { ...(pid !== undefined ? { pid: asPid(pid) } : {}), ...(since !== undefined ? { sinceId: since } : {}) };
    const { items, ...rest } = supervisor.records.eventPage(filter, pageRequest(request.query));
    return { events: items.map(eventJson), ...rest };
  });

  app.get('/v1/events', {
    schema: { summary: 'Lifecycle events as server-sent events (text/event-stream)', produces: ['text/event-stream'], querystring: EventsQuery },
  }, (request, reply) => {
    const { pid } = request.query;
    const lastEventId = Number(request.headers['last-event-id']);
    const since = request.query.since ?? (Number.isInteger(lastEventId) && lastEventId >= 0 ? lastEventId : undefined);
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    out.write(': tlsd events\n\n');
    const send = (e: LifecycleEvent) => {
      if (pid !== undefined && e.data.pid !== pid) return;
      const { id, type, ...data } = eventJson(e);
      out.write(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    // Replay and subscribe in one turn of the event loop: nothing between.
    if (since !== undefined) supervisor.records.eventsAfter(since, pid === undefined ? undefined : asPid(pid)).forEach(send);
    const unsubscribe = supervisor.bus.subscribe(send);
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
    request.raw.on('close', () => {
      clearInterval(keepalive);
      unsubscribe();
    });
  });
};
