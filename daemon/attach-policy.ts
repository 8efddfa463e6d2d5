/* Who may be traced (docs/security.md). The control API can read any
 * supervised process's memory, so the daemon decides what it will
 * supervise, not the client.
 *
 * Always refused (by the supervisor's preflight): pid 1, the daemon, its
 * tracer, kernel threads. Refused here: another user's process when the
 * daemon is not root, and, when an allowlist is set (TLSD_ATTACH_ALLOW),
 * anything whose uid and executable are both off the list. A spawn is
 * checked the same way, as the daemon's uid running the resolved program:
 * otherwise spawning would be a way around the list. */
import { realpathSync } from 'node:fs';
import { TlsdError } from './errors.js';
import type { Pid } from './types.js';

export interface AttachAllowlist {
  uids: ReadonlySet<number>;
  /** Absolute executable paths; an entry ending in `/` allows a directory's
   * programs (and those of its subdirectories). */
  executables: readonly string[];
}

/** `TLSD_ATTACH_ALLOW`: comma-separated; a number is a uid, an absolute
 * path an executable (or a directory when it ends in `/`). */
export function parseAllowlist(text: string): AttachAllowlist {
  const uids = new Set<number>();
  const executables: string[] = [];
  for (const entry of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (/^\d+$/.test(entry)) uids.add(Number(entry));
    else if (entry.startsWith('/')) executables.push(canonical(entry));
    else throw new Error(`TLSD_ATTACH_ALLOW: "${entry}" is neither a uid nor an absolute path`);
  }
  return { uids, executables };
}

/** Symlinks resolved, as /proc/PID/exe shows them; a path that does not
 * exist yet is kept as written. */
function canonical(p: string): string {
  const dir = p.endsWith('/');
  try {
    const real = realpathSync(p);
    return dir && !real.endsWith('/') ? real + '/' : real;
  } catch {
    return p;
  }
}

export class AttachPolicy {
  constructor(
    private readonly allowlist?: AttachAllowlist,
    // Linux always has getuid; the types make it optional for Windows.
    private readonly daemonUid = process.getuid!(),
  ) {}

  /** Throws FORBIDDEN with the reason. */
  checkAttach(pid: Pid, uid: number, executable: string | undefined): void {
    this.check(`process ${pid}`, uid, executable);
  }

  /** A spawned program runs as the daemon's uid. */
  checkSpawn(program: string): void {
    this.check(program, this.daemonUid, program);
  }

  private check(what: string, uid: number, executable: string | undefined): void {
    if (this.daemonUid !== 0 && uid !== this.daemonUid) {
      throw new TlsdError('FORBIDDEN', `${what} belongs to uid ${uid}; a daemon that is not root traces only its own uid (${this.daemonUid})`);
    }
    const allow = this.allowlist;
    if (!allow || allow.uids.has(uid)) return;
    const exe = executable === undefined ? undefined : canonical(executable);
    if (exe !== undefined && allow.executables.some((e) => (e.endsWith('/') ? exe.startsWith(e) : exe === e))) return;
    throw new TlsdError('FORBIDDEN', `${what} (uid ${uid}, ${exe ?? 'no executable'}) is not in TLSD_ATTACH_ALLOW`);
  }

  describe(): Record<string, unknown> {
    return {
      daemonUid: this.daemonUid,
      allow: this.allowlist ? { uids: [...this.allowlist.uids], executables: this.allowlist.executables } : 'any',
    };
  }
}
