import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { TlsdError } from '../../daemon/errors.js';
import type { ProcessRecord } from '../../daemon/registry.js';
import { viewProcess } from '../../daemon/views.js';
import { endingFilter, pageRequest } from '../query.js';
import { AttachBody, DetachQuery, Detached, ErrorBody, Process, ProcessList, ProcessParams, ProcessesQuery, SpawnBody } from '../schemas.js';
import { processJson } from '../serialize.js';
import type { RouteDeps } from '../server.js';

const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 410: ErrorBody, 503: ErrorBody };

export const processRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  const json = (p: ProcessRecord) => processJson(viewProcess(p, supervisor.registry.run));

  app.get('/v1/processes', {
    schema: { summary: 'The supervised processes, running or ended, oldest first, a page at a time', querystring: ProcessesQuery, response: { 200: ProcessList, 400: ErrorBody } },
  }, async (request) => {
    const { state, exe, argv } = request.query;
    const filter = { ...endingFilter(request.query), ...(state ? { state } : {}), ...(exe ? { exe } : {}), ...(argv ? { argv } : {}) };
    const { items, ...rest } = supervisor.records.processPage(filter, pageRequest(request.query), (pid, serial) => supervisor.registry.held(pid, serial));
    return { processes: items.map(json), ...rest };
  });

  app.post('/v1/processes', {
    schema: { summary: 'Attach to a process ({ pid }) or spawn one ({ argv, ... })', body: Type.Union([AttachBody, SpawnBody]), response: { 201: Process, ...errors } },
  }, async (request, reply) => {
    const body = request.body;
    const p = 'pid' in body
      ? (await supervisor.attach(body.pid, body.shim)).process
      : await supervisor.spawn(body);
    return reply.status(201).send(json(p));
  });

  app.get('/v1/processes/:pid', { schema: { summary: 'One process', params: ProcessParams, response: { 200: Process, 404: ErrorBody } } }, async (request) => {
    return json(supervisor.getProcess(request.params.pid));
  });

  app.delete('/v1/processes/:pid', {
    schema: {
      summary: 'A running process: detach, with the processes followed from it unless ?keepChildren=true (a spawned process keeps running unless ?kill=true). '
        + 'One no longer supervised: forget its record and ledger (204). ?ifState= acts on one state only',
      params: ProcessParams, querystring: DetachQuery, response: { 200: Detached, 204: Type.Null(), ...errors },
    },
  }, async (request, reply) => {
    const { pid } = request.params;
    const { ifState, ...options } = request.query;
    const p = supervisor.getProcess(pid);
    if (p.state === 'running' && ifState === 'ended') throw new TlsdError('STILL_RUNNING', `process ${pid} is running: detach it first`);
    if (p.state !== 'running' && ifState !== 'running') {
      supervisor.registry.forget(p);
      return reply.status(204).send(null);
    }
    const { process, descendants } = await supervisor.detach(pid, options);
    return { ...json(process), detachedDescendants: descendants.map((q) => q.pid) };
  });
};
