/* The tracer's operation hand-off and undo journal on a real tracee
 * (test/fixtures/tracer/journal-test.c says what it checks): what an
 * operation changes in a process is undone before it is let go. */
import { execFile } from 'node:child_process';
import test from 'ava';
import { fixturePath } from './helpers/fixture.js';

test('an operation takes its own SIGTRAP, and abandoning it undoes its memory and register changes', async (t) => {
  const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(fixturePath('journal-test'), (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
  t.is(code, 0, out);
  t.is(out.trim(), 'ok');
});
