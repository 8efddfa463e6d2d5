/* A process's shim as the API shows it: what its hello said, its table as
 * it is now (read from outside, nothing stopped), and one thread's slot
 * and the bytes of its variables, found by the thread's key as the shim
 * computes it. */
import { TlsdError } from '../errors.js';
import type { ProcessRecord, ThreadRecord } from '../registry.js';
import type { ShimConnection, ShimServer } from './server.js';
import { readShimTable, readSlotVariables, type ShimSlot, type ShimTable } from './table-reader.js';

export interface ShimView {
  connection: ShimConnection;
  table: ShimTable;
}

export interface ThreadShimView {
  /** The thread's key in the table: its FS base or its tid, by the mode. */
  key: bigint;
  /** Undefined: it has not used shim TLS, or gave its slot back. */
  slot?: ShimSlot;
  /** Each variable's bytes in its slot. */
  variables: Map<string, Buffer>;
  table: ShimTable;
}

/** Undefined for a process without a shim. */
export function viewShim(shims: ShimServer, p: ProcessRecord): ShimView | undefined {
  if (p.state !== 'running') throw new TlsdError('GONE', `process ${p.pid} is ${p.state}`);
  const connection = shims.get(p.pid);
  if (!connection) return undefined;
  return { connection, table: readShimTable(p.pid, connection.hello.table) };
}

export function viewThreadShim(shims: ShimServer, p: ProcessRecord, t: ThreadRecord): ThreadShimView {
  const shim = viewShim(shims, p);
  if (!shim) throw new TlsdError('NOT_FOUND', `process ${p.pid} has no shim (spawn it with "shim": { "mode": ... })`);
  const { table } = shim;
  const key = table.mode === 'tid' ? BigInt(t.tid) : t.fsBase;
  const slot = table.claimed.find((s) => s.key === key);
  return { key, ...(slot ? { slot } : {}), variables: slot ? readSlotVariables(p.pid, table, slot) : new Map(), table };
}
