/* A module's separate debug file, found as gdb finds it (gdb's manual,
 * "Debugging Information in Separate Files"): by build id under
 * /usr/lib/debug/.build-id/, then by the `.gnu_debuglink` name beside the
 * module, in its .debug/ directory, and under /usr/lib/debug/ with the
 * module's directory; all through the process's root, so that containers
 * work. A file counts only when it matches: the same build id, or the CRC-32
 * the debuglink gives. Its TLS symbols join the module's: a stripped
 * library keeps only the ones it exports (`.dynsym`), the debug file has
 * the static ones too (`.symtab`), at the same offsets. Its DWARF gives
 * their types (dwarf.ts). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { loadElf } from './elf-cache.js';
import { parseElf, type ElfImage } from './elf.js';

const DEBUG_ROOT = '/usr/lib/debug';

/** Per module image and process root: the image with its debug file's TLS symbols. */
const merged = new WeakMap<ElfImage, Map<string, ElfImage>>();

/** `root` is the process's root (/proc/PID/root); `file` the module's path in it. */
export function withDebugSymbols(image: ElfImage, root: string, file: string): ElfImage {
  let byRoot = merged.get(image);
  if (!byRoot) merged.set(image, (byRoot = new Map()));
  const key = `${root}\0${file}`;
  let result = byRoot.get(key);
  if (!result) {
    const debug = findDebugFile(image, root, file);
    result = debug
      ? { ...image, tlsSymbols: new Map([...debug.image.tlsSymbols, ...image.tlsSymbols]), dwarfFile: debug.path }
      : { ...image, dwarfFile: path.join(root, file) };
    byRoot.set(key, result);
  }
  return result;
}

function findDebugFile(image: ElfImage, root: string, file: string): { image: ElfImage; path: string } | undefined {
  const id = image.buildId;
  if (id && id.length > 2) {
    const byId = path.join(root, DEBUG_ROOT, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`);
    const debug = attempt(() => loadElf(byId));
    if (debug?.buildId === id) return { image: debug, path: byId };
  }
  const link = image.debugLink;
  if (!link) return undefined;
  const dir = path.dirname(file);
  for (const candidate of [path.join(dir, link.file), path.join(dir, '.debug', link.file), path.join(DEBUG_ROOT, dir, link.file)]) {
    if (candidate === file) continue;
    // Read once: its CRC, then its symbols from the same bytes.
    const at = path.join(root, candidate);
    const bytes = attempt(() => readFileSync(at));
    if (!bytes || crc32(bytes) !== link.crc) continue;
    const debug = attempt(() => parseElf(bytes));
    if (debug) return { image: debug, path: at };
  }
  return undefined;
}

/** What `read` gives, or undefined when it throws (a missing file, one that is not ELF). */
function attempt<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}
