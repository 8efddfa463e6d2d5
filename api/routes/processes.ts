import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { processPage } from '../../daemon/queries.js';
import { viewProcess } from '../../daemon/views.js';
import { endingFilter, pageRequest } from '../query.js';
import { AttachBody, DetachQuery, Detached, ErrorBody, Process, ProcessList, ProcessParams, ProcessesQuery, SpawnBody } from '../schemas.js';
import { processJson } from '../serialize.js';
import type { RouteDeps } from '../server.js';

const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 410: ErrorBody, 503: ErrorBody };

export const processRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  app.get('/v1/processes', {
    schema: { summary: 'The supervised processes, running or ended, oldest first, a page at a time', querystring: ProcessesQuery, response: { 200: ProcessList, 400: ErrorBody } },
  }, async (request) => {
    const { state, exe, argv } = request.query;
    const filter = { ...endingFilter(request.query), ...(state ? { state } : {}), ...(exe ? { exe } : {}), ...(argv ? { argv } : {}) };
    const { items, ...rest } = processPage(supervisor.registry, filter, pageRequest(request.query));
    return { processes: items.map((p) => processJson(viewProcess(p))), ...rest };
  });

  app.post('/v1/processes', {
    schema: { summary: 'Attach to a process ({ pid }) or spawn one ({ argv, ... })', body: Type.Union([AttachBody, SpawnBody]), response: { 201: Process, ...errors } },
  }, async (request, reply) => {
    const body = request.body;
    const p = 'pid' in body
      ? (await supervisor.attach(body.pid)).process
      : await supervisor.spawn(body);
    return reply.status(201).send(processJson(viewProcess(p)));
  });

  app.get('/v1/processes/:pid', { schema: { summary: 'One process', params: ProcessParams, response: { 200: Process, 404: ErrorBody } } }, async (request) => {
    return processJson(viewProcess(supervisor.getProcess(request.params.pid)));
  });

  app.delete('/v1/processes/:pid', {
    schema: {
      summary: 'Detach, with the processes followed from it unless ?keepChildren=true (a spawned process keeps running unless ?kill=true)',
      params: ProcessParams, querystring: DetachQuery, response: { 200: Detached, ...errors },
    },
  }, async (request) => {
    const { process, descendants } = await supervisor.detach(request.params.pid, request.query);
    return { ...processJson(viewProcess(process)), detachedDescendants: descendants.map((q) => q.pid) };
  });
};
