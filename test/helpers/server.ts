/* The app in-process (buildServer + a real Supervisor and tracer) for
 * route tests through app.inject(). */
import type { ExecutionContext } from 'ava';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../api/server.js';
import type { AttachPolicy } from '../../daemon/attach-policy.js';
import { tracerBinary, version } from '../../daemon/paths.js';
import { VOLATILE } from '../../daemon/records/database.js';
import { Supervisor } from '../../daemon/supervisor.js';
import os from 'node:os';
import path from 'node:path';

export async function startApp(t: ExecutionContext, opts: { policy?: AttachPolicy } = {}): Promise<{ app: FastifyInstance; supervisor: Supervisor }> {
  const log = pino({ level: 'silent' });
  const supervisor = await Supervisor.start({
    tracerPath: tracerBinary, outputDir: path.join(os.tmpdir(), 'tlsd-test-output'), log, stateDir: VOLATILE, ...(opts.policy ? { policy: opts.policy } : {}),
  });
  const app = buildServer({ supervisor, version, log });
  t.teardown(async () => {
    await app.close();
    await supervisor.close();
  });
  return { app, supervisor };
}

export async function call(app: FastifyInstance, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}) {
  const res = await app.inject({
    method, url, headers,
    ...(payload === undefined ? {} : typeof payload === 'string' ? { payload, headers: { 'content-type': 'application/json', ...headers } } : { payload: payload as object }),
  });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
}
