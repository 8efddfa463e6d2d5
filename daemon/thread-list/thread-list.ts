/* The thread pointers a process's C library records for its threads, read
 * from outside while every thread runs (native/tracer/attach.c: an attach
 * interrupts only the threads these cannot account for). Each is checked
 * against its TCB before it is given; any doubt leaves a thread out, and
 * it is then read at a stop instead. */
import type { BinaryKind } from '../binary-kind.js';
import { muslErrno } from '../tls/musl.js';
import { dynamicObjects, executable, type LoadedObject } from '../tls/objects.js';
import type { Address, Pid, Tid } from '../types.js';
import { glibcThreadPointers } from './glibc.js';
import { muslThreadPointers } from './musl.js';

export function readThreadList(pid: Pid, exePath: string, kind: BinaryKind, tids: ReadonlySet<Tid>): Map<Tid, Address> {
  if (kind.libc !== 'glibc' && kind.libc !== 'musl') return new Map();
  const exe = executable(pid, exePath);
  // NotReadyError while the dynamic linker is busy: no list then.
  const objects: LoadedObject[] = kind.linkage === 'dynamic' ? dynamicObjects(pid, exe).objects : [exe];
  return kind.libc === 'glibc'
    ? glibcThreadPointers(pid, objects, tids)
    : muslThreadPointers(pid, tids, muslErrno(objects)?.offset);
}
