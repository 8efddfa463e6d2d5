/* Lifecycle events: GET /v1/events streams them as server-sent events
 * (text/event-stream); GET /v1/events/recent pages through the recorded
 * ones. Both can be limited to one process; both take `since` (an event
 * id), and the stream also the standard Last-Event-ID header, to resume
 * (with at most MAX_REPLAY recorded events: more is for paging). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { TlsdError } from '../../daemon/errors.js';
import { lifecycleEventTypes, type LifecycleEvent, type LifecycleEventType } from '../../daemon/event-bus.js';
import type { SyscallRecord } from '../../daemon/syscalls/interposition.js';
import { asPid } from '../../daemon/types.js';
import { pageRequest } from '../query.js';
import { EventList, EventsQuery, RecentEventsQuery } from '../schemas.js';
import type { RouteDeps } from '../server.js';

const KEEPALIVE_MS = 15000;

const eventJson = (e: LifecycleEvent) => ({ id: e.id, type: e.type, at: e.at, ...e.data });

/** ?types=: the lifecycle types to stream, and whether syscall records
 * too; by default every lifecycle type and no records. */
function streamTypes(types: string | undefined): { lifecycle: Set<string>; syscalls: boolean } {
  if (types === undefined) return { lifecycle: new Set(lifecycleEventTypes), syscalls: false };
  const asked = new Set(types.split(','));
  for (const type of asked) {
    if (type !== 'syscall' && !lifecycleEventTypes.includes(type as LifecycleEventType)) {
      throw new TlsdError('INVALID_ARGUMENT', `types: "${type}" is not an event type (${[...lifecycleEventTypes, 'syscall'].join(', ')})`);
    }
  }
  return { lifecycle: asked, syscalls: asked.has('syscall') };
}

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
    schema: { summary: 'Lifecycle events, and with ?types=syscall syscall records, as server-sent events (text/event-stream)', produces: ['text/event-stream'], querystring: EventsQuery },
  }, (request, reply) => {
    const { pid } = request.query;
    const wanted = streamTypes(request.query.types);
    const lastEventId = Number(request.headers['last-event-id']);
    const since = request.query.since ?? (Number.isInteger(lastEventId) && lastEventId >= 0 ? lastEventId : undefined);
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    out.write(': tlsd events\n\n');
    const send = (e: LifecycleEvent) => {
      if ((pid !== undefined && e.data.pid !== pid) || !wanted.lifecycle.has(e.type)) return;
      const { id, type, ...data } = eventJson(e);
      out.write(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    // Replay and subscribe in one turn of the event loop: nothing between.
    if (since !== undefined) supervisor.records.eventsAfter(since, pid === undefined ? undefined : asPid(pid)).forEach(send);
    const unsubscribe = supervisor.bus.subscribe(send);
    // Records have no event id: they are not kept with the lifecycle
    // history, so a resumed stream cannot replay them.
    const sendRecord = (r: SyscallRecord) => {
      if (pid === undefined || r.pid === pid) out.write(`event: syscall\ndata: ${JSON.stringify(r)}\n\n`);
    };
    const unsubscribeRecords = wanted.syscalls ? supervisor.syscalls.subscribe(sendRecord) : () => {};
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
    request.raw.on('close', () => {
      clearInterval(keepalive);
      unsubscribe();
      unsubscribeRecords();
    });
  });
};
