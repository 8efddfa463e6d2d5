/* Syscall interposition on a supervised process: its rules, what they
 * counted, what they recorded (daemon/syscalls/interposition.ts). Rules,
 * counts and records stay readable after the process ends. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, ProcessParams, Rule, RuleBody, RuleList, RuleParams, SyscallLog, SyscallLogQuery, SyscallStats } from '../schemas.js';
import type { RouteDeps } from '../server.js';

const errors = { 404: ErrorBody, 410: ErrorBody, 503: ErrorBody };

export const syscallRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  const { syscalls } = supervisor;

  app.post('/v1/processes/:pid/syscalls/rules', {
    schema: {
      summary: 'Add a syscall rule: select calls (strace\'s set syntax, per thread, by path) to count, trace, fail, fake, delay or signal; in force at once',
      params: ProcessParams, body: RuleBody, response: { 201: Rule, 400: ErrorBody, ...errors },
    },
  }, async (request, reply) => {
    const rule = await syscalls.addRule(supervisor.getProcess(request.params.pid), request.body);
    return reply.status(201).send(rule);
  });

  app.get('/v1/processes/:pid/syscalls/rules', {
    schema: { summary: 'A process\'s syscall rules, in the order they are matched', params: ProcessParams, response: { 200: RuleList, ...errors } },
  }, async (request) => ({ rules: syscalls.rules(supervisor.getProcess(request.params.pid)) }));

  app.delete('/v1/processes/:pid/syscalls/rules/:id', {
    schema: { summary: 'Remove a syscall rule; with the last one gone, the process\'s threads no longer stop at syscalls', params: RuleParams, response: { 204: { type: 'null' }, ...errors } },
  }, async (request, reply) => {
    await syscalls.removeRule(supervisor.getProcess(request.params.pid), request.params.id);
    return reply.status(204).send(null);
  });

  app.get('/v1/processes/:pid/syscalls/stats', {
    schema: { summary: 'Calls, errors and time per syscall and per thread, of the calls rules selected (strace -c -f)', params: ProcessParams, response: { 200: SyscallStats, ...errors } },
  }, async (request) => syscalls.stats(supervisor.getProcess(request.params.pid)));

  app.get('/v1/processes/:pid/syscalls/log', {
    schema: {
      summary: 'The calls rules with trace recorded, oldest first (the last 100,000 kept); live: GET /v1/events?types=syscall',
      params: ProcessParams, querystring: SyscallLogQuery, response: { 200: SyscallLog, ...errors },
    },
  }, async (request) => {
    const p = supervisor.getProcess(request.params.pid);
    await syscalls.settled(p);
    const { records, dropped } = syscalls.records(p, request.query.since, request.query.limit);
    return { records, ...(dropped ? { dropped: true as const } : {}) };
  });
};
