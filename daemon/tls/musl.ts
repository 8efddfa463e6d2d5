/* musl keeps errno in `struct pthread`, not in TLS (docs/tls-layout.md
 * "Pitfalls"). Its offset is read from the target's own `__errno_location`,
 * `return &__pthread_self()->errno_val;`, which compiles on x86-64 to
 *     [endbr64]  mov %fs:0,%rax  add $OFFSET,%rax  ret
 * so the offset is what this musl build uses, not a guess. x86-64 only. */
import type { LoadedObject } from './objects.js';

const ENDBR64 = Buffer.from([0xf3, 0x0f, 0x1e, 0xfa]);
const MOV_FS0_RAX = Buffer.from([0x64, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00]);
const ADD_IMM8_RAX = Buffer.from([0x48, 0x83, 0xc0]);
const ADD_IMM32_RAX = Buffer.from([0x48, 0x05]);
const RET = 0xc3;

/** Offset of errno from the thread pointer, or undefined when the code is
 * not the expected shape (then errno is not offered rather than guessed). */
export function errnoOffsetFromCode(code: Buffer): number | undefined {
  let at = code.subarray(0, 4).equals(ENDBR64) ? 4 : 0;
  if (!code.subarray(at, at + MOV_FS0_RAX.length).equals(MOV_FS0_RAX)) return undefined;
  at += MOV_FS0_RAX.length;
  let offset: number;
  if (code.subarray(at, at + 3).equals(ADD_IMM8_RAX) && at + 4 < code.length) {
    offset = code.readInt8(at + 3);
    at += 4;
  } else if (code.subarray(at, at + 2).equals(ADD_IMM32_RAX) && at + 6 < code.length) {
    offset = code.readInt32LE(at + 2);
    at += 6;
  } else {
    return undefined;
  }
  return code[at] === RET ? offset : undefined;
}

export interface ThreadPointerField {
  object: LoadedObject;
  offset: number;
}

export function muslErrno(objects: LoadedObject[]): ThreadPointerField | undefined {
  for (const object of objects) {
    const code = object.elf.code.get('__errno_location');
    const offset = code && errnoOffsetFromCode(code);
    if (offset !== undefined) return { object, offset };
  }
  return undefined;
}
