/* glibc's private layouts (docs/tls-layout.md "glibc's own descriptors"): where
 * a link_map keeps its module id and static TLS offset, and the slotinfo
 * list that holds each module's generation. Offsets come from the target's
 * own `_thread_db_*` descriptors; the fallbacks are the layouts documented
 * there, checked against the process before they are trusted. */
import { ReadFailure, readMemory, tryRead } from '../memory.js';
import { asAddress, type Address, type Pid } from '../types.js';
import type { Descriptor } from './elf.js';
import type { LoadedObject } from './objects.js';

export interface LinkMapTlsFields {
  modid: number; // offset of l_tls_modid in struct link_map
  tlsOffset: number; // offset of l_tls_offset
}

export interface SlotinfoLayout {
  len: number;
  next: number;
  entries: number;
  entrySize: number;
  gen: number;
  map: number;
}

// Seen on glibc 2.36 and unchanged since the list was introduced (2.3).
const DEFAULT_SLOTINFO: SlotinfoLayout = { len: 0, next: 8, entries: 16, entrySize: 16, gen: 0, map: 8 };
// l_tls_offset and l_tls_modid follow l_tls_initimage at these distances
// (stable since glibc 2.17): initimage, initimage_size, blocksize, align,
// firstbyte_offset, offset, modid.
const AFTER_INITIMAGE = { tlsOffset: 40, modid: 48 };
const LINK_MAP_SCAN_BYTES = 2048;
const MAX_SLOTINFO_NODES = 64;
const MAX_SLOTINFO_LEN = 1 << 16;

export function descriptor(objects: LoadedObject[], name: string): Descriptor | undefined {
  for (const o of objects) {
    const d = o.elf.descriptors.get(name);
    if (d) return d;
  }
  return undefined;
}

export function linkMapFieldsFromDescriptors(objects: LoadedObject[]): LinkMapTlsFields | undefined {
  const modid = descriptor(objects, 'link_map_l_tls_modid');
  const tlsOffset = descriptor(objects, 'link_map_l_tls_offset');
  return modid && tlsOffset ? { modid: modid.offset, tlsOffset: tlsOffset.offset } : undefined;
}

/** Without descriptors: find l_tls_initimage in a module's link_map by its
 * known value (load bias + PT_TLS p_vaddr), followed by the image size, the
 * block size and the alignment, which pins the fields after it. */
export function linkMapFieldsByScan(pid: Pid, object: LoadedObject): LinkMapTlsFields | undefined {
  const tls = object.elf.tls;
  if (!tls || object.linkMap === undefined) return undefined;
  let bytes: Buffer | undefined;
  for (let length = LINK_MAP_SCAN_BYTES; length >= 256 && !bytes; length /= 2) {
    const r = tryRead(pid, object.linkMap, length);
    if (!(r instanceof ReadFailure)) bytes = r;
  }
  if (!bytes) return undefined;
  const initImage = (object.base + tls.vaddr) & 0xffffffffffffffffn;
  for (let at = 0; at + 32 <= bytes.length; at += 8) {
    if (bytes.readBigUInt64LE(at) === initImage && bytes.readBigUInt64LE(at + 8) === BigInt(tls.filesz)
      && bytes.readBigUInt64LE(at + 16) === tls.memsz && bytes.readBigUInt64LE(at + 24) === tls.align) {
      return { tlsOffset: at + AFTER_INITIMAGE.tlsOffset, modid: at + AFTER_INITIMAGE.modid };
    }
  }
  return undefined;
}

export function slotinfoLayout(objects: LoadedObject[]): SlotinfoLayout {
  const field = (name: string, fallback: number) => descriptor(objects, name)?.offset ?? fallback;
  const entry = descriptor(objects, 'dtv_slotinfo_list_slotinfo');
  return {
    len: field('dtv_slotinfo_list_len', DEFAULT_SLOTINFO.len),
    next: field('dtv_slotinfo_list_next', DEFAULT_SLOTINFO.next),
    entries: entry?.offset ?? DEFAULT_SLOTINFO.entries,
    entrySize: entry ? entry.bits / 8 : DEFAULT_SLOTINFO.entrySize,
    gen: field('dtv_slotinfo_gen', DEFAULT_SLOTINFO.gen),
    map: field('dtv_slotinfo_map', DEFAULT_SLOTINFO.map),
  };
}

/** Where one of the dynamic linker's variables is: a field of
 * `_rtld_global`, reached through libc's `__nptl_rtld_global` (glibc ≥
 * 2.34), or in a static executable a variable of its own of that name. */
export function rtldVariable(pid: Pid, objects: LoadedObject[], name: string): Address | undefined {
  for (const o of objects) {
    const staticVariable = o.elf.symbols.get(name);
    if (staticVariable !== undefined) return asAddress(o.base + staticVariable);
    const rtldGlobalPointer = o.elf.symbols.get('__nptl_rtld_global');
    const field = descriptor(objects, `rtld_global_${name}`);
    if (rtldGlobalPointer !== undefined && field) {
      const rtldGlobal = readMemory(pid, asAddress(o.base + rtldGlobalPointer), 8).readBigUInt64LE(0);
      return asAddress(rtldGlobal + BigInt(field.offset));
    }
  }
  return undefined;
}

/** Where the pointer to the first slotinfo node lives. */
export const slotinfoListPointer = (pid: Pid, objects: LoadedObject[]): Address | undefined =>
  rtldVariable(pid, objects, '_dl_tls_dtv_slotinfo_list');

export interface Slot {
  gen: bigint;
  map: Address;
}

/** Module id -> { generation, link_map } for every slot in use. */
export function readSlotinfo(pid: Pid, listPointer: Address, layout: SlotinfoLayout): Map<number, Slot> {
  const slots = new Map<number, Slot>();
  let node = asAddress(readMemory(pid, listPointer, 8).readBigUInt64LE(0));
  let firstId = 0;
  for (let n = 0; node !== 0n && n < MAX_SLOTINFO_NODES; n++) {
    const head = readMemory(pid, node, layout.entries);
    const len = Number(head.readBigUInt64LE(layout.len));
    if (len > MAX_SLOTINFO_LEN) throw new Error(`slotinfo node with ${len} entries`);
    const entries = readMemory(pid, asAddress(node + BigInt(layout.entries)), len * layout.entrySize);
    for (let i = 0; i < len; i++) {
      const at = i * layout.entrySize;
      const map = asAddress(entries.readBigUInt64LE(at + layout.map));
      if (map !== 0n) slots.set(firstId + i, { gen: entries.readBigUInt64LE(at + layout.gen), map });
    }
    firstId += len;
    node = asAddress(head.readBigUInt64LE(layout.next));
  }
  return slots;
}
