/* An ELF reader for what TLS resolution needs (ELF-64, little-endian, the
 * System V gABI): program headers, the dynamic section, .dynsym and .symtab
 * with their string tables, the TLS segment and its initial image, and
 * glibc's `_thread_db_*` descriptors (docs/tls-layout.md "glibc's own
 * descriptors").
 *
 * It reads untrusted files: every offset is bounds-checked, and anything
 * malformed is an ElfFormatError, never an out-of-bounds read or another
 * exception. What it keeps is small; the file's bytes are dropped. */

export class ElfFormatError extends Error {}

// Header fields and constants (gABI "ELF Header", "Program Header", "Sections").
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const DYN_SIZE = 16;
export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;
const PT_NOTE = 4;
export const PT_PHDR = 6;
export const PT_TLS = 7;
export const PF_W = 2;
const SHT_PROGBITS = 1;
const SHT_SYMTAB = 2;
const SHT_STRTAB = 3;
const NT_GNU_BUILD_ID = 3;
const SHT_DYNSYM = 11;
const SHN_UNDEF = 0;
export const STT_FUNC = 2;
export const STT_TLS = 6;
const STB_LOCAL = 0;
const DT_NULL = 0;

/** Upper bounds that keep a hostile file from costing more than a real one. */
const MAX_PHDRS = 4096;
const MAX_SECTIONS = 65535;
const MAX_NAME = 4096;
const CODE_PREFIX_BYTES = 32;

export interface Segment {
  type: number;
  /** PF_R, PF_W, PF_X */
  flags: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: bigint;
  align: bigint;
}

export interface TlsSegment extends Segment {
  /** The first `filesz` bytes of every thread's block (.tdata); the rest
   * up to `memsz` is zero (.tbss). */
  initImage: Buffer;
}

export interface TlsSymbol {
  name: string;
  /** Offset inside the module's TLS block. */
  offset: bigint;
  size: number;
  local: boolean;
}

/** glibc's description of one of its private fields, for libthread_db. */
export interface Descriptor {
  bits: number;
  count: number;
  offset: number;
}

export interface ElfImage {
  type: number;
  entry: bigint;
  segments: Segment[];
  interp?: string;
  tls?: TlsSegment;
  dynamic: Array<{ tag: bigint; value: bigint }>;
  notes: Array<{ owner: string; type: number }>;
  /** NT_GNU_BUILD_ID, lowercase hex: names its separate debug file. */
  buildId?: string;
  /** `.gnu_debuglink`: the file name of its separate debug file. */
  debugLink?: { file: string; crc: number };
  /** The file whose DWARF describes it (its separate debug file, or
   * itself), set by debug-file.ts. */
  dwarfFile?: string;
  /** TLS symbols by name, .dynsym first, then .symtab's that are not there. */
  tlsSymbols: Map<string, TlsSymbol>;
  /** Defined non-TLS symbols' values (link-time addresses). */
  symbols: Map<string, bigint>;
  descriptors: Map<string, Descriptor>;
  /** The first bytes of functions whose code tells a layout fact (musl's
   * `__errno_location` names the errno field of `struct pthread`). */
  code: Map<string, Buffer>;
}

const CODE_OF_INTEREST = ['__errno_location'];
const DESCRIPTOR_PREFIX = '_thread_db_';

/** Bounds-checked little-endian views of a file's bytes. */
class Bytes {
  constructor(readonly buf: Buffer) {}

  check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.buf.length) {
      throw new ElfFormatError(`${what} at offset ${offset} (+${length}) is outside the file (${this.buf.length} bytes)`);
    }
  }
  u8(at: number, what: string): number { this.check(at, 1, what); return this.buf[at]!; }
  u16(at: number, what: string): number { this.check(at, 2, what); return this.buf.readUInt16LE(at); }
  u32(at: number, what: string): number { this.check(at, 4, what); return this.buf.readUInt32LE(at); }
  u64(at: number, what: string): bigint { this.check(at, 8, what); return this.buf.readBigUInt64LE(at); }
  /** A u64 that must fit a file offset or size. */
  size(at: number, what: string): number {
    const v = this.u64(at, what);
    if (v > BigInt(this.buf.length)) throw new ElfFormatError(`${what} ${v} is larger than the file`);
    return Number(v);
  }
  /** A u64 size or offset that is checked only when it is used. */
  length(at: number, what: string): number {
    const v = this.u64(at, what);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  slice(at: number, length: number, what: string): Buffer { this.check(at, length, what); return this.buf.subarray(at, at + length); }
  cstring(at: number, what: string): string {
    this.check(at, 0, what);
    const end = this.buf.indexOf(0, at);
    if (end < 0 || end - at > MAX_NAME) throw new ElfFormatError(`${what} at ${at} is not a terminated string`);
    return this.buf.toString('latin1', at, end);
  }
}

interface Section { name: number; type: number; flags: number; offset: number; size: number; link: number; entsize: number }

/** The ELF header's checks, and where its section headers are. */
function header(b: Bytes): { shoff: number; shentsize: number; shnum: number; shstrndx: number } {
  b.check(0, EHDR_SIZE, 'ELF header');
  if (b.buf.readUInt32BE(0) !== 0x7f454c46) throw new ElfFormatError('not an ELF file');
  if (b.buf[4] !== ELFCLASS64 || b.buf[5] !== ELFDATA2LSB) throw new ElfFormatError('not a 64-bit little-endian ELF file');
  return { shoff: b.size(40, 'e_shoff'), shentsize: b.u16(58, 'e_shentsize'), shnum: b.u16(60, 'e_shnum'), shstrndx: b.u16(62, 'e_shstrndx') };
}

/** The bytes of the sections with these names, as the file has them
 * (compressed or not: `flags` says), for a reader of their contents
 * (dwarf.ts). */
export function namedSections(buf: Buffer, names: readonly string[]): Map<string, { bytes: Buffer; flags: number }> {
  const b = new Bytes(buf);
  const { shoff, shentsize, shnum, shstrndx } = header(b);
  const sections = readSections(b, shoff, shentsize, shnum);
  const found = new Map<string, { bytes: Buffer; flags: number }>();
  const table = sections[shstrndx];
  if (!table || table.type !== SHT_STRTAB) return found;
  const strings = new Bytes(b.slice(table.offset, table.size, 'section names'));
  for (const s of sections) {
    const name = strings.cstring(s.name, 'section name');
    if (names.includes(name)) found.set(name, { bytes: b.slice(s.offset, s.size, name), flags: s.flags });
  }
  return found;
}

export function parseElf(buf: Buffer): ElfImage {
  const b = new Bytes(buf);
  const { shoff, shentsize, shnum, shstrndx } = header(b);
  const type = b.u16(16, 'e_type');
  const entry = b.u64(24, 'e_entry');
  const phoff = b.size(32, 'e_phoff');
  const phentsize = b.u16(54, 'e_phentsize');
  const phnum = b.u16(56, 'e_phnum');
  if (phnum > 0 && phentsize < PHDR_SIZE) throw new ElfFormatError(`e_phentsize ${phentsize} is too small`);
  if (phnum > MAX_PHDRS) throw new ElfFormatError(`${phnum} program headers`);

  const segments: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    b.check(at, PHDR_SIZE, `program header ${i}`);
    segments.push({
      type: b.u32(at, 'p_type'),
      flags: b.u32(at + 4, 'p_flags'),
      offset: b.size(at + 8, 'p_offset'),
      vaddr: b.u64(at + 16, 'p_vaddr'),
      filesz: b.size(at + 32, 'p_filesz'),
      memsz: b.u64(at + 40, 'p_memsz'),
      align: b.u64(at + 48, 'p_align'),
    });
  }

  const image: ElfImage = {
    type, entry, segments, dynamic: [], notes: [], tlsSymbols: new Map(), symbols: new Map(), descriptors: new Map(), code: new Map(),
  };
  for (const s of segments) {
    if (s.type === PT_INTERP) image.interp = b.slice(s.offset, s.filesz, 'PT_INTERP').toString('latin1').replace(/\0.*$/s, '');
    if (s.type === PT_TLS) {
      if (BigInt(s.filesz) > s.memsz) throw new ElfFormatError('PT_TLS p_filesz is larger than p_memsz');
      image.tls = { ...s, initImage: Buffer.from(b.slice(s.offset, s.filesz, 'PT_TLS image')) };
    }
    if (s.type === PT_DYNAMIC) image.dynamic = readDynamic(b, s);
    if (s.type === PT_NOTE) {
      for (const n of readNotes(b.slice(s.offset, s.filesz, 'PT_NOTE'))) {
        image.notes.push({ owner: n.owner, type: n.type });
        if (n.owner === 'GNU' && n.type === NT_GNU_BUILD_ID && n.desc.length) image.buildId = n.desc.toString('hex');
      }
    }
  }

  const sections = readSections(b, shoff, shentsize, shnum);
  image.debugLink = findDebugLink(b, sections, shstrndx);
  // .dynsym first: it is what the dynamic linker sees, and survives strip.
  for (const kind of [SHT_DYNSYM, SHT_SYMTAB]) {
    for (const s of sections.filter((x) => x.type === kind)) readSymbols(b, s, sections, image);
  }
  return image;
}

function readDynamic(b: Bytes, s: Segment): Array<{ tag: bigint; value: bigint }> {
  const entries = [];
  for (let at = s.offset; at + DYN_SIZE <= s.offset + s.filesz; at += DYN_SIZE) {
    const tag = b.u64(at, 'd_tag');
    if (tag === BigInt(DT_NULL)) break;
    entries.push({ tag, value: b.u64(at + 8, 'd_val') });
  }
  return entries;
}

/** ELF notes: namesz, descsz, type, then name and desc, each 4-aligned. */
function readNotes(seg: Buffer): Array<{ owner: string; type: number; desc: Buffer }> {
  const notes = [];
  // Sizes are 32-bit and untrusted: arithmetic in doubles, not in `|`/`&`,
  // which would wrap a size near 2^32 to a negative offset.
  const align4 = (n: number) => Math.ceil(n / 4) * 4;
  for (let at = 0; at + 12 <= seg.length;) {
    const namesz = seg.readUInt32LE(at);
    const descsz = seg.readUInt32LE(at + 4);
    const nameEnd = at + 12 + namesz;
    const descAt = at + 12 + align4(namesz);
    if (descAt + descsz > seg.length) break;
    notes.push({ owner: seg.toString('latin1', at + 12, nameEnd).replace(/\0+$/, ''), type: seg.readUInt32LE(at + 8), desc: seg.subarray(descAt, descAt + descsz) });
    at = descAt + align4(descsz);
  }
  return notes;
}

/** The `.gnu_debuglink` section, if the section names can be read: a
 * file whose names are damaged is still usable without it. */
function findDebugLink(b: Bytes, sections: Section[], shstrndx: number): { file: string; crc: number } | undefined {
  const names = sections[shstrndx];
  if (!names || names.type !== SHT_STRTAB) return undefined;
  try {
    const table = new Bytes(b.slice(names.offset, names.size, 'section names'));
    const link = sections.find((s) => s.type === SHT_PROGBITS && table.cstring(s.name, 'section name') === '.gnu_debuglink');
    return link ? readDebugLink(b, link) : undefined;
  } catch (e) {
    if (e instanceof ElfFormatError) return undefined;
    throw e;
  }
}

/** `.gnu_debuglink`: a NUL-terminated file name, padding to 4, a CRC-32. */
function readDebugLink(b: Bytes, s: Section): { file: string; crc: number } | undefined {
  const data = b.slice(s.offset, s.size, '.gnu_debuglink');
  const end = data.indexOf(0);
  if (end <= 0 || end > MAX_NAME) return undefined;
  const crcAt = (end + 4) & ~3;
  if (crcAt + 4 > data.length) return undefined;
  return { file: data.toString('latin1', 0, end), crc: data.readUInt32LE(crcAt) };
}

function readSections(b: Bytes, shoff: number, shentsize: number, shnum: number): Section[] {
  if (shnum === 0 || shoff === 0) return [];
  if (shentsize < SHDR_SIZE) throw new ElfFormatError(`e_shentsize ${shentsize} is too small`);
  if (shnum > MAX_SECTIONS) throw new ElfFormatError(`${shnum} sections`);
  const sections: Section[] = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    b.check(at, SHDR_SIZE, `section header ${i}`);
    sections.push({
      name: b.u32(at, 'sh_name'),
      type: b.u32(at + 4, 'sh_type'),
      flags: Number(b.u64(at + 8, 'sh_flags')),
      offset: b.length(at + 24, 'sh_offset'),
      size: b.length(at + 32, 'sh_size'), // .bss and .tbss take no file space
      link: b.u32(at + 40, 'sh_link'),
      entsize: b.length(at + 56, 'sh_entsize'),
    });
  }
  return sections;
}

function readSymbols(b: Bytes, table: Section, sections: Section[], image: ElfImage): void {
  if (table.entsize !== SYM_SIZE) throw new ElfFormatError(`symbol table entry size ${table.entsize}`);
  const strtab = sections[table.link];
  if (!strtab) throw new ElfFormatError(`symbol table names string table ${table.link}, which does not exist`);
  b.check(table.offset, table.size, 'symbol table');
  b.check(strtab.offset, strtab.size, 'string table');
  const names = new Bytes(b.slice(strtab.offset, strtab.size, 'string table'));
  for (let at = table.offset; at + SYM_SIZE <= table.offset + table.size; at += SYM_SIZE) {
    const nameAt = b.u32(at, 'st_name');
    const info = b.u8(at + 4, 'st_info');
    const shndx = b.u16(at + 6, 'st_shndx');
    if (nameAt === 0 || shndx === SHN_UNDEF) continue;
    const name = names.cstring(nameAt, 'symbol name');
    const value = b.u64(at + 8, 'st_value');
    const size = b.u64(at + 16, 'st_size');
    const kind = info & 0xf;
    if (kind === STT_TLS) {
      if (!image.tlsSymbols.has(name)) {
        image.tlsSymbols.set(name, { name, offset: value, size: Number(size > 0xffffffffn ? 0xffffffffn : size), local: info >> 4 === STB_LOCAL });
      }
      continue;
    }
    if (image.symbols.has(name)) continue;
    image.symbols.set(name, value);
    if (name.startsWith(DESCRIPTOR_PREFIX)) {
      const d = atVaddr(b, image.segments, value, 12);
      if (d) image.descriptors.set(name.slice(DESCRIPTOR_PREFIX.length), { bits: d.readUInt32LE(0), count: d.readUInt32LE(4), offset: d.readUInt32LE(8) });
    }
    if (kind === STT_FUNC && CODE_OF_INTEREST.includes(name)) {
      const code = atVaddr(b, image.segments, value, CODE_PREFIX_BYTES);
      if (code) image.code.set(name, Buffer.from(code));
    }
  }
}

/** The file bytes that a PT_LOAD maps at link-time address `vaddr`. */
function atVaddr(b: Bytes, segments: Segment[], vaddr: bigint, length: number): Buffer | undefined {
  for (const s of segments) {
    if (s.type !== PT_LOAD || vaddr < s.vaddr || vaddr + BigInt(length) > s.vaddr + BigInt(s.filesz)) continue;
    const at = s.offset + Number(vaddr - s.vaddr);
    return at + length <= b.buf.length ? b.buf.subarray(at, at + length) : undefined;
  }
  return undefined;
}
