/* A TLS variable's bytes in the JSON forms of docs/api.md: 64-bit integers
 * as decimal strings, addresses as lowercase hex strings. */

import type { VariableType } from './dwarf.js';

export const valueTypes = ['i8', 'u8', 'i16', 'u16', 'i32', 'u32', 'i64', 'u64', 'f32', 'f64', 'ptr', 'bytes', 'cstring'] as const;
export type ValueType = (typeof valueTypes)[number];
export type Value = number | string;

const fixedSizes: Partial<Record<ValueType, number>> = { i8: 1, u8: 1, i16: 2, u16: 2, i32: 4, u32: 4, i64: 8, u64: 8, f32: 4, f64: 8, ptr: 8 };

/** How many bytes a read of `type` takes; `length` only for bytes/cstring. */
export function byteLength(type: ValueType, length: number): number {
  return fixedSizes[type] ?? length;
}

export const isFixedSize = (type: ValueType): boolean => fixedSizes[type] !== undefined;

/** How a variable of a type its debug information declares is shown. */
export function typeOfDeclared(t: VariableType): ValueType | undefined {
  const { kind, size } = t.base;
  const sized = (prefix: 'i' | 'u') => ({ 1: `${prefix}8`, 2: `${prefix}16`, 4: `${prefix}32`, 8: `${prefix}64` } as Record<number, ValueType>)[size];
  switch (kind) {
    case 'signed': return sized('i');
    case 'unsigned': return sized('u');
    case 'float': return size === 4 ? 'f32' : size === 8 ? 'f64' : undefined;
    case 'pointer': return 'ptr';
    case 'chars': return 'cstring';
    default: return undefined;
  }
}

/** The type a symbol of `size` bytes is shown as when none is asked for
 * and its debug information declares none: a C int, long or byte for the
 * usual sizes, its bytes otherwise. */
export function defaultType(size: number): ValueType {
  switch (size) {
    case 1: return 'u8';
    case 2: return 'i16';
    case 4: return 'i32';
    case 8: return 'i64';
    default: return 'bytes';
  }
}

export function decode(type: ValueType, b: Buffer): Value {
  switch (type) {
    case 'i8': return b.readInt8(0);
    case 'u8': return b.readUInt8(0);
    case 'i16': return b.readInt16LE(0);
    case 'u16': return b.readUInt16LE(0);
    case 'i32': return b.readInt32LE(0);
    case 'u32': return b.readUInt32LE(0);
    case 'i64': return b.readBigInt64LE(0).toString();
    case 'u64': return b.readBigUInt64LE(0).toString();
    case 'f32': case 'f64': {
      const v = type === 'f32' ? b.readFloatLE(0) : b.readDoubleLE(0);
      return Number.isFinite(v) ? v : String(v); // JSON has no NaN or Infinity
    }
    case 'ptr': return '0x' + b.readBigUInt64LE(0).toString(16);
    case 'bytes': return b.toString('hex');
    case 'cstring': {
      const end = b.indexOf(0);
      return b.toString('utf8', 0, end < 0 ? b.length : end);
    }
  }
}
