/* musl's own list of its threads, read from outside without stopping
 * anyone. musl links every `struct pthread` into a ring (`prev`, `next`)
 * and keeps no pointer to it anywhere we can name, so the walk starts
 * from one TCB found by its signature:
 *
 * - a thread created by pthread_create has its TCB at the top of the
 *   mapping of its stack (below the thread-specific data): a thread
 *   blocked in the kernel shows its stack pointer in /proc, so that
 *   mapping is known;
 * - the main thread's TCB is in the data of libc or of a static program
 *   (musl's `builtin_tls`) when the program's TLS is small.
 *
 * A TCB is recognised by three facts no other memory has together: its
 * first word points at itself, its `canary` is the stack guard musl made
 * from the kernel's AT_RANDOM bytes, and its `tid` is one of the
 * process's threads. The canary also tells the live TCB from the one
 * musl's dynamic linker used before it moved the main thread's TCB to a
 * larger block: that one never got a canary.
 *
 * Field offsets are x86-64 musl's (1.1.20 to 1.2.5); they are checked
 * against the offset of errno that the target's own `__errno_location`
 * gives (tls/musl.ts), and not used if it disagrees. */
import { blockedStackPointer, readAuxv, readMappings, type Mapping } from '../procfs.js';
import { ReadFailure, readMany, readMemory } from '../memory.js';
import { PF_W, PT_LOAD } from '../tls/elf.js';
import type { LoadedObject } from '../tls/objects.js';
import { asAddress, asTid, leaderTid, type Address, type Pid, type Tid } from '../types.js';

// struct pthread (musl src/internal/pthread_impl.h), x86-64.
const SELF = 0;
const NEXT = 24;
const CANARY = 40;
const TID = 48;
const ERRNO = 52; // follows tid
const HEAD_BYTES = 56;
const AT_RANDOM = 25n;
/* Where pthread_create puts the TCB: under the thread-specific data
 * (PTHREAD_KEYS_MAX pointers) at the top of the thread's mapping, and
 * below it at most the TLS alignment. */
const STACK_TOP_BYTES = 8192;
const MAX_DATA_SCAN_BYTES = 1 << 20;
/* Blocked threads whose stack is searched before giving up on that way. */
const MAX_STACKS_SEARCHED = 64;

interface TcbHead {
  self: bigint;
  next: Address;
  canary: bigint;
  tid: Tid;
}

function parseHead(b: Buffer, at = 0): TcbHead {
  return {
    self: b.readBigUInt64LE(at + SELF),
    next: asAddress(b.readBigUInt64LE(at + NEXT)),
    canary: b.readBigUInt64LE(at + CANARY),
    tid: asTid(b.readInt32LE(at + TID)),
  };
}

/** musl's stack guard: AT_RANDOM's first 8 bytes with the second zeroed
 * (src/env/__init_ssp.c: a NUL that stops string overflows reading it). */
function stackGuard(pid: Pid): bigint | undefined {
  const random = readAuxv(pid).get(AT_RANDOM);
  if (random === undefined) return undefined;
  const bytes = Buffer.from(readMemory(pid, asAddress(random), 8));
  bytes[1] = 0;
  return bytes.readBigUInt64LE(0);
}

export function muslThreadPointers(
  pid: Pid, objects: LoadedObject[], tids: ReadonlySet<Tid>, errnoOffset: number | undefined,
): Map<Tid, Address> {
  const found = new Map<Tid, Address>();
  if (errnoOffset !== ERRNO) return found;
  const guard = stackGuard(pid);
  if (guard === undefined) return found;
  const isTcb = (at: bigint, h: TcbHead) => h.self === at && h.canary === guard && tids.has(h.tid);

  const entry = fromBlockedStack(pid, tids, isTcb) ?? fromStaticData(pid, objects, isTcb);
  if (!entry) return found;
  // Around the ring from the entry; a ring changed while it is read (a
  // thread linked or unlinked meanwhile) ends the walk early.
  let at = entry;
  for (let i = 0; i <= tids.size; i++) {
    const bytes = readMany(pid, [{ address: at, length: HEAD_BYTES }])[0]!;
    if (bytes instanceof ReadFailure) break;
    const h = parseHead(bytes);
    if (!isTcb(at, h)) break;
    found.set(h.tid, at);
    if (h.next === entry) break;
    at = h.next;
  }
  return found;
}

/** A TCB within the bytes read at `start`, 8-byte aligned. */
function searchTcb(start: bigint, bytes: Buffer, isTcb: (at: bigint, h: TcbHead) => boolean): Address | undefined {
  const misalign = Number(start % 8n);
  for (let off = misalign ? 8 - misalign : 0; off + HEAD_BYTES <= bytes.length; off += 8) {
    const at = start + BigInt(off);
    if (bytes.readBigUInt64LE(off + SELF) === at && isTcb(at, parseHead(bytes, off))) return asAddress(at);
  }
  return undefined;
}

function containing(mappings: Mapping[], address: bigint): Mapping | undefined {
  return mappings.find((m) => m.start <= address && address < m.end);
}

function fromBlockedStack(pid: Pid, tids: ReadonlySet<Tid>, isTcb: (at: bigint, h: TcbHead) => boolean): Address | undefined {
  let mappings: Mapping[] | undefined;
  let searched = 0;
  for (const tid of tids) {
    if (tid === leaderTid(pid)) continue; // the main stack holds no TCB
    const sp = blockedStackPointer(pid, tid);
    if (sp === undefined) continue;
    mappings ??= readMappings(pid);
    const m = containing(mappings, sp);
    if (!m) continue;
    const start = m.end - BigInt(Math.min(STACK_TOP_BYTES, Number(m.end - m.start)));
    const bytes = readMany(pid, [{ address: asAddress(start), length: Number(m.end - start) }])[0]!;
    const tcb = bytes instanceof ReadFailure ? undefined : searchTcb(start, bytes, isTcb);
    if (tcb) return tcb;
    if (++searched >= MAX_STACKS_SEARCHED) break;
  }
  return undefined;
}

function fromStaticData(pid: Pid, objects: LoadedObject[], isTcb: (at: bigint, h: TcbHead) => boolean): Address | undefined {
  for (const o of objects) {
    for (const s of o.elf.segments) {
      if (s.type !== PT_LOAD || !(s.flags & PF_W)) continue;
      const start = o.base + s.vaddr;
      const bytes = readMany(pid, [{ address: asAddress(start), length: Math.min(Number(s.memsz), MAX_DATA_SCAN_BYTES) }])[0]!;
      const tcb = bytes instanceof ReadFailure ? undefined : searchTcb(start, bytes, isTcb);
      if (tcb) return tcb;
    }
  }
  return undefined;
}
