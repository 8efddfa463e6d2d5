/* Runs the built tlsctl against a test daemon's socket. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../daemon/paths.js';

export const tlsctlPath = path.join(packageRoot, 'dist', 'clients', 'tlsctl.js');

export interface TlsctlRun { code: number; stdout: string; stderr: string }

export function tlsctl(socket: string, ...args: string[]): Promise<TlsctlRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [tlsctlPath, '--socket', socket, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
