/* A Unix socket's file, taken only from a daemon that is gone: two
 * daemons must never share one (a second one's listen would silently
 * replace the first one's file, and the first one would never hear from
 * that path again). */
import { lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';

/* sockaddr_un.sun_path (unix(7)): 108 bytes, the last one a NUL. */
const MAX_SOCKET_PATH = 107;

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** Makes `socketPath` free to listen on: a stale socket file (its
 * daemon died) is removed; a live one, or a file that is not a socket,
 * is an error that names it. */
export async function claimSocketPath(socketPath: string, what: string): Promise<void> {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new Error(`the ${what} path ${socketPath} is longer than a Unix socket's ${MAX_SOCKET_PATH} bytes`);
  }
  let existing;
  try { existing = lstatSync(socketPath); } catch { return; }
  if (!existing.isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
  if (await answers(socketPath)) throw new Error(`another daemon is listening on ${socketPath}`);
  unlinkSync(socketPath);
}
