/* ELF files parsed once per (device, inode, mtime): every process that maps
 * the same libc shares one parse, and a rebuilt file is parsed again. */
import { readFileSync, statSync } from 'node:fs';
import { parseElf, type ElfImage } from './elf.js';

const MAX_ENTRIES = 256;
const cache = new Map<string, ElfImage>();

/** Throws the fs error when the file cannot be read, ElfFormatError when it
 * is not a usable ELF file. */
export function loadElf(path: string): ElfImage {
  const st = statSync(path, { bigint: true });
  const key = `${st.dev}:${st.ino}:${st.mtimeNs}`;
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key); // re-insert: Map order is the LRU order
    cache.set(key, hit);
    return hit;
  }
  const image = parseElf(readFileSync(path));
  cache.set(key, image);
  if (cache.size > MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  return image;
}
