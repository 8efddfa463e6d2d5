/* Where a TLS variable lives in each thread (TLS-LAYOUT.md "Address of a
 * TLS variable for one thread"), for many threads at once: one batch of
 * reads for the TCBs, one for the DTVs. x86-64 (Variant II) throughout. */
import { ReadFailure, readMany, type ReadRequest } from '../memory.js';
import { asAddress, type Address, type Pid, type Tid } from '../types.js';
import type { TlsLayout, TlsModule } from './layout.js';
import type { Slot } from './glibc.js';

export type Location =
  | { kind: 'block'; module: TlsModule; offset: bigint }
  | { kind: 'thread-pointer'; offset: number };

export interface ThreadPointer {
  tid: Tid;
  tp: Address;
}

export type Placement =
  | { state: 'ok'; address: Address }
  | { state: 'unallocated' }
  | { state: 'stale-tp' }
  | { state: 'error'; error: string };

// TCB (TLS-LAYOUT.md "TCB"): self pointer at tp+0, DTV pointer at tp+8.
const TCB_BYTES = 16;
const TCB_DTV = 8;
// glibc DTV: 16-byte entries { val, to_free }; dtv[-1].counter = slots,
// dtv[0].counter = generation; bit 0 of val set = TLS_DTV_UNALLOCATED.
const GLIBC_DTV_ENTRY = 16n;
// musl DTV: plain pointers; dtv[0] = number of modules.
const MUSL_DTV_ENTRY = 8n;

const failure = (r: ReadFailure): Placement => ({ state: 'error', error: r.describe() });

export function placeAll(pid: Pid, layout: TlsLayout, where: Location, threads: ThreadPointer[], generations?: Map<number, Slot>): Placement[] {
  const tcbs = readMany(pid, threads.map((t) => ({ address: t.tp, length: TCB_BYTES })));
  const placements: Placement[] = new Array(threads.length);
  const dtvs: Array<{ index: number; dtv: Address }> = [];
  tcbs.forEach((tcb, i) => {
    const t = threads[i]!;
    if (tcb instanceof ReadFailure) placements[i] = failure(tcb);
    else if (tcb.readBigUInt64LE(0) !== t.tp) placements[i] = { state: 'stale-tp' }; // invariant 3
    else if (where.kind === 'thread-pointer') placements[i] = { state: 'ok', address: asAddress(t.tp + BigInt(where.offset)) };
    else dtvs.push({ index: i, dtv: asAddress(tcb.readBigUInt64LE(TCB_DTV)) });
  });
  if (where.kind === 'block' && dtvs.length > 0) {
    const glibcDtv = layout.kind.libc === 'glibc';
    const reads = dtvs.flatMap(({ dtv }) => glibcDtv ? glibcDtvReads(dtv, where.module.id) : muslDtvReads(dtv, where.module.id));
    const got = readMany(pid, reads);
    dtvs.forEach(({ index }, k) => {
      const [header, entry] = [got[2 * k]!, got[2 * k + 1]!];
      const tp = threads[index]!.tp;
      placements[index] = glibcDtv
        ? glibcPlacement(header, entry, where.module, tp, generations?.get(where.module.id))
        : muslPlacement(header, entry, where.module);
      const p = placements[index]!;
      if (p.state === 'ok') p.address = asAddress(p.address + where.offset);
    });
  }
  return placements;
}

function glibcDtvReads(dtv: Address, id: number): ReadRequest[] {
  return [
    { address: asAddress(dtv - GLIBC_DTV_ENTRY), length: 2 * Number(GLIBC_DTV_ENTRY) }, // dtv[-1], dtv[0]
    { address: asAddress(dtv + GLIBC_DTV_ENTRY * BigInt(id)), length: 8 }, // dtv[id].val
  ];
}

function muslDtvReads(dtv: Address, id: number): ReadRequest[] {
  return [
    { address: dtv, length: 8 }, // dtv[0]
    { address: asAddress(dtv + MUSL_DTV_ENTRY * BigInt(id)), length: 8 }, // dtv[id]
  ];
}

/** The decision libthread_db makes: the DTV entry only if this thread's DTV
 * is at least as new as the module (a dlclose'd module's id may be reused
 * with a stale entry left behind), then the static block, then nothing. */
function glibcPlacement(header: Buffer | ReadFailure, entry: Buffer | ReadFailure, module: TlsModule, tp: Address, slot?: Slot): Placement {
  if (header instanceof ReadFailure) return failure(header);
  const slots = header.readBigUInt64LE(0);
  const generation = header.readBigUInt64LE(Number(GLIBC_DTV_ENTRY));
  const current = slot === undefined || generation >= slot.gen;
  if (current && BigInt(module.id) <= slots && !(entry instanceof ReadFailure)) {
    const block = entry.readBigUInt64LE(0);
    if (block !== 0n && (block & 1n) === 0n) return { state: 'ok', address: asAddress(block) };
  }
  if (module.staticOffset !== undefined) return { state: 'ok', address: asAddress(tp - module.staticOffset) };
  return { state: 'unallocated' };
}

/** musl allocates every thread's blocks eagerly, at thread creation and at
 * dlopen, so an id beyond the count means a dlopen is still installing. */
function muslPlacement(header: Buffer | ReadFailure, entry: Buffer | ReadFailure, module: TlsModule): Placement {
  if (header instanceof ReadFailure) return failure(header);
  if (BigInt(module.id) > header.readBigUInt64LE(0)) return { state: 'error', error: 'the module is not in this thread\'s DTV yet (a dlopen in progress)' };
  if (entry instanceof ReadFailure) return failure(entry);
  return { state: 'ok', address: asAddress(entry.readBigUInt64LE(0)) };
}
