/* The shim of a process (issue 5): what its hello said and its table as
 * it is now, read from outside; and one thread's slot and variables. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ShimConnection } from '../../daemon/shim/server.js';
import { readShimTable, readSlotVariables, type ShimTable } from '../../daemon/shim/table-reader.js';
import { TlsdError } from '../../daemon/errors.js';
import { asPid, asTid, formatAddress, type Pid } from '../../daemon/types.js';
import { ErrorBody, ProcessParams, ShimStatus, ThreadParams, ThreadShim } from '../schemas.js';
import type { RouteDeps } from '../server.js';

const errors = { 404: ErrorBody, 410: ErrorBody, 503: ErrorBody };

export const shimRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { supervisor }) => {
  /** The process's shim and its table, or NOT_FOUND when it has none. */
  function shimTable(pid: Pid): { shim: ShimConnection; table: ShimTable } {
    const shim = supervisor.shims.get(pid);
    if (!shim) throw new TlsdError('NOT_FOUND', `process ${pid} has no shim (spawn it with "shim": { "mode": ... })`);
    return { shim, table: readShimTable(pid, shim.hello.table) };
  }

  app.get('/v1/processes/:pid/shim', {
    schema: { summary: 'The shim loaded in a process: mode, table, slots, variables', params: ProcessParams, response: { 200: ShimStatus, ...errors } },
  }, async (request) => {
    const p = supervisor.getProcess(request.params.pid);
    if (!supervisor.shims.get(p.pid)) return { loaded: false };
    if (p.state !== 'running') throw new TlsdError('GONE', `process ${p.pid} is ${p.state}`);
    const { shim, table } = shimTable(p.pid);
    return {
      loaded: true, connected: shim.socket !== undefined, ...(shim.forkedFrom ? { forkedFrom: shim.forkedFrom } : {}),
      reclaiming: shim.reclaiming, mode: table.mode, version: shim.hello.shimVersion,
      table: formatAddress(table.address), handshakeAt: shim.connectedAt.toISOString(),
      slotCount: table.slotCount, slotBytes: table.slotBytes, slotsInUse: table.claimed.length, slotsFree: table.free,
      usesRdfsbase: table.usesRdfsbase, variables: table.variables,
    };
  });

  app.get('/v1/processes/:pid/threads/:tid/shim', {
    schema: { summary: 'One thread\'s shim slot and the bytes of its variables', params: ThreadParams, response: { 200: ThreadShim, 400: ErrorBody, ...errors } },
  }, async (request) => {
    const { process, thread } = supervisor.getThread(asPid(request.params.pid), asTid(request.params.tid));
    const { table } = shimTable(process.pid);
    const key = table.mode === 'tid' ? BigInt(thread.tid) : thread.fsBase;
    const slot = table.claimed.find((s) => s.key === key);
    const bytes = slot ? readSlotVariables(process.pid, table, slot) : undefined;
    return {
      tid: thread.tid, key: `0x${key.toString(16)}`,
      slot: slot ? { index: slot.index, address: formatAddress(slot.address), claims: slot.claims } : null,
      variables: bytes ? table.variables.map((v) => ({ name: v.name, size: v.size, bytes: bytes.get(v.name)!.toString('hex') })) : [],
    };
  });
};
