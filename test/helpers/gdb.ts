/* gdb as the oracle (a tool someone else wrote sees the same thing): one
 * expression printed in every thread, by tid. gdb attaches for the time of
 * the command, so the process must not be supervised meanwhile. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** `thread apply all print EXPR`; `value` matches what follows "$N = ". */
export async function gdbPerThread(pid: number, print: string, value: RegExp): Promise<Map<number, string>> {
  const { stdout } = await run('gdb', ['-batch', '-nx', '-p', String(pid), '-ex', `thread apply all ${print}`], { maxBuffer: 1 << 24 });
  const values = new Map<number, string>();
  let lwp: number | undefined;
  for (const line of stdout.split('\n')) {
    // "(LWP N)"; "(process N \"name\")" where gdb has no thread library to
    // ask (musl).
    const thread = line.match(/\((?:LWP|process) (\d+)[ )]/);
    if (thread) lwp = Number(thread[1]);
    const printed = line.match(/^\$\d+ = (.*)$/)?.[1]?.match(value);
    if (printed && lwp !== undefined) values.set(lwp, printed[0]);
  }
  return values;
}
