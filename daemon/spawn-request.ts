/* A spawn request made concrete before the tracer is asked: the
 * executable found as execvp(3) would, the working directory checked, the
 * output files named, and the environment that loads the shim. Every
 * mistake is a clear 400 here rather than a failed exec later. */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { AttachPolicy } from './attach-policy.js';
import { TlsdError } from './errors.js';
import { shimLibrary } from './paths.js';
import { loadElf } from './tls/elf-cache.js';
import { injectRequest, type ShimRequest } from './shim/injection.js';
import type { RuleInput } from './syscalls/rule.js';
import type { InjectRequest } from './tracer/protocol.js';

export interface SpawnRequest {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  stdout?: string;
  stderr?: string;
  /** Start with libtlsshim in this mode: LD_PRELOAD for a dynamic
   * program, the tracer's injection at its exec for a static one. */
  shim?: ShimRequest;
  /** Syscall rules in force from its first instruction after execve. */
  syscalls?: RuleInput[];
  /** It dies with the daemon and cannot be detached; its rules get a
   * seccomp pre-filter (docs/syscalls.md). */
  killWithDaemon?: boolean;
}

/** What the tracer's SPAWN command takes. */
export interface PreparedSpawn {
  path: string;
  argv: string[];
  env: string[];
  cwd: string;
  stdout: string;
  stderr: string;
  /** A static program's shim, injected by the tracer at its exec. */
  inject?: InjectRequest;
}

export interface SpawnSetting {
  policy: AttachPolicy;
  /** Where output goes when the request names no file. */
  outputDir: string;
  /** A name for this spawn's output files, unique to the daemon. */
  outputName: string;
  /** The socket the shim's agent connects to. */
  shimSocket: string;
  /** The calls the shim's syscall engine traps, when it has rules: the
   * shim is then injected at the exec, the engine started there. */
  trap?: Buffer;
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

export function prepareSpawn(req: SpawnRequest, s: SpawnSetting): PreparedSpawn {
  const cwd = req.cwd ?? process.cwd();
  if (!isDirectory(cwd)) throw new TlsdError('INVALID_ARGUMENT', `cwd ${cwd} is not a directory`);
  const given = req.env ?? (process.env as Record<string, string>);
  const program = resolveExecutable(req.argv[0] ?? '', cwd, given.PATH ?? DEFAULT_PATH);
  s.policy.checkSpawn(program);
  // The engine starts with the process's first instruction, which only the
  // tracer's loader reaches: a dynamic linker would load the shim after
  // calls of its own.
  const preload = req.shim && !s.trap && isDynamic(program);
  const env = req.shim && preload ? withShim(given, req.shim, s.shimSocket) : given;
  mkdirSync(s.outputDir, { recursive: true, mode: 0o700 });
  return {
    ...(req.shim && !preload ? { inject: { ...injectRequest(req.shim, s.shimSocket), ...(s.trap ? { trap: s.trap } : {}) } } : {}),
    path: program, argv: req.argv, env: Object.entries(env).map(([k, v]) => `${k}=${v}`), cwd,
    stdout: path.resolve(cwd, req.stdout ?? path.join(s.outputDir, `${s.outputName}.stdout`)),
    stderr: path.resolve(cwd, req.stderr ?? path.join(s.outputDir, `${s.outputName}.stderr`)),
  };
}

/** Whether the program has a dynamic linker to load the shim. */
function isDynamic(program: string): boolean {
  try {
    return loadElf(program).interp !== undefined;
  } catch (e) {
    throw new TlsdError('INVALID_ARGUMENT', `cannot load the shim into ${program}: ${(e as Error).message}`);
  }
}

/** The environment that makes the dynamic linker load libtlsshim and
 * tells the shim where tlsd listens (native/shim/preload.c reads it). */
function withShim(env: Record<string, string>, shim: ShimRequest, socket: string): Record<string, string> {
  const preload = env.LD_PRELOAD ? `${shimLibrary}:${env.LD_PRELOAD}` : shimLibrary;
  return {
    ...env, LD_PRELOAD: preload, TLSSHIM_MODE: shim.mode, TLSSHIM_SOCKET: socket,
    ...(shim.slots ? { TLSSHIM_SLOTS: String(shim.slots) } : {}),
    ...(shim.slotBytes ? { TLSSHIM_SLOT_BYTES: String(shim.slotBytes) } : {}),
  };
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** execvp(3)'s search, done here so a bad name is a clear 400. */
function resolveExecutable(name: string, cwd: string, searchPath: string): string {
  if (!name) throw new TlsdError('INVALID_ARGUMENT', 'argv[0] is empty');
  const candidates = name.includes('/') ? [path.resolve(cwd, name)] : searchPath.split(':').map((d) => path.resolve(cwd, d || '.', name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch { /* next */ }
  }
  throw new TlsdError('INVALID_ARGUMENT', `executable not found: ${name}`);
}
