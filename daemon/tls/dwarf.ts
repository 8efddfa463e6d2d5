/* The least of DWARF that tlsd needs: where named members lie in named
 * structures (.debug_info and .debug_abbrev, DWARF 2 to 5, 32-bit units),
 * from sections compressed or not. Go's runtime keeps the current
 * goroutine's fields at offsets that change between Go versions, and its
 * binaries carry this debug information by default (daemon/go.ts). */
import { inflateSync } from 'node:zlib';
import { namedSections } from './elf.js';

export class DwarfError extends Error {}

const SHF_COMPRESSED = 0x800;
const ELFCOMPRESS_ZLIB = 1;
const DW_TAG = { array: 0x01, enumeration: 0x04, member: 0x0d, pointer: 0x0f, structure: 0x13, typedef: 0x16, union: 0x17, subrange: 0x21, base: 0x24, const: 0x26, variable: 0x34, volatile: 0x35 };
const DW_AT = { name: 0x03, byteSize: 0x0b, upperBound: 0x2f, count: 0x37, dataMemberLocation: 0x38, encoding: 0x3e, type: 0x49 };
const DW_ATE = { boolean: 2, float: 4, signed: 5, signedChar: 6, unsigned: 7, unsignedChar: 8 };
const DW_FORM_string = 0x08;
const DW_FORM_strp = 0x0e;
const DW_FORM_indirect = 0x16;
const DW_FORM_implicit_const = 0x21;
const DW_OP_plus_uconst = 0x23;

/** A section's bytes by name, decompressed: SHF_COMPRESSED (zlib), or
 * the older .zdebug_* ("ZLIB" and a big-endian size). */
function sections(elf: Buffer, wanted: string[]): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  for (const [name, { bytes, flags }] of namedSections(elf, [...wanted, ...wanted.map((w) => w.replace(/^\.debug_/, '.zdebug_'))])) {
    let plain = bytes;
    if (flags & SHF_COMPRESSED) {
      if (bytes.readUInt32LE(0) !== ELFCOMPRESS_ZLIB) throw new DwarfError(`${name}: not zlib-compressed`);
      plain = inflateSync(bytes.subarray(24)); // after its Elf64_Chdr
    } else if (name.startsWith('.zdebug_')) {
      if (bytes.toString('latin1', 0, 4) !== 'ZLIB') throw new DwarfError(`${name}: no ZLIB header`);
      plain = inflateSync(bytes.subarray(12));
    }
    found.set(name.replace(/^\.zdebug_/, '.debug_'), plain);
  }
  return found;
}

/** A cursor over one section. */
class Reader {
  constructor(readonly buf: Buffer, public at = 0) {}
  u8(): number { return this.buf[this.at++]!; }
  u16(): number { const v = this.buf.readUInt16LE(this.at); this.at += 2; return v; }
  u32(): number { const v = this.buf.readUInt32LE(this.at); this.at += 4; return v; }
  uleb(): number {
    let result = 0, shift = 0, byte;
    do {
      byte = this.buf[this.at++];
      if (byte === undefined) throw new DwarfError('LEB128 past the end of the section');
      if (shift < 49) result += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return result;
  }
  sleb(): number {
    let result = 0, shift = 0, byte;
    do {
      byte = this.buf[this.at++]!;
      if (shift < 49) result += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return byte & 0x40 && shift < 53 ? result - 2 ** shift : result;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new DwarfError('unterminated string');
    const s = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
}

interface Abbrev { tag: number; children: boolean; attrs: Array<{ name: number; form: number; implicit?: number }> }

function abbrevTable(r: Reader): Map<number, Abbrev> {
  const table = new Map<number, Abbrev>();
  for (;;) {
    const code = r.uleb();
    if (code === 0) return table;
    const tag = r.uleb();
    const children = r.u8() === 1;
    const attrs: Abbrev['attrs'] = [];
    for (;;) {
      const name = r.uleb(), form = r.uleb();
      if (name === 0 && form === 0) break;
      attrs.push({ name, form, ...(form === DW_FORM_implicit_const ? { implicit: r.sleb() } : {}) });
    }
    table.set(code, { tag, children, attrs });
  }
}

/** An attribute's value: a number, a string, or a block's bytes. */
type Value = number | string | Buffer | undefined;

function readValue(r: Reader, form: number, addressSize: number, version: number, str: Buffer | undefined, implicit?: number): Value {
  const block = (n: number) => { const b = r.buf.subarray(r.at, r.at + n); r.at += n; return b; };
  switch (form) {
    case 0x01: r.at += addressSize; return undefined; // addr
    case 0x03: return block(r.u16());
    case 0x04: return block(r.u32());
    case 0x05: return r.u16();
    case 0x06: return r.u32();
    case 0x07: { const v = r.buf.readBigUInt64LE(r.at); r.at += 8; return Number(v); }
    case DW_FORM_string: return r.cstring();
    case 0x09: case 0x18: return block(r.uleb()); // block, exprloc
    case 0x0a: return block(r.u8());
    case 0x0b: return r.u8();
    case 0x0c: return r.u8(); // flag
    case 0x0d: return r.sleb();
    case DW_FORM_strp: {
      const off = r.u32();
      if (!str) return undefined;
      return str.toString('utf8', off, str.indexOf(0, off));
    }
    case 0x0f: return r.uleb();
    case 0x10: r.at += version <= 2 ? addressSize : 4; return undefined; // ref_addr
    case 0x11: return r.u8();
    case 0x12: return r.u16();
    case 0x13: return r.u32();
    case 0x14: case 0x20: r.at += 8; return undefined; // ref8, ref_sig8
    case 0x15: return r.uleb();
    case DW_FORM_indirect: return readValue(r, r.uleb(), addressSize, version, str);
    case 0x17: case 0x1c: case 0x1d: case 0x1f: r.at += 4; return undefined; // sec_offset, ref_sup4, strp_sup, line_strp
    case 0x19: return 1; // flag_present
    case 0x1a: case 0x1b: case 0x22: case 0x23: r.uleb(); return undefined; // strx, addrx, loclistx, rnglistx
    case 0x1e: r.at += 16; return undefined;
    case DW_FORM_implicit_const: return implicit;
    case 0x24: r.at += 8; return undefined;
    case 0x25: case 0x29: r.at += 1; return undefined;
    case 0x26: case 0x2a: r.at += 2; return undefined;
    case 0x27: case 0x2b: r.at += 3; return undefined;
    case 0x28: case 0x2c: r.at += 4; return undefined;
    default: throw new DwarfError(`unknown DWARF form 0x${form.toString(16)}`);
  }
}

/** A member's offset: a constant, or a DW_OP_plus_uconst expression. */
function memberOffset(v: Value): number | undefined {
  if (typeof v === 'number') return v;
  if (Buffer.isBuffer(v) && v[0] === DW_OP_plus_uconst) return new Reader(v, 1).uleb();
  return undefined;
}

/** One debugging information entry: its tag, its attributes by name,
 * where it is in its unit, and how deep. */
interface Die {
  offset: number; // in its unit
  tag: number;
  attrs: Map<number, Value>;
  depth: number;
  children: boolean;
}

/** Every entry of every unit, in order; `unitEnd` is called after each
 * unit's last one (its entries' offsets are unit-relative). */
function* entries(elf: Buffer): Generator<Die | 'unit-end'> {
  const s = sections(elf, ['.debug_info', '.debug_abbrev', '.debug_str']);
  const info = s.get('.debug_info'), abbrev = s.get('.debug_abbrev');
  if (!info || !abbrev) throw new DwarfError('no debug information (built without it, or stripped)');
  const str = s.get('.debug_str');
  const r = new Reader(info);
  while (r.at < info.length) {
    const start = r.at;
    const length = r.u32();
    if (length >= 0xfffffff0) throw new DwarfError('64-bit DWARF units are not read');
    const end = start + 4 + length;
    const version = r.u16();
    let addressSize: number, abbrevOffset: number;
    if (version >= 5) {
      r.u8(); // unit type
      addressSize = r.u8();
      abbrevOffset = r.u32();
    } else {
      abbrevOffset = r.u32();
      addressSize = r.u8();
    }
    const table = abbrevTable(new Reader(abbrev, abbrevOffset));
    let depth = 0;
    while (r.at < end) {
      const offset = r.at - start;
      const code = r.uleb();
      if (code === 0) {
        depth--;
        continue;
      }
      const a = table.get(code);
      if (!a) throw new DwarfError(`abbreviation ${code} is not in its table`);
      const attrs = new Map<number, Value>();
      for (const attr of a.attrs) attrs.set(attr.name, readValue(r, attr.form, addressSize, version, str, attr.implicit));
      yield { offset, tag: a.tag, attrs, depth, children: a.children };
      if (a.children) depth++;
    }
    r.at = end;
    yield 'unit-end';
  }
}

export type StructLayouts = Map<string, Map<string, number>>;

/** The offsets of the members of these structures (by name), from the
 * first definition of each that has members. */
export function structLayouts(elf: Buffer, structs: readonly string[]): StructLayouts {
  const layouts: StructLayouts = new Map();
  let inside: { depth: number; name: string; members: Map<string, number> } | undefined;
  for (const die of entries(elf)) {
    if (inside && (die === 'unit-end' || die.depth <= inside.depth)) {
      if (inside.members.size && !layouts.has(inside.name)) layouts.set(inside.name, inside.members);
      inside = undefined;
      if (layouts.size === structs.length) break;
    }
    if (die === 'unit-end') continue;
    const name = die.attrs.get(DW_AT.name);
    if (!inside && die.tag === DW_TAG.structure && die.children && typeof name === 'string' && structs.includes(name) && !layouts.has(name)) {
      inside = { depth: die.depth, name, members: new Map() };
    } else if (inside && die.tag === DW_TAG.member && die.depth === inside.depth + 1 && typeof name === 'string') {
      const at = memberOffset(die.attrs.get(DW_AT.dataMemberLocation));
      if (at !== undefined) inside.members.set(name, at);
    }
  }
  return layouts;
}

/** A variable's type as its source says it (`unsigned long`, `char[32]`,
 * `struct tcache *`) and the base it comes down to, through typedefs and
 * qualifiers. */
export interface VariableType {
  name: string;
  base: { kind: 'signed' | 'unsigned' | 'float' | 'pointer' | 'chars' | 'other'; size: number };
}


/** The types of the variables with these names, from the first unit that
 * declares each with a type. */
export function variableTypes(elf: Buffer, names: ReadonlySet<string>): Map<string, VariableType> {
  const found = new Map<string, VariableType>();
  let unit = new Map<number, Die>();
  let variables: Die[] = [];
  let lastArray: Die | undefined;
  for (const die of entries(elf)) {
    if (die !== 'unit-end') {
      unit.set(die.offset, die);
      if (die.tag === DW_TAG.array) lastArray = die;
      // An array's length is its subrange's: kept on the array.
      if (die.tag === DW_TAG.subrange && lastArray && die.depth > lastArray.depth) {
        const n = die.attrs.get(DW_AT.count) ?? (typeof die.attrs.get(DW_AT.upperBound) === 'number' ? (die.attrs.get(DW_AT.upperBound) as number) + 1 : undefined);
        if (typeof n === 'number') lastArray.attrs.set(DW_AT.count, n);
      }
      const name = die.attrs.get(DW_AT.name);
      if (die.tag === DW_TAG.variable && typeof name === 'string' && names.has(name) && !found.has(name)) variables.push(die);
      continue;
    }
    for (const v of variables) {
      const t = describe(unit, v.attrs.get(DW_AT.type));
      if (t && !found.has(v.attrs.get(DW_AT.name) as string)) found.set(v.attrs.get(DW_AT.name) as string, t);
    }
    if (found.size === names.size) break;
    unit = new Map();
    variables = [];
    lastArray = undefined;
  }
  return found;
}

function describe(unit: Map<number, Die>, ref: Value, hops = 0): VariableType | undefined {
  const die = typeof ref === 'number' ? unit.get(ref) : undefined;
  if (!die || hops > 16) return undefined;
  const name = die.attrs.get(DW_AT.name);
  const size = die.attrs.get(DW_AT.byteSize);
  const inner = () => describe(unit, die.attrs.get(DW_AT.type), hops + 1);
  switch (die.tag) {
    case DW_TAG.base: {
      const e = die.attrs.get(DW_AT.encoding), n = typeof size === 'number' ? size : 0;
      const kind = e === DW_ATE.float ? 'float' : e === DW_ATE.signed || e === DW_ATE.signedChar ? 'signed'
        : e === DW_ATE.unsigned || e === DW_ATE.unsignedChar || e === DW_ATE.boolean ? 'unsigned' : 'other';
      return { name: String(name ?? '?'), base: { kind, size: n } };
    }
    case DW_TAG.typedef: {
      const t = inner();
      return t && { ...t, name: String(name ?? t.name) };
    }
    case DW_TAG.const: case DW_TAG.volatile: {
      const t = inner();
      return t && { ...t, name: `${die.tag === DW_TAG.const ? 'const' : 'volatile'} ${t.name}` };
    }
    case DW_TAG.pointer: {
      const t = inner();
      return { name: `${t?.name ?? 'void'} *`, base: { kind: 'pointer', size: typeof size === 'number' ? size : 8 } };
    }
    case DW_TAG.array: {
      const t = inner();
      const count = die.attrs.get(DW_AT.count);
      const chars = t?.base.size === 1 && (t.base.kind === 'signed' || t.base.kind === 'unsigned');
      const n = typeof count === 'number' ? count : 0;
      return { name: `${t?.name ?? '?'}[${n || ''}]`, base: { kind: chars ? 'chars' : 'other', size: n * (t?.base.size ?? 0) } };
    }
    case DW_TAG.structure: case DW_TAG.union: case DW_TAG.enumeration: {
      const word = die.tag === DW_TAG.structure ? 'struct' : die.tag === DW_TAG.union ? 'union' : 'enum';
      const n = typeof size === 'number' ? size : 0;
      return { name: `${word} ${String(name ?? '{...}')}`, base: { kind: die.tag === DW_TAG.enumeration ? 'signed' : 'other', size: n } };
    }
    default:
      return undefined;
  }
}
