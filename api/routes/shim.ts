/* The shim of a process: what its hello said and its table as it is now;
 * and one thread's slot and variables (daemon/shim/view.ts). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { viewShim, viewThreadShim } from '../../daemon/shim/view.js';
import { ErrorBody, ProcessParams, ShimRequestBody, ShimStatus, ThreadParams, ThreadShim } from '../schemas.js';
import { shimJson, threadShimJson } from '../serialize.js';
import type { RouteDeps } from '../server.js';

const errors = { 404: ErrorBody, 410: ErrorBody, 503: ErrorBody };
const injectErrors = { 400: ErrorBody, 403: ErrorBody, 409: ErrorBody, 500: ErrorBody, ...errors };

export const shimRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  app.get('/v1/processes/:pid/shim', {
    schema: { summary: 'The shim loaded in a process: mode, table, slots, variables', params: ProcessParams, response: { 200: ShimStatus, ...errors } },
  }, async (request) => {
    const shim = viewShim(supervisor.shims, supervisor.getProcess(request.params.pid));
    return shim ? shimJson(shim) : { loaded: false };
  });

  app.post('/v1/processes/:pid/shim', {
    schema: {
      summary: 'Inject libtlsshim into a supervised process with tlsd\'s own loader (no code of the program runs; static programs and Go too); answered once the shim said hello',
      params: ProcessParams, body: ShimRequestBody, response: { 201: ShimStatus, ...injectErrors },
    },
  }, async (request, reply) => {
    const p = supervisor.getProcess(request.params.pid);
    await supervisor.injectShim(p.pid, request.body);
    return reply.status(201).send(shimJson(viewShim(supervisor.shims, p)!));
  });

  app.get('/v1/processes/:pid/threads/:tid/shim', {
    schema: { summary: 'One thread\'s shim slot and the bytes of its variables', params: ThreadParams, response: { 200: ThreadShim, 400: ErrorBody, ...errors } },
  }, async (request) => {
    const { process, thread } = supervisor.getThread(request.params.pid, request.params.tid);
    return threadShimJson(thread.tid, viewThreadShim(supervisor.shims, process, thread));
  });
};
