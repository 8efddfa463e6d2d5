/* Which C library a process runs on and how it was linked, from its
 * executable's ELF file. */
import { loadElf } from './tls/elf-cache.js';
import type { ElfImage } from './tls/elf.js';
import type { Pid } from './types.js';

export type Libc = 'glibc' | 'musl' | 'none' | 'unknown';
export type Linkage = 'dynamic' | 'static';

const NT_GNU_ABI_TAG = 1; // glibc's crt1.o carries it; musl's does not
const NT_GO_BUILDID = 4; // owner "Go": a Go binary, which needs no libc
// Symbols only one libc's static startup code defines (when not stripped).
const MUSL_STATIC_MARKS = ['__init_tp', '__init_libc'];

export interface BinaryKind {
  libc: Libc;
  linkage: Linkage;
}

/** Reads the executable through the process (which also works inside a
 * container), or by its path once the process is gone. */
export function binaryKind(pid: Pid, exe: string): BinaryKind {
  for (const file of [`/proc/${pid}/exe`, exe]) {
    try {
      return classify(loadElf(file));
    } catch { /* next */ }
  }
  return { libc: 'unknown', linkage: 'dynamic' };
}

export function classify(elf: ElfImage): BinaryKind {
  if (elf.interp !== undefined) {
    const libc: Libc = elf.interp.includes('ld-musl') ? 'musl' : elf.interp.includes('ld-linux') ? 'glibc' : 'unknown';
    return { libc, linkage: 'dynamic' };
  }
  const hasNote = (owner: string, type: number) => elf.notes.some((n) => n.owner === owner && n.type === type);
  if (hasNote('GNU', NT_GNU_ABI_TAG)) return { libc: 'glibc', linkage: 'static' };
  if (hasNote('Go', NT_GO_BUILDID)) return { libc: 'none', linkage: 'static' };
  if (MUSL_STATIC_MARKS.some((name) => elf.symbols.has(name))) return { libc: 'musl', linkage: 'static' };
  return { libc: 'unknown', linkage: 'static' };
}
