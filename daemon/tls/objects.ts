/* The ELF objects a process has loaded, found from outside
 * (docs/tls-layout.md "Modules and module ids"): the executable from the auxiliary
 * vector, the rest from the dynamic linker's `r_debug`/`link_map` chain,
 * which glibc and musl lay out alike. Files are opened through
 * /proc/PID/root so that a containerised target's own files are read. */
import { basename } from 'node:path';
import { readFileSync } from 'node:fs';
import { readAuxv } from '../procfs.js';
import { readCString, readMemory } from '../memory.js';
import { asAddress, type Address, type Pid } from '../types.js';
import { withDebugSymbols } from './debug-file.js';
import { loadElf } from './elf-cache.js';
import { PT_DYNAMIC, PT_PHDR, type ElfImage } from './elf.js';

// <elf.h> auxiliary vector types and dynamic tags.
const AT_PHDR = 3n;
const AT_ENTRY = 9n;
const DT_DEBUG = 21n;
// struct r_debug (<link.h>, musl's struct debug alike): r_version@0,
// r_map@8, r_brk@16, r_state@24.
const R_MAP = 8;
const R_STATE = 24;
const RT_CONSISTENT = 0;
// struct link_map (<link.h>, musl's struct dso starts alike): l_addr@0,
// l_name@8, l_ld@16, l_next@24.
const L_ADDR = 0;
const L_NAME = 8;
const L_NEXT = 24;
const LINK_MAP_HEAD_BYTES = 24; // l_addr, l_name, l_ld
const MAX_OBJECTS = 4096;
const MAX_PATH = 4096;

export interface LoadedObject {
  /** The path the process loaded it from. */
  path: string;
  /** Load bias: run-time address minus link-time address. */
  base: bigint;
  /** Its `struct link_map` in the process, for a dynamic program. */
  linkMap?: Address;
  elf: ElfImage;
}

export interface ObjectList {
  objects: LoadedObject[];
  /** The dynamic linker's `struct r_debug`: where it stays. */
  rDebug: Address;
  /** The link_map addresses this list was read from (linkMapChain). */
  chain: Address[];
}

export class NotReadyError extends Error {}

/** The executable alone: enough for a static program. */
export function executable(pid: Pid, exePath: string): LoadedObject {
  const elf = withDebugSymbols(loadElf(`/proc/${pid}/exe`), `/proc/${pid}/root`, exePath);
  const auxv = readAuxv(pid);
  const phdr = elf.segments.find((s) => s.type === PT_PHDR);
  // A static-pie has no PT_PHDR: its entry point gives the bias instead.
  const base = phdr ? (auxv.get(AT_PHDR) ?? 0n) - phdr.vaddr : (auxv.get(AT_ENTRY) ?? 0n) - elf.entry;
  return { path: exePath, base: BigInt.asUintN(64, base), elf };
}

/** Every object of a dynamic program, in link-map order (executable first).
 * Throws NotReadyError while the dynamic linker has not run yet or is in
 * the middle of a dlopen/dlclose. */
export function dynamicObjects(pid: Pid, exe: LoadedObject): ObjectList {
  const rDebug = debugPointer(pid, exe);
  if (rDebug === 0n) throw new NotReadyError('the dynamic linker has not set up the program yet');
  const state = readMemory(pid, asAddress(rDebug + BigInt(R_STATE)), 4).readInt32LE(0);
  if (state !== RT_CONSISTENT) throw new NotReadyError('the program is loading or unloading a library');
  const chain = linkMapChain(pid, rDebug);
  const [first, ...rest] = chain;
  const objects: LoadedObject[] = first === undefined ? [] : [{ ...exe, linkMap: first }]; // entry 0 is the executable
  for (const lm of rest) {
    const head = readMemory(pid, lm, LINK_MAP_HEAD_BYTES);
    const name = readCString(pid, asAddress(head.readBigUInt64LE(L_NAME)), MAX_PATH);
    const elf = name ? openObject(pid, name) : undefined; // no file: the vDSO
    if (elf) objects.push({ path: name, base: head.readBigUInt64LE(L_ADDR), linkMap: lm, elf });
  }
  return { objects, rDebug, chain };
}

/** The link_map addresses in chain order: when they change, a module was
 * loaded or unloaded. A few 8-byte reads. */
export function linkMapChain(pid: Pid, rDebug: Address): Address[] {
  const chain: Address[] = [];
  let lm = asAddress(readMemory(pid, asAddress(rDebug + BigInt(R_MAP)), 8).readBigUInt64LE(0));
  for (let i = 0; lm !== 0n && i < MAX_OBJECTS; i++) {
    chain.push(lm);
    lm = asAddress(readMemory(pid, asAddress(lm + BigInt(L_NEXT)), 8).readBigUInt64LE(0));
  }
  return chain;
}

/** DT_DEBUG of the executable's dynamic section in memory: the dynamic
 * linker stores its `r_debug` address there. */
function debugPointer(pid: Pid, exe: LoadedObject): Address {
  const dynamic = exe.elf.segments.find((s) => s.type === PT_DYNAMIC);
  if (!dynamic) return asAddress(0n);
  const bytes = readMemory(pid, asAddress(exe.base + dynamic.vaddr), Number(dynamic.memsz));
  for (let at = 0; at + 16 <= bytes.length; at += 16) {
    const tag = bytes.readBigUInt64LE(at);
    if (tag === 0n) break;
    if (tag === DT_DEBUG) return asAddress(bytes.readBigUInt64LE(at + 8));
  }
  return asAddress(0n);
}

/** A library's file as the process sees it. A name that is not absolute
 * (musl keeps `dlopen("./x.so")` as given) is found in the process's maps. */
function openObject(pid: Pid, name: string): ElfImage | undefined {
  const path = name.startsWith('/') ? name : mappedPath(pid, name);
  if (!path) return undefined;
  try {
    return withDebugSymbols(loadElf(`/proc/${pid}/root${path}`), `/proc/${pid}/root`, path);
  } catch {
    return undefined;
  }
}

function mappedPath(pid: Pid, name: string): string | undefined {
  const wanted = '/' + basename(name);
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const path = line.match(/^(?:\S+\s+){5}(\/.*)$/)?.[1]; // the sixth field runs to the end of the line
    if (path?.endsWith(wanted)) return path;
  }
  return undefined;
}
