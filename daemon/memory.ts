/* Reading a tracee's memory from the daemon, without stopping it:
 * process_vm_readv(2) needs only ptrace permission, not the tracer thread
 * (docs/ptrace.md "The tracer is a thread"). */
import koffi from 'koffi';
import { constants } from 'node:os';
import type { Address, Pid } from './types.js';

const libc = koffi.load('libc.so.6');
// Both sides are passed as raw `struct iovec` bytes: a Buffer costs far
// less to pass than an object koffi would marshal.
const processVmReadv = libc.func('process_vm_readv', 'long', [
  'int', 'void *', 'unsigned long', 'void *', 'unsigned long', 'unsigned long',
]);

const IOVEC_BYTES = 16; // struct iovec { void *iov_base; size_t iov_len; } on LP64
const IOV_MAX = 1024; // <limits.h>: the most iovecs one call takes
const { ESRCH, EFAULT } = constants.errno;
const PAGE = 4096; // x86-64's base page size: memory is mapped (and unmapped) in whole pages

export class MemoryReadError extends Error {
  constructor(readonly errno: number, address: Address) {
    super(`cannot read 0x${address.toString(16)}: errno ${errno}`);
  }
}

/** Why one range of a batch could not be read. */
export class ReadFailure {
  constructor(readonly errno: number) {}
  get gone(): boolean { return this.errno === ESRCH; }
  describe(): string { return this.gone ? 'the thread is gone' : `unreadable memory (errno ${this.errno})`; }
}

export interface ReadRequest {
  address: Address;
  length: number;
}

/** Reads `length` bytes at `address` of process `pid`, or says why not. */
export function tryRead(pid: Pid, address: Address, length: number): Buffer | ReadFailure {
  return readMany(pid, [{ address, length }])[0]!;
}

/** Reads `length` bytes at `address` of process `pid`. */
export function readMemory(pid: Pid, address: Address, length: number): Buffer {
  const result = tryRead(pid, address, length);
  if (result instanceof ReadFailure) throw new MemoryReadError(result.errno, address);
  return result;
}

/** Reads many ranges with as few system calls as the kernel allows. Each
 * answer is the bytes, or why that range was unreadable (EFAULT: unmapped;
 * ESRCH: the process is gone). */
export function readMany(pid: Pid, requests: ReadRequest[]): Array<Buffer | ReadFailure> {
  const results: Array<Buffer | ReadFailure> = new Array(requests.length);
  let next = 0;
  while (next < requests.length) {
    const batch = requests.slice(next, next + IOV_MAX);
    const total = batch.reduce((n, r) => n + r.length, 0);
    const local = Buffer.alloc(total);
    const remote = Buffer.alloc(batch.length * IOVEC_BYTES);
    batch.forEach((r, i) => {
      remote.writeBigUInt64LE(r.address, i * IOVEC_BYTES);
      remote.writeBigUInt64LE(BigInt(r.length), i * IOVEC_BYTES + 8);
    });
    const localIovec = Buffer.alloc(IOVEC_BYTES);
    localIovec.writeBigUInt64LE(koffi.address(local), 0);
    localIovec.writeBigUInt64LE(BigInt(total), 8);
    const n = Number(processVmReadv(pid, localIovec, 1, remote, batch.length, 0));
    const errno = n < 0 ? koffi.errno() : 0;
    if (errno === ESRCH) {
      for (let i = next; i < requests.length; i++) results[i] = new ReadFailure(errno);
      break;
    }
    // The kernel stops at the first range it cannot read (process_vm_readv(2)
    // "partial read"): everything before it is good; go on after it.
    let at = 0;
    let i = 0;
    for (; i < batch.length && at + batch[i]!.length <= Math.max(n, 0); i++) {
      results[next + i] = local.subarray(at, at + batch[i]!.length);
      at += batch[i]!.length;
    }
    if (i < batch.length) results[next + i++] = new ReadFailure(errno || EFAULT);
    next += i;
  }
  return results;
}

/** A NUL-terminated string at `address`, read a page at a time so that a
 * short string at the end of a mapping is not a fault. */
export function readCString(pid: Pid, address: Address, max: number): string {
  const parts: Buffer[] = [];
  let at = address;
  for (let got = 0; got < max;) {
    const chunk = readMemory(pid, at, Math.min(PAGE - Number(at % BigInt(PAGE)), max - got));
    const end = chunk.indexOf(0);
    parts.push(end < 0 ? chunk : chunk.subarray(0, end));
    if (end >= 0) break;
    got += chunk.length;
    at = (at + BigInt(chunk.length)) as Address;
  }
  return Buffer.concat(parts).toString('utf8');
}
