/* The names a programmer knows for mangled TLS symbols: C++ (Itanium,
 * `_Z...`) and Rust (legacy `_ZN...17h<hash>E` and v0 `_R...`), by
 * binutils' c++filt, which demangles all three (libiberty's demangler,
 * the one gdb uses). No npm package does the three: those for Rust do
 * Rust only, and the C++ ones are bindings that build C++ at install.
 * What c++filt prints is then made readable as a Rust programmer writes
 * it: the hash and the crate disambiguator dropped, and a thread_local!'s
 * internal path cut off (`proj::CONST_TLS::{{constant}}::{{closure}}::
 * __RUST_STD_INTERNAL_VAL::h0123...` is `proj::CONST_TLS`). */
import { spawnSync } from 'node:child_process';

const isMangled = (name: string) => name.startsWith('_Z') || name.startsWith('_R');

/** The rest of a demangled path that is thread_local!'s machinery, not
 * the variable's name: `{{constant}}`/`{K#0}` (its initializer),
 * `__getit` (older Rust). */
const RUST_TLS_INTERNALS = /::(\{\{constant\}\}|\{K#\d+\}|__getit)(::.*)?$/;

/** Readable names of the mangled ones among `names` (others are left
 * out). Without c++filt, none: the mangled names still work. */
export function demangle(names: readonly string[]): Map<string, string> {
  const mangled = names.filter(isMangled);
  const out = new Map<string, string>();
  if (!mangled.length) return out;
  const r = spawnSync('c++filt', [], { input: mangled.join('\n') + '\n', encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0 || typeof r.stdout !== 'string') return out;
  const lines = r.stdout.split('\n');
  mangled.forEach((name, i) => {
    const line = lines[i];
    if (line && line !== name) out.set(name, readable(line));
  });
  return out;
}

/** c++filt's output as a programmer writes the name. */
export function readable(demangled: string): string {
  return demangled
    .replace(/::h[0-9a-f]{16}$/, '') // legacy Rust: the hash
    .replace(/\[[0-9a-f]+\]/g, '') // v0 Rust: crate disambiguators
    .replace(RUST_TLS_INTERNALS, '');
}

/** The last component of a path (`CONST_TLS` of `proj::CONST_TLS`),
 * outside template arguments. */
export function shortName(name: string): string {
  let depth = 0;
  for (let i = name.length - 1; i > 0; i--) {
    const c = name[i];
    if (c === '>' || c === ')') depth++;
    else if (c === '<' || c === '(') depth--;
    else if (depth === 0 && c === ':' && name[i - 1] === ':') return name.slice(i + 1);
  }
  return name;
}
