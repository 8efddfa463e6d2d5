/* What a process's TLS looks like from outside: its TLS modules with their
 * ids and static offsets, glibc's slotinfo list, musl's errno field
 * (docs/tls-layout.md "Modules and module ids"). Built once per program image
 * and rebuilt only when its fingerprint — slotinfo generations on glibc,
 * the link_map chain on musl — says a module came or went. */
import type { BinaryKind } from '../binary-kind.js';
import { readMemory } from '../memory.js';
import { asAddress, type Address, type Pid } from '../types.js';
import type { TlsSegment } from './elf.js';
import {
  linkMapFieldsByScan, linkMapFieldsFromDescriptors, readSlotinfo, slotinfoLayout, slotinfoListPointer,
  type LinkMapTlsFields, type Slot, type SlotinfoLayout,
} from './glibc.js';
import { muslErrno, type ThreadPointerField } from './musl.js';
import { dynamicObjects, executable, linkMapChain, type LoadedObject } from './objects.js';

export interface TlsModule {
  id: number;
  object: LoadedObject;
  tls: TlsSegment;
  /** glibc: the block sits at `tp - staticOffset` in every thread (x86-64,
   * Variant II), for modules loaded at start or initial-exec ones. */
  staticOffset?: bigint;
}

export interface TlsLayout {
  kind: BinaryKind;
  objects: LoadedObject[];
  modules: TlsModule[];
  /** The dynamic linker's r_debug, for a dynamic program. */
  rDebug?: Address;
  glibc?: { slotinfoList: Address; slotinfoLayout: SlotinfoLayout };
  /** musl's errno, a field of struct pthread at this offset from tp. */
  muslErrno?: ThreadPointerField;
  fingerprint: string;
}

// glibc's "no static block" markers: NO_TLS_OFFSET and FORCED_DYNAMIC_TLS_OFFSET.
const NO_TLS_OFFSET = 0n;
const FORCED_DYNAMIC_TLS_OFFSET = 0xffffffffffffffffn;
const MODULE_ID_LIMIT = 1 << 20;

export function discoverLayout(pid: Pid, exePath: string, kind: BinaryKind): { layout: TlsLayout; state: TlsState } {
  const exe = executable(pid, exePath);
  const { objects, rDebug, chain } = kind.linkage === 'dynamic' ? dynamicObjects(pid, exe) : { objects: [exe], rDebug: undefined, chain: [] };
  const layout: TlsLayout = { kind, objects, modules: [], fingerprint: '', ...(rDebug !== undefined ? { rDebug } : {}) };
  if (kind.libc === 'glibc') {
    const list = slotinfoListPointer(pid, objects);
    if (list !== undefined) layout.glibc = { slotinfoList: list, slotinfoLayout: slotinfoLayout(objects) };
  }
  layout.modules = kind.linkage === 'static' ? staticModules(exe) : kind.libc === 'glibc' ? glibcModules(pid, objects) : muslModules(objects);
  if (kind.libc === 'musl') {
    const errno = muslErrno(objects);
    if (errno) layout.muslErrno = errno;
  }
  // The chain this layout was read from, not a later one: a library loaded
  // meanwhile must show as a change at the next look.
  const state = layout.glibc ? slotinfoState(pid, layout.glibc) : chainState(chain);
  layout.fingerprint = state.fingerprint;
  return { layout, state };
}

/** What can change under a layout while the program runs: which modules
 * exist (the fingerprint: equal fingerprints, same modules) and, on glibc,
 * each module's generation for the DTV check. A few small reads. */
export interface TlsState {
  fingerprint: string;
  generations?: Map<number, Slot>;
}

/** glibc: its slotinfo list names every TLS module with a generation that
 * changes at each dlopen and dlclose. Otherwise (musl, which never unloads):
 * the link_map chain. */
export function readState(pid: Pid, layout: TlsLayout): TlsState {
  if (layout.glibc) return slotinfoState(pid, layout.glibc);
  return chainState(layout.rDebug === undefined ? [] : linkMapChain(pid, layout.rDebug));
}

function slotinfoState(pid: Pid, glibc: NonNullable<TlsLayout['glibc']>): TlsState {
  const generations = readSlotinfo(pid, glibc.slotinfoList, glibc.slotinfoLayout);
  return { fingerprint: [...generations].map(([id, s]) => `${id}:${s.gen}:${s.map.toString(16)}`).join(','), generations };
}

const chainState = (chain: Address[]): TlsState => ({ fingerprint: chain.map((a) => a.toString(16)).join(',') });

const hasTls = (o: LoadedObject): o is LoadedObject & { elf: { tls: TlsSegment } } => (o.elf.tls?.memsz ?? 0n) > 0n;
const roundUp = (n: bigint, align: bigint) => (align > 1n ? ((n + align - 1n) / align) * align : n);

/** A static program has one TLS module, id 1, right below tp. */
function staticModules(exe: LoadedObject): TlsModule[] {
  if (!hasTls(exe)) return [];
  const tls = exe.elf.tls;
  return [{ id: 1, object: exe, tls, staticOffset: roundUp(tls.memsz, tls.align) }];
}

/** glibc stores each module's id and static offset in its link_map. */
function glibcModules(pid: Pid, objects: LoadedObject[]): TlsModule[] {
  const described = linkMapFieldsFromDescriptors(objects);
  const modules: TlsModule[] = [];
  for (const object of objects.filter(hasTls)) {
    const fields: LinkMapTlsFields | undefined = described ?? linkMapFieldsByScan(pid, object);
    if (!fields || object.linkMap === undefined) continue;
    const id = Number(readMemory(pid, asAddress(object.linkMap + BigInt(fields.modid)), 8).readBigUInt64LE(0));
    if (id === 0 || id > MODULE_ID_LIMIT) continue;
    const offset = readMemory(pid, asAddress(object.linkMap + BigInt(fields.tlsOffset)), 8).readBigUInt64LE(0);
    modules.push({
      id, object, tls: object.elf.tls,
      ...(offset !== NO_TLS_OFFSET && offset !== FORCED_DYNAMIC_TLS_OFFSET ? { staticOffset: offset } : {}),
    });
  }
  return modules;
}

/** musl numbers modules with TLS in load order, which is link-map order,
 * and never reuses a number. */
function muslModules(objects: LoadedObject[]): TlsModule[] {
  return objects.filter(hasTls).map((object, i) => ({ id: i + 1, object, tls: object.elf.tls }));
}
