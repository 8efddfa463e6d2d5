/* A FIFO to drive a spawned fixture (its stdin is /dev/null). Opened
 * read-write so that opening never blocks; closing it at teardown is the
 * fixture's EOF. */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';

export function commandFifo(t: ExecutionContext, dir: string): { path: string; send: (line: string) => void } {
  const fifo = path.join(dir, `commands-${process.hrtime.bigint()}`);
  execFileSync('mkfifo', [fifo]);
  const fd = openSync(fifo, 'r+');
  t.teardown(() => closeSync(fd));
  return { path: fifo, send: (line) => writeSync(fd, line + '\n') };
}
