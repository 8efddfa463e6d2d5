/* Which C library a process runs on and how it was linked, from its
 * executable's ELF program headers (ELF-64, x86-64, little-endian). The
 * full ELF reader for TLS comes with the TLS resolver; this needs only the
 * interpreter name and the notes. */
import { readHead } from './procfs.js';
import type { Pid } from './types.js';

export type Libc = 'glibc' | 'musl' | 'none' | 'unknown';
export type Linkage = 'dynamic' | 'static';

const PT_INTERP = 3;
const PT_NOTE = 4;
const NT_GNU_ABI_TAG = 1; // glibc's crt1.o carries it; musl's does not
const NT_GO_BUILDID = 4; // owner "Go": a Go binary, which needs no libc
const HEAD_BYTES = 64 * 1024; // program headers, interpreter and notes sit in the first page(s)

export interface BinaryKind {
  libc: Libc;
  linkage: Linkage;
}

/** Reads the executable through the process (which also works inside a
 * container), or by its path once the process is gone. */
export function binaryKind(pid: Pid, exe: string): BinaryKind {
  for (const file of [`/proc/${pid}/exe`, exe]) {
    try {
      return classify(readHead(file, HEAD_BYTES));
    } catch { /* next */ }
  }
  return { libc: 'unknown', linkage: 'dynamic' };
}

function classify(head: Buffer): BinaryKind {
  const unknown: BinaryKind = { libc: 'unknown', linkage: 'static' };
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return unknown;
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  let interp: string | undefined;
  const notes: Array<{ owner: string; type: number }> = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (phentsize < 56 || at + 56 > head.length) break;
    const type = head.readUInt32LE(at);
    const offset = Number(head.readBigUInt64LE(at + 8));
    const size = Number(head.readBigUInt64LE(at + 32));
    if (offset + size > head.length) continue;
    if (type === PT_INTERP) interp = head.toString('latin1', offset, offset + size).replace(/\0.*$/s, '');
    if (type === PT_NOTE) notes.push(...readNotes(head.subarray(offset, offset + size)));
  }
  if (interp !== undefined) {
    const libc: Libc = interp.includes('ld-musl') ? 'musl' : interp.includes('ld-linux') ? 'glibc' : 'unknown';
    return { libc, linkage: 'dynamic' };
  }
  if (notes.some((n) => n.owner === 'GNU' && n.type === NT_GNU_ABI_TAG)) return { libc: 'glibc', linkage: 'static' };
  if (notes.some((n) => n.owner === 'Go' && n.type === NT_GO_BUILDID)) return { libc: 'none', linkage: 'static' };
  return unknown;
}

/** ELF notes: namesz, descsz, type, then name and desc, each 4-aligned. */
function readNotes(seg: Buffer): Array<{ owner: string; type: number }> {
  const notes = [];
  const align4 = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 12 <= seg.length;) {
    const namesz = seg.readUInt32LE(at);
    const descsz = seg.readUInt32LE(at + 4);
    const type = seg.readUInt32LE(at + 8);
    const nameEnd = at + 12 + namesz;
    if (nameEnd > seg.length) break;
    notes.push({ owner: seg.toString('latin1', at + 12, nameEnd).replace(/\0+$/, ''), type });
    at = at + 12 + align4(namesz) + align4(descsz);
  }
  return notes;
}
