/* libtlsshim's table, read from outside the process (process_vm_readv,
 * nothing stopped). The layout is native/shim/table.h: the offsets below
 * are that file's, and `version` says which layout a table has. */
import { TlsdError } from '../errors.js';
import { readMany, readMemory, ReadFailure } from '../memory.js';
import { asAddress, type Address, type Pid } from '../types.js';

const MAGIC = 0x314d494853534c54n; // "TLSSHIM1"
const VERSION = 1;
const HEADER = { magic: 0, version: 8, mode: 12, slotCount: 16, slotStride: 20, slotBytes: 24, slotsOffset: 28, pid: 32, allocation: 40, usesRdfsbase: 48, vars: 72 };
const VAR = { size: 64, offset: 0, bytes: 4, align: 8, ready: 12, name: 16, nameLength: 48 };
const SLOT = { header: 64, key: 0, fsBase: 8, tid: 16, claims: 24 };
const MAX_VARS = 64;
const SLOT_EMPTY = 0n;
const SLOT_FREE = 0xffffffffffffffffn;
const MAX_SLOTS = 1 << 20;

export type ShimMode = 'thread-pointer' | 'tid';

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
  tid: number;
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
  pid: number;
  usesRdfsbase: boolean;
  slotCount: number;
  slotStride: number;
  slotBytes: number;
  slotsOffset: number;
}

function parseHeader(h: Buffer, address: Address): ShimHeader {
  if (h.readBigUInt64LE(HEADER.magic) !== MAGIC) throw invalid(address, 'bad magic');
  const version = h.readUInt32LE(HEADER.version);
  if (version !== VERSION) throw invalid(address, `layout version ${version}, this tlsd reads ${VERSION}`);
  const modeNumber = h.readUInt32LE(HEADER.mode);
  const slotCount = h.readUInt32LE(HEADER.slotCount);
  const slotStride = h.readUInt32LE(HEADER.slotStride);
  if (modeNumber !== 1 && modeNumber !== 2) throw invalid(address, `mode ${modeNumber}`);
  if (slotCount < 1 || slotCount > MAX_SLOTS || (slotCount & (slotCount - 1)) || slotStride < SLOT.header) throw invalid(address, 'bad geometry');
  return {
    version, mode: modeNumber === 1 ? 'thread-pointer' : 'tid', pid: Number(h.readBigUInt64LE(HEADER.pid)),
    usesRdfsbase: h.readUInt32LE(HEADER.usesRdfsbase) === 1, slotCount, slotStride,
    slotBytes: h.readUInt32LE(HEADER.slotBytes), slotsOffset: h.readUInt32LE(HEADER.slotsOffset),
  };
}

/** The table's header alone: its mode and geometry. */
export function readShimHeader(pid: Pid, address: Address): ShimHeader {
  return parseHeader(readMemory(pid, address, HEADER.vars), address);
}

/** The table's header, variables and claimed slots. */
export function readShimTable(pid: Pid, address: Address): ShimTable {
  const h = readMemory(pid, address, HEADER.vars + MAX_VARS * VAR.size);
  const header = parseHeader(h, address);
  const { slotCount, slotStride } = header;
  const registered = Math.min(Number(h.readBigUInt64LE(HEADER.allocation) & 0xffffn), MAX_VARS);
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
  const headers = readMany(pid, Array.from({ length: slotCount }, (_, i) => ({ address: slotAddress(i), length: SLOT.header })));
  const claimed: ShimSlot[] = [];
  headers.forEach((s, index) => {
    if (s instanceof ReadFailure) throw new TlsdError(s.gone ? 'GONE' : 'UNAVAILABLE', `slot ${index}: ${s.describe()}`);
    const key = s.readBigUInt64LE(SLOT.key);
    if (key === SLOT_EMPTY || key === SLOT_FREE) return;
    claimed.push({
      index, address: slotAddress(index), key, fsBase: asAddress(s.readBigUInt64LE(SLOT.fsBase)),
      tid: Number(s.readBigUInt64LE(SLOT.tid)), claims: Number(s.readBigUInt64LE(SLOT.claims)),
    });
  });
  return { address, ...header, variables, claimed, free: slotCount - claimed.length };
}

/** The bytes of each variable in one slot. */
export function readSlotVariables(pid: Pid, table: ShimTable, slot: ShimSlot): Map<string, Buffer> {
  const data = readMemory(pid, asAddress(slot.address + BigInt(SLOT.header)), table.slotBytes);
  return new Map(table.variables.map((v) => [v.name, data.subarray(v.offset, v.offset + v.size)]));
}
