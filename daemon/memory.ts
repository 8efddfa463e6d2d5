/* Reading a tracee's memory from the daemon, without stopping it:
 * process_vm_readv(2) needs only ptrace permission, not the tracer thread
 * (PTRACE.md "The tracer is a thread"). */
import koffi from 'koffi';
import type { Address, Pid } from './types.js';

const libc = koffi.load('libc.so.6');
const iovec = koffi.struct('tlsd_iovec', { base: 'void *', len: 'size_t' });
const processVmReadv = libc.func(
  'long process_vm_readv(int pid, const tlsd_iovec *local, unsigned long liovcnt, const tlsd_iovec *remote, unsigned long riovcnt, unsigned long flags)',
);
void iovec;

export class MemoryReadError extends Error {
  constructor(readonly errno: number, address: Address) {
    super(`cannot read 0x${address.toString(16)}: errno ${errno}`);
  }
}

/** Reads `length` bytes at `address` of process `pid`. */
export function readMemory(pid: Pid, address: Address, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = processVmReadv(pid, [{ base: buf, len: length }], 1, [{ base: address, len: length }], 1, 0) as number;
  if (n !== length) throw new MemoryReadError(n < 0 ? koffi.errno() : 0, address);
  return buf;
}
