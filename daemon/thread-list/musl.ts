/* musl's own list of its threads, read from outside without stopping
 * anyone. musl links every `struct pthread` into a ring (`prev`, `next`)
 * and keeps no pointer to it anywhere we can name, so the walk starts
 * from one TCB found by its signature. A TCB is recognised by three facts
 * no other memory has together: its first word points at itself, its
 * `canary` is the stack guard musl made from the kernel's AT_RANDOM bytes,
 * and its `tid` is one of the process's threads. The canary also tells
 * the live TCB from the one musl's dynamic linker used before it moved the
 * main thread's to a larger block: that one never got a canary.
 *
 * Where to look: a thread made by pthread_create has its TCB at the top of
 * its stack's mapping, below the thread-specific data, and a thread blocked
 * in the kernel shows its stack pointer in /proc. Failing that (a single
 * thread, or none blocked), the process's writable memory is searched, up
 * to a budget: the main thread's TCB is in libc's data (`builtin_tls`) or
 * where the dynamic linker's malloc put it.
 *
 * Field offsets are x86-64 musl's (those of musl 1.2.3 here); they are checked
 * against the offset of errno that the target's own `__errno_location`
 * gives (tls/musl.ts), and not used if it disagrees. */
import { blockedStackPointer, readAuxv, readMappings, type Mapping } from '../procfs.js';
import { ReadFailure, readMemory, tryRead } from '../memory.js';
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
/* Blocked threads whose stack is searched before giving up on that way. */
const MAX_STACKS_SEARCHED = 64;
/* Writable memory searched at most, and read at a time: about 20 ms. */
const MEMORY_SCAN_BUDGET = 32 << 20;
const SCAN_CHUNK = 1 << 20;

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

export function muslThreadPointers(pid: Pid, tids: ReadonlySet<Tid>, errnoOffset: number | undefined): Map<Tid, Address> {
  const found = new Map<Tid, Address>();
  if (errnoOffset !== ERRNO) return found;
  const guard = stackGuard(pid);
  if (guard === undefined) return found;
  const isTcb = (at: bigint, h: TcbHead) => h.self === at && h.canary === guard && tids.has(h.tid);
  const search = (start: bigint, length: number) => searchTcb(pid, start, length, guard, isTcb);

  const mappings = readMappings(pid);
  const entry = fromBlockedStack(pid, tids, mappings, search) ?? fromWritableMemory(mappings, search);
  if (!entry) return found;
  // Around the ring from the entry; a ring changed while it is read (a
  // thread linked or unlinked meanwhile) ends the walk early.
  let at = entry;
  for (let i = 0; i <= tids.size; i++) {
    const bytes = tryRead(pid, at, HEAD_BYTES);
    if (bytes instanceof ReadFailure) break;
    const h = parseHead(bytes);
    if (!isTcb(at, h)) break;
    found.set(h.tid, at);
    if (h.next === entry) break;
    at = h.next;
  }
  return found;
}

type Search = (start: bigint, length: number) => Address | undefined;

/** A TCB in `length` bytes of the process at `start` (8-byte aligned).
 * The canary is the rarest of its three facts: its low half is looked for
 * first, 32 bits at a time. */
function searchTcb(pid: Pid, start: bigint, length: number, guard: bigint, isTcb: (at: bigint, h: TcbHead) => boolean): Address | undefined {
  const read = tryRead(pid, asAddress(start), length);
  if (read instanceof ReadFailure) return undefined;
  const bytes = read.byteOffset % 4 ? Buffer.from(read) : read;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
  const low = Number(guard & 0xffffffffn);
  for (let i = CANARY / 4; i < words.length; i++) {
    if (words[i] !== low || i % 2) continue; // TCBs are 8-byte aligned
    const off = i * 4 - CANARY;
    const at = start + BigInt(off);
    if (off + HEAD_BYTES <= bytes.length && isTcb(at, parseHead(bytes, off))) return asAddress(at);
  }
  return undefined;
}

function fromBlockedStack(pid: Pid, tids: ReadonlySet<Tid>, mappings: Mapping[], search: Search): Address | undefined {
  let searched = 0;
  for (const tid of tids) {
    if (tid === leaderTid(pid)) continue; // the main stack holds no TCB
    const sp = blockedStackPointer(pid, tid);
    const m = sp === undefined ? undefined : mappings.find((m) => m.start <= sp && sp < m.end);
    if (!m) continue;
    const length = Math.min(STACK_TOP_BYTES, Number(m.end - m.start));
    const tcb = search(m.end - BigInt(length), length);
    if (tcb) return tcb;
    if (++searched >= MAX_STACKS_SEARCHED) break;
  }
  return undefined;
}

function fromWritableMemory(mappings: Mapping[], search: Search): Address | undefined {
  let budget = MEMORY_SCAN_BUDGET;
  for (const m of mappings) {
    if (m.perms !== 'rw-p') continue;
    for (let at = m.start; at < m.end && budget > 0; at += BigInt(SCAN_CHUNK)) {
      const length = Math.min(SCAN_CHUNK, Number(m.end - at), budget);
      budget -= length;
      // A TCB across two chunks is found from the next: chunks overlap.
      const tcb = search(at, Math.min(length + HEAD_BYTES, Number(m.end - at)));
      if (tcb) return tcb;
    }
  }
  return undefined;
}
