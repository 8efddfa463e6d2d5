/* The thread control block at the thread pointer (docs/tls-layout.md "TCB"):
 * x86-64 offsets, the same for glibc and musl. An aarch64 port replaces
 * this file (Variant I keeps the DTV elsewhere). */
import { readMemory } from './memory.js';
import { asAddress, type Address, type Pid } from './types.js';

export const TCB_SELF = 0x00; // glibc tcbhead_t.tcb, musl pthread.self
export const TCB_DTV = 0x08; // both: the DTV pointer
const TCB_STACK_GUARD = 0x28; // both: the stack protector canary
const TCB_READ_BYTES = 0x30;

export interface Tcb {
  self: Address;
  dtv: Address;
  stackGuard: bigint;
}

export function readTcb(pid: Pid, threadPointer: Address): Tcb {
  const b = readMemory(pid, threadPointer, TCB_READ_BYTES);
  return {
    self: asAddress(b.readBigUInt64LE(TCB_SELF)),
    dtv: asAddress(b.readBigUInt64LE(TCB_DTV)),
    stackGuard: b.readBigUInt64LE(TCB_STACK_GUARD),
  };
}

/** A cached thread pointer still belongs to a live TCB when the TCB's self
 * pointer names it (docs/tls-layout.md: cheap check for both libcs on x86-64). */
export const tcbIsCurrent = (tcb: Tcb, threadPointer: Address): boolean => tcb.self === threadPointer;
