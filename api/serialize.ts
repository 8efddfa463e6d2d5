/* The daemon's records and views -> the JSON forms of docs/api.md
 * (addresses hex, times ISO-8601, 64-bit values decimal strings). Nothing
 * here reads a process: the daemon did. */
import type { Static } from 'typebox';
import type { ExitRecord } from '../daemon/registry.js';
import type { Injection } from '../daemon/shim/server.js';
import type { ShimView, ThreadShimView } from '../daemon/shim/view.js';
import type { Tcb } from '../daemon/tcb.js';
import type { ReadResult } from '../daemon/tls/tls-reader.js';
import { formatAddress, type Tid } from '../daemon/types.js';
import type { ProcessView, ThreadView } from '../daemon/views.js';
import type { ExitJson, ProcessJson, ShimStatus, ThreadJson, ThreadShim, TlsValues } from './schemas.js';

const iso = (d: Date) => d.toISOString();

export function processJson({ record: p, argv, currentRun }: ProcessView): ProcessJson {
  const { run } = p;
  return {
    pid: p.pid, state: p.state, origin: p.origin, exe: p.exe, argv, libc: p.libc, linkage: p.linkage,
    threads: p.threads.size, threadsExited: p.threadsExited, startedAt: iso(p.startedAt), run,
    ...(run !== currentRun ? { earlierRun: true } : {}),
    ...(p.exitsDropped ? { exitsDropped: p.exitsDropped } : {}),
    ...(p.endedAt ? { endedAt: iso(p.endedAt) } : {}),
    ...(p.parentPid ? { parentPid: p.parentPid } : {}),
    ...(p.stdout ? { stdout: p.stdout, stderr: p.stderr } : {}),
    ...(p.killWithDaemon ? { killWithDaemon: true as const } : {}),
    gaps: p.gaps.map((g) => ({ from: iso(g.from), ...(g.to ? { to: iso(g.to) } : {}) })),
    ...(p.exit ? { exit: { ...endingJson(p.exit), at: iso(p.exit.at) } } : {}),
    ...(p.attach ? {
      attach: {
        passes: p.attach.passes, threads: p.attach.threads, interrupted: p.attach.interrupted,
        longestStopMicros: Number(p.attach.longestStopNs) / 1000,
        ...(p.attach.leftovers ? { leftovers: p.attach.leftovers } : {}),
      },
    } : {}),
  };
}

export function threadJson({ record: t, name, state, goroutine }: ThreadView): ThreadJson {
  return {
    tid: t.tid, pid: t.pid, name, state,
    fsBase: formatAddress(t.fsBase), fsBaseSource: t.fsBaseSource, createdAt: iso(t.createdAt),
    ...(t.parentTid ? { parentTid: t.parentTid } : {}),
    ...(goroutine ? { goroutine } : {}),
  };
}

export function tcbJson(tcb: Tcb | undefined) {
  return tcb ? { self: formatAddress(tcb.self), dtv: formatAddress(tcb.dtv), stackGuard: tcb.stackGuard.toString() } : null;
}

function endingJson(e: { code?: number; signal?: number; coreDumped?: boolean }) {
  return {
    ...(e.code !== undefined ? { code: e.code } : {}),
    ...(e.signal !== undefined ? { signal: e.signal, coreDumped: e.coreDumped ?? false } : {}),
  };
}

export function exitJson(x: ExitRecord): ExitJson {
  return { tid: x.tid, pid: x.pid, leader: x.leader, exitedAt: iso(x.exitedAt), ...endingJson(x), how: x.how, ...(x.shim ? { shim: x.shim } : {}) };
}

function injectionJson(i: Injection | undefined): Pick<Static<typeof ShimStatus>, 'injection'> {
  if (!i) return {};
  return { injection: { base: formatAddress(i.base), borrowedTid: i.tid, stoppedMicros: Number(i.stoppedNs) / 1000, threadsStopped: i.threadsStopped } };
}

export function shimJson({ connection, table }: ShimView): Static<typeof ShimStatus> {
  return {
    loaded: true, loadedBy: connection.loadedBy, ...injectionJson(connection.injection), connected: connection.socket !== undefined, ...(connection.forkedFrom ? { forkedFrom: connection.forkedFrom } : {}),
    reclaiming: connection.reclaiming, mode: table.mode, version: connection.hello.shimVersion,
    table: formatAddress(table.address), handshakeAt: iso(connection.connectedAt),
    slotCount: table.slotCount, slotBytes: table.slotBytes, slotsInUse: table.claimed.length, slotsFree: table.free,
    usesRdfsbase: table.usesRdfsbase, variables: table.variables,
  };
}

export function threadShimJson(tid: Tid, { key, slot, variables, table }: ThreadShimView): Static<typeof ThreadShim> {
  return {
    tid, key: `0x${key.toString(16)}`,
    slot: slot ? { index: slot.index, address: formatAddress(slot.address), claims: slot.claims } : null,
    variables: slot ? table.variables.map((v) => ({ name: v.name, size: v.size, bytes: variables.get(v.name)!.toString('hex') })) : [],
  };
}

/** A TLS read: one value per thread. */
export function valuesJson(result: ReadResult): Static<typeof TlsValues> {
  return {
    symbol: result.variable.name, ...(result.variable.readable ? { readable: result.variable.readable } : {}), module: result.variable.module, type: result.type,
    values: result.values.map((v) => ({
      tid: v.tid, address: v.address !== undefined ? formatAddress(v.address) : null, state: v.state, value: v.value ?? null,
      ...(v.error !== undefined ? { error: v.error } : {}),
    })),
  };
}
