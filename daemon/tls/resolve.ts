/* A TLS variable's bytes in many threads at once (docs/tls-layout.md "Address
 * of a TLS variable for one thread"), in as few batched reads as the
 * layout allows. x86-64 (Variant II) throughout. */
import { ReadFailure, readMany, type ReadRequest } from '../memory.js';
import { TCB_DTV, TCB_SELF } from '../tcb.js';
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

export type ThreadRead =
  | { state: 'ok'; address: Address; bytes: Buffer }
  | { state: 'unallocated' }
  | { state: 'stale-tp' }
  | { state: 'no-tls' }
  | { state: 'error'; error: string; address?: Address };

const TCB_BYTES = TCB_DTV + 8; // the self pointer and the DTV pointer
// glibc DTV: 16-byte entries { val, to_free }; dtv[-1].counter = slots,
// dtv[0].counter = generation; bit 0 of val set = TLS_DTV_UNALLOCATED.
const GLIBC_DTV_ENTRY = 16n;
// musl DTV: plain pointers; dtv[0] = number of modules.
const MUSL_DTV_ENTRY = 8n;
// Read the TCB and the variable as one range when they are this close.
const ONE_READ_SPAN = 4096n;

const failure = (r: ReadFailure): ThreadRead => ({ state: 'error', error: r.describe() });

/** A TCB whose self pointer names tp, and whether it has a DTV: every
 * thread the C library made has one; a thread made by a raw clone on a
 * page of its own (the shim's agent) has none, and no C-library TLS. */
function tcbState(tcb: Buffer, at: number, tp: Address): 'ok' | 'stale-tp' | 'no-tls' {
  if (tcb.readBigUInt64LE(at + TCB_SELF) !== tp) return 'stale-tp';
  return tcb.readBigUInt64LE(at + TCB_DTV) === 0n ? 'no-tls' : 'ok';
}

export function readAll(pid: Pid, layout: TlsLayout, where: Location, threads: ThreadPointer[], length: number, generations?: Map<number, Slot>): ThreadRead[] {
  const fixed = offsetFromTp(layout, where);
  if (fixed !== undefined) return readAtOffset(pid, threads, fixed, length);
  if (where.kind !== 'block') throw new Error('unreachable: a thread-pointer location has a fixed offset');
  return readThroughDtv(pid, layout, where, threads, length, generations);
}

/** Where the variable is a fixed distance from tp in every thread: musl's
 * errno, and a glibc module with a static block. For the latter the DTV
 * would name the same block (static blocks never move), so it is skipped:
 * one read per thread instead of four. */
function offsetFromTp(layout: TlsLayout, where: Location): bigint | undefined {
  if (where.kind === 'thread-pointer') return BigInt(where.offset);
  if (layout.kind.libc === 'glibc' && where.module.staticOffset !== undefined) return where.offset - where.module.staticOffset;
  return undefined;
}

/** The TCB (to check the thread pointer, invariant 3) and the variable,
 * in one range when they are close. */
function readAtOffset(pid: Pid, threads: ThreadPointer[], offset: bigint, length: number): ThreadRead[] {
  const len = BigInt(length);
  const from = offset < 0n ? offset : 0n;
  const to = offset + len > BigInt(TCB_BYTES) ? offset + len : BigInt(TCB_BYTES);
  if (to - from <= ONE_READ_SPAN) {
    const got = readMany(pid, threads.map((t) => ({ address: asAddress(t.tp + from), length: Number(to - from) })));
    return got.map((b, i) => {
      const tp = threads[i]!.tp;
      const address = asAddress(tp + offset);
      if (b instanceof ReadFailure) return { ...failure(b), address } as ThreadRead;
      const tcb = tcbState(b, Number(-from), tp);
      if (tcb !== 'ok') return { state: tcb };
      return { state: 'ok', address, bytes: b.subarray(Number(offset - from), Number(offset - from + len)) };
    });
  }
  const checked = checkTcbs(pid, threads);
  return valuesAt(pid, checked.map((c, i) => (Buffer.isBuffer(c) ? { state: 'at' as const, address: asAddress(threads[i]!.tp + offset) } : c)), length);
}

/** The general way: TCB, then the DTV, then the variable. */
function readThroughDtv(pid: Pid, layout: TlsLayout, where: Location & { kind: 'block' }, threads: ThreadPointer[], length: number, generations?: Map<number, Slot>): ThreadRead[] {
  const tcbs = checkTcbs(pid, threads);
  const glibcDtv = layout.kind.libc === 'glibc';
  const withDtv = tcbs.flatMap((tcb, i) => (Buffer.isBuffer(tcb) ? [{ i, dtv: asAddress(tcb.readBigUInt64LE(TCB_DTV)) }] : []));
  const got = readMany(pid, withDtv.flatMap(({ dtv }) => (glibcDtv ? glibcDtvReads(dtv, where.module.id) : muslDtvReads(dtv, where.module.id))));
  const placed: Array<ThreadRead | { state: 'at'; address: Address }> = tcbs.map((tcb) => (Buffer.isBuffer(tcb) ? { state: 'unallocated' as const } : tcb));
  withDtv.forEach(({ i }, k) => {
    const [header, entry] = [got[2 * k]!, got[2 * k + 1]!];
    const block = glibcDtv
      ? glibcBlock(header, entry, where.module, generations?.get(where.module.id))
      : muslBlock(header, entry, where.module);
    placed[i] = typeof block === 'bigint' ? { state: 'at', address: asAddress(block + where.offset) } : block;
  });
  return valuesAt(pid, placed, length);
}

/** Each thread's TCB, or why it cannot be used. */
function checkTcbs(pid: Pid, threads: ThreadPointer[]): Array<Buffer | ThreadRead> {
  return readMany(pid, threads.map((t) => ({ address: t.tp, length: TCB_BYTES }))).map((b, i) => {
    if (b instanceof ReadFailure) return failure(b);
    const tcb = tcbState(b, 0, threads[i]!.tp);
    return tcb === 'ok' ? b : { state: tcb };
  });
}

function valuesAt(pid: Pid, placed: Array<ThreadRead | { state: 'at'; address: Address }>, length: number): ThreadRead[] {
  const at = placed.flatMap((p) => (p.state === 'at' ? [{ address: p.address, length }] : []));
  const got = readMany(pid, at);
  let next = 0;
  return placed.map((p) => {
    if (p.state !== 'at') return p;
    const b = got[next++]!;
    return b instanceof ReadFailure ? { ...failure(b), address: p.address } as ThreadRead : { state: 'ok', address: p.address, bytes: b };
  });
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
 * with a stale entry left behind), else nothing. (Its next step, the static
 * block, was taken before: see offsetFromTp.) */
function glibcBlock(header: Buffer | ReadFailure, entry: Buffer | ReadFailure, module: TlsModule, slot?: Slot): bigint | ThreadRead {
  if (header instanceof ReadFailure) return failure(header);
  const slots = header.readBigUInt64LE(0);
  const generation = header.readBigUInt64LE(Number(GLIBC_DTV_ENTRY));
  const current = slot === undefined || generation >= slot.gen;
  if (current && BigInt(module.id) <= slots && !(entry instanceof ReadFailure)) {
    const block = entry.readBigUInt64LE(0);
    if (block !== 0n && (block & 1n) === 0n) return block;
  }
  return { state: 'unallocated' };
}

/** musl allocates every thread's blocks eagerly, at thread creation and at
 * dlopen, so an id beyond the count means a dlopen is still installing. */
function muslBlock(header: Buffer | ReadFailure, entry: Buffer | ReadFailure, module: TlsModule): bigint | ThreadRead {
  if (header instanceof ReadFailure) return failure(header);
  if (BigInt(module.id) > header.readBigUInt64LE(0)) return { state: 'error', error: 'the module is not in this thread\'s DTV yet (a dlopen in progress)' };
  if (entry instanceof ReadFailure) return failure(entry);
  return entry.readBigUInt64LE(0);
}
