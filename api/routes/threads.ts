import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { viewThread } from '../../daemon/views.js';
import { endingFilter, pageRequest } from '../query.js';
import { ErrorBody, ExitList, ExitsQuery, ProcessParams, Thread, ThreadParams, ThreadWithTcb } from '../schemas.js';
import { exitJson, tcbJson, threadJson } from '../serialize.js';
import type { RouteDeps } from '../server.js';

export const threadRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  app.get('/v1/processes/:pid/threads', {
    schema: { summary: 'Live threads of a process', params: ProcessParams, response: { 200: Type.Object({ threads: Type.Array(Thread) }), 404: ErrorBody } },
  }, async (request) => {
    const p = supervisor.getProcess(request.params.pid);
    await supervisor.fsBases.refreshUnknown(p);
    const goroutine = supervisor.go.reader(p);
    return { threads: [...p.threads.values()].map((t) => threadJson(viewThread(t, goroutine?.(t)))) };
  });

  app.get('/v1/processes/:pid/threads/:tid', {
    schema: { summary: 'One thread with its TCB', params: ThreadParams, response: { 200: ThreadWithTcb, 404: ErrorBody, 410: ErrorBody } },
  }, async (request) => {
    const { process, thread } = supervisor.getThread(request.params.pid, request.params.tid);
    const tcb = await supervisor.fsBases.tcb(process, thread);
    return { ...threadJson(viewThread(thread, supervisor.go.reader(process)?.(thread))), tcb: tcbJson(tcb) };
  });

  app.get('/v1/processes/:pid/exits', {
    schema: { summary: 'The exit ledger: how each thread ended, in order, a page at a time', params: ProcessParams, querystring: ExitsQuery, response: { 200: ExitList, 400: ErrorBody, 404: ErrorBody } },
  }, async (request) => {
    const p = supervisor.getProcess(request.params.pid);
    const { how } = request.query;
    const { items, ...rest } = supervisor.records.exitPage(p, { ...endingFilter(request.query), ...(how ? { how } : {}) }, pageRequest(request.query));
    return { exits: items.map(exitJson), ...rest, ...(p.exitsDropped ? { dropped: p.exitsDropped } : {}) };
  });
};
