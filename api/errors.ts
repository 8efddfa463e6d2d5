/* One place maps every failure to `{ error: { code, message } }`
 * (docs/architecture.md invariant 5). Handlers throw; they never format errors. */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorStatus, TlsdError, type ErrorCode } from '../daemon/errors.js';

/** A framework error's code by its status: the first, most general, code
 * of each status in errorStatus (INVALID_ARGUMENT for 400, not one of the
 * injection's). */
const codeForStatus: Record<number, ErrorCode> = Object.fromEntries(
  Object.entries(errorStatus).reverse().map(([code, status]) => [status, code as ErrorCode]),
);

function toTlsdError(err: FastifyError | TlsdError | Error): TlsdError {
  if (err instanceof TlsdError) return err;
  const f = err as FastifyError;
  if (f.validation) return new TlsdError('INVALID_ARGUMENT', f.message);
  const status = f.statusCode ?? 500;
  if (status === 413) return new TlsdError('PAYLOAD_TOO_LARGE', f.message);
  if (f.code === 'FST_ERR_MAX_PARAM_LENGTH') return new TlsdError('URI_TOO_LONG', 'a path parameter is longer than the API takes');
  if (status >= 400 && status < 500) return new TlsdError(codeForStatus[status] ?? 'INVALID_ARGUMENT', f.message);
  return new TlsdError('INTERNAL', 'internal error');
}

function send(reply: FastifyReply, e: TlsdError) {
  return reply.status(e.status).send({ error: { code: e.code, message: e.message } });
}

/** For fastify's `frameworkErrors`: what the router refuses before any
 * route runs. */
export function frameworkError(err: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  return send(reply, toTlsdError(err));
}

/** Installed on the root instance so that it covers every route. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | TlsdError, request, reply) => {
    const e = toTlsdError(err);
    if (e.status >= 500) request.log.error({ err }, 'request failed');
    return send(reply, e);
  });
  app.setNotFoundHandler((request, reply) => {
    return reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url}` } });
  });
}
