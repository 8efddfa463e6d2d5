/* libtlsshim's table, read from outside the process (process_vm_readv,
 * nothing stopped). The layout is native/shim/table.h's: shimAbi below is
 * what test/shim-table.test.ts compares with that header as the C compiler
 * lays it out, and `version` says which layout a table has. */
import { TlsdError } from '../errors.js';
import { readMany, readMemory, ReadFailure } from '../memory.js';
import { asAddress, asPid, asTid, shimModes, type Address, type Pid, type ShimMode, type Tid } from '../types.js';

export const shimAbi = {
  magic: 0x314d494853534c54n, // "TLSSHIM1"
  version: 1,
  /** enum tlsshim_mode */
  modes: { 'thread-pointer': 1, tid: 2 } satisfies Record<ShimMode, number>,
  /** struct tlsshim_table: its size (TABLE_HEADER) and its fields' offsets */
  header: { size: 8192, magic: 0, version: 8, mode: 12, slotCount: 16, slotStride: 20, slotBytes: 24, slotsOffset: 28, pid: 32, allocation: 40, usesRdfsbase: 48, vars: 72 },
  /** struct tlsshim_var */
  variable: { size: 64, offset: 0, bytes: 4, align: 8, ready: 12, name: 16, nameLength: 48 },
  /** struct tlsshim_slot (SLOT_HEADER bytes, the variables follow) */
  slot: { size: 64, key: 0, fsBase: 8, tid: 16, claims: 24 },
  maxVars: 64,
  maxSlots: 1 << 20,
  slotEmpty: 0n,
  slotFree: 0xffffffffffffffffn,
  /** ALLOC_VARS: the variables registered, in the allocation word */
  allocationVarsMask: 0xffffn,
} as const;

const { header: HEADER, variable: VAR, slot: SLOT } = shimAbi;

export interface ShimVariable {
  handle: number;
  name: string;
  offset: number;
  size: number;
  align: number;
}

export interface ShimSlot {
  index: number;
  address: Address;
  /** The owner's key: its FS base or its tid, by the mode. */
  key: bigint;
  fsBase: Address;
  tid: Tid;
  /** Times the slot was claimed, by any thread. */
  claims: number;
}

export interface ShimTable extends ShimHeader {
  address: Address;
  variables: ShimVariable[];
  /** Slots a thread holds now. */
  claimed: ShimSlot[];
  /** Slots a new thread can take: never used, or given back. */
  free: number;
}

function invalid(address: Address, why: string): TlsdError {
  return new TlsdError('UNAVAILABLE', `no libtlsshim table at 0x${address.toString(16)}: ${why}`);
}

export interface ShimHeader {
  version: number;
  mode: ShimMode;
  pid: Pid;
  usesRdfsbase: boolean;
  slotCount: number;
  slotStride: number;
  slotBytes: number;
  slotsOffset: number;
}

function parseHeader(h: Buffer, address: Address): ShimHeader {
  if (h.readBigUInt64LE(HEADER.magic) !== shimAbi.magic) throw invalid(address, 'bad magic');
  const version = h.readUInt32LE(HEADER.version);
  if (version !== shimAbi.version) throw invalid(address, `layout version ${version}, this tlsd reads ${shimAbi.version}`);
  const modeNumber = h.readUInt32LE(HEADER.mode);
  const slotCount = h.readUInt32LE(HEADER.slotCount);
  const slotStride = h.readUInt32LE(HEADER.slotStride);
  const mode = shimModes.find((m) => shimAbi.modes[m] === modeNumber);
  if (!mode) throw invalid(address, `mode ${modeNumber}`);
  if (slotCount < 1 || slotCount > shimAbi.maxSlots || (slotCount & (slotCount - 1)) || slotStride < SLOT.size) throw invalid(address, 'bad geometry');
  return {
    version, mode, pid: asPid(Number(h.readBigUInt64LE(HEADER.pid))),
    usesRdfsbase: h.readUInt32LE(HEADER.usesRdfsbase) === 1, slotCount, slotStride,
    slotBytes: h.readUInt32LE(HEADER.slotBytes), slotsOffset: h.readUInt32LE(HEADER.slotsOffset),
  };
}

/** The table's header, variables and claimed slots. */
export function readShimTable(pid: Pid, address: Address): ShimTable {
  const h = readMemory(pid, address, HEADER.vars + shimAbi.maxVars * VAR.size);
  const header = parseHeader(h, address);
  const { slotCount, slotStride } = header;
  const registered = Math.min(Number(h.readBigUInt64LE(HEADER.allocation) & shimAbi.allocationVarsMask), shimAbi.maxVars);
  const variables: ShimVariable[] = [];
  for (let i = 0; i < registered; i++) {
    const at = HEADER.vars + i * VAR.size;
    if (h.readUInt32LE(at + VAR.ready) !== 1) continue; // being registered right now
    const name = h.subarray(at + VAR.name, at + VAR.name + VAR.nameLength);
    variables.push({
      handle: i, name: name.subarray(0, Math.max(0, name.indexOf(0))).toString('utf8'),
      offset: h.readUInt32LE(at + VAR.offset), size: h.readUInt32LE(at + VAR.bytes), align: h.readUInt32LE(at + VAR.align),
    });
  }
  const slotsAt = address + BigInt(header.slotsOffset);
  const slotAddress = (i: number) => asAddress(slotsAt + BigInt(i) * BigInt(slotStride));
  const headers = readMany(pid, Array.from({ length: slotCount }, (_, i) => ({ address: slotAddress(i), length: SLOT.size })));
  const claimed: ShimSlot[] = [];
  headers.forEach((s, index) => {
    if (s instanceof ReadFailure) throw new TlsdError(s.gone ? 'GONE' : 'UNAVAILABLE', `slot ${index}: ${s.describe()}`);
    const key = s.readBigUInt64LE(SLOT.key);
    if (key === shimAbi.slotEmpty || key === shimAbi.slotFree) return;
    claimed.push({
      index, address: slotAddress(index), key, fsBase: asAddress(s.readBigUInt64LE(SLOT.fsBase)),
      tid: asTid(Number(s.readBigUInt64LE(SLOT.tid))), claims: Number(s.readBigUInt64LE(SLOT.claims)),
    });
  });
  return { address, ...header, variables, claimed, free: slotCount - claimed.length };
}

/** The bytes of each variable in one slot. */
export function readSlotVariables(pid: Pid, table: ShimTable, slot: ShimSlot): Map<string, Buffer> {
  const data = readMemory(pid, asAddress(slot.address + BigInt(SLOT.size)), table.slotBytes);
  return new Map(table.variables.map((v) => [v.name, data.subarray(v.offset, v.offset + v.size)]));
}
