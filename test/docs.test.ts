/* The repository explains itself: every relative link in the README and
 * docs/ resolves (to a file, and to a heading when it names one), every
 * section of docs/ that the code cites exists, and nothing points outside
 * the repository. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { eventData, lifecycleEventTypes } from '../daemon/events.js';
import { packageRoot } from '../daemon/paths.js';

const tracked = execFileSync('git', ['ls-files'], { cwd: packageRoot, encoding: 'utf8' }).trim().split('\n');
const documents = tracked.filter((f) => f === 'README.md' || /^docs\/.*\.md$/.test(f));
const read = (f: string) => readFileSync(path.join(packageRoot, f), 'utf8');

/** A heading's anchor as GitHub makes it. */
const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');

function headings(file: string): string[] {
  return read(file).replace(/```[\s\S]*?```/g, '').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => l.replace(/^#+ /, ''));
}

test('every relative link in the README and docs/ resolves, anchors included', (t) => {
  t.true(documents.includes('README.md') && documents.some((d) => d.startsWith('docs/')));
  for (const doc of documents) {
    const text = read(doc).replace(/```[\s\S]*?```/g, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue; // http:, https:, mailto:
      const [file, anchor] = target!.split('#') as [string, string | undefined];
      const resolved = file ? path.normalize(path.join(path.dirname(doc), file)) : doc;
      t.true(existsSync(path.join(packageRoot, resolved)) && !resolved.startsWith('..'), `${doc}: ${target} does not resolve`);
      if (anchor && resolved.endsWith('.md')) t.true(headings(resolved).map(slug).includes(anchor), `${doc}: no heading #${anchor} in ${resolved}`);
    }
  }
});

test('every repository path the README and docs/ name exists', (t) => {
  const inRepository = (name: string) => tracked.some((f) => f === name || f.startsWith(`${name}/`));
  for (const doc of documents) {
    for (const [, name] of read(doc).matchAll(/`((?:native|daemon|api|clients|test|bench|bin|docs)\/[\w./-]*\w)\/?`/g)) {
      if (name!.includes('/build/')) continue; // made by the build, in no clone
      t.true(inRepository(name!), `${doc} names ${name}, which is not in the repository`);
    }
  }
});

test('every section of docs/ that the code cites exists', (t) => {
  const sources = tracked.filter((f) => /\.(ts|c|h)$/.test(f) || f.endsWith('Makefile'));
  let citations = 0;
  for (const file of sources) {
    // Comments wrap: join the lines of a comment before looking.
    const text = read(file).replace(/\n\s*(\*|\/\/|#)\s*/g, ' ');
    for (const [, doc, section] of text.matchAll(/(docs\/[a-z-]+\.md)\)?:? ?(?:"([^"]+)")?/g)) {
      citations++;
      t.true(existsSync(path.join(packageRoot, doc!)), `${file} cites ${doc}, which does not exist`);
      if (section) t.true(headings(doc!).includes(section), `${file} cites ${doc} "${section}", which has no such heading`);
    }
  }
  t.true(citations > 20, `${citations} citations found`);
});

test('nothing points outside the repository', (t) => {
  // The notes and issues the project was built from are not in it.
  // Spelled in parts, so that this file does not match itself.
  const outside = new RegExp(['\\.\\./sha', 'red|sha', 'red/docs|\\b(DESIGN|PTRACE|TLS-LAYOUT|INJECT|INTERPOSE|STYLE)\\.', 'md|\\(iss', 'ue \\d'].join(''));
  for (const file of tracked.filter((f) => /\.(ts|c|h|md|json)$/.test(f) || f.endsWith('Makefile') || f === '.ci/run')) {
    t.false(outside.test(read(file)), `${file} refers to a directory outside the repository`);
  }
});

test('docs/api.md lists every event type with the fields its schema has', (t) => {
  const section = read('docs/api.md').split('\n## Events\n')[1]!.split('\n## ')[0]!;
  const rows = new Map([...section.matchAll(/^\| `([a-z]+\.[a-z]+)` \|[^|]+\|\s*([^|]*?)\s*\|$/gm)].map((m) => [m[1]!, m[2]!]));
  t.deepEqual([...rows.keys()].sort(), [...lifecycleEventTypes].sort());
  for (const type of lifecycleEventTypes) {
    const fields = Object.keys(eventData[type].properties).filter((f) => f !== 'pid');
    const cell = rows.get(type) ?? '';
    // thread.exited says "the fields of an Exit": those are in the Exit schema.
    if (cell.includes('an `Exit`')) continue;
    const listed = [...cell.matchAll(/`(\w+)\??`/g)].map((m) => m[1]!);
    t.deepEqual(listed.sort(), fields.sort(), type);
  }
});
