/* glibc's own list of its threads, read as libthread_db reads it, from
 * outside and without stopping anyone: every `struct pthread` is on one
 * of two lists, `_dl_stack_used` (stacks glibc allocated) and
 * `_dl_stack_user` (the main thread, and stacks the program gave), linked
 * through its `list` field. On x86-64 a `struct pthread` starts with its
 * TCB, so its address is the thread's pointer. Offsets come from glibc's
 * `_thread_db_*` descriptors (docs/tls-layout.md "glibc's own descriptors"). */
import { ReadFailure, readMemory, tryRead } from '../memory.js';
import { TCB_SELF } from '../tcb.js';
import { descriptor, rtldVariable } from '../tls/glibc.js';
import type { LoadedObject } from '../tls/objects.js';
import { asAddress, asTid, type Address, type Pid, type Tid } from '../types.js';

const LISTS = ['_dl_stack_used', '_dl_stack_user'];
/* list_t (<list_t.h>): { next, prev }, the same since glibc 2.3. */
const DEFAULT_LIST_NEXT = 0;

/** The thread pointer of each thread in `tids` that glibc's lists name,
 * checked against the TCB's self pointer. A list being changed while it is
 * read ends the walk early: the threads it did not reach are left out. */
export function glibcThreadPointers(pid: Pid, objects: LoadedObject[], tids: ReadonlySet<Tid>): Map<Tid, Address> {
  const found = new Map<Tid, Address>();
  const listField = descriptor(objects, 'pthread_list')?.offset;
  const tidField = descriptor(objects, 'pthread_tid')?.offset;
  const next = descriptor(objects, 'list_t_next')?.offset ?? DEFAULT_LIST_NEXT;
  if (listField === undefined || tidField === undefined) return found;
  // The fields read, all in one range from the start of struct pthread.
  const linkField = listField + next;
  const span = Math.max(TCB_SELF + 8, tidField + 4, linkField + 8);
  // Dead threads not yet joined stay listed: allow for some.
  const limit = tids.size * 4 + 1024;
  for (const name of LISTS) {
    const head = rtldVariable(pid, objects, name);
    if (head === undefined) continue;
    let node = asAddress(readMemory(pid, asAddress(head + BigInt(next)), 8).readBigUInt64LE(0));
    for (let i = 0; node !== head && node !== 0n && i < limit; i++) {
      const pd = asAddress(node - BigInt(listField));
      const bytes = tryRead(pid, pd, span);
      if (bytes instanceof ReadFailure) break;
      const tid = asTid(bytes.readInt32LE(tidField));
      if (bytes.readBigUInt64LE(TCB_SELF) === pd && tids.has(tid)) found.set(tid, pd);
      node = asAddress(bytes.readBigUInt64LE(linkField));
    }
  }
  return found;
}
