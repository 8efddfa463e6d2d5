/* The ELF reader takes untrusted files: truncated or bit-flipped copies of
 * real binaries must give an image or an ElfFormatError, nothing else. */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ElfFormatError, parseElf } from '../daemon/tls/elf.js';
import { linkMapFieldsByScan, linkMapFieldsFromDescriptors } from '../daemon/tls/glibc.js';
import { errnoOffsetFromCode } from '../daemon/tls/musl.js';
import { dynamicObjects, executable } from '../daemon/tls/objects.js';
import { asPid } from '../daemon/types.js';
import { Fixture, fixturePath } from './helpers/fixture.js';

const samples = [
  fixturePath('glibc-dynamic/tls'), fixturePath('glibc-dynamic/libtlsneeded.so'), fixturePath('musl-static/tls'),
  '/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-musl/libc.so',
];

/** xorshift32: the same "random" damage on every run, so a failure repeats. */
function prng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function parsesOrRefuses(buf: Buffer): 'parsed' | 'refused' {
  try {
    parseElf(buf);
    return 'parsed';
  } catch (e) {
    if (e instanceof ElfFormatError) return 'refused';
    throw e;
  }
}

for (const file of samples) {
  test(`ELF reader on damaged copies of ${file}`, (t) => {
    const original = readFileSync(file);
    const image = parseElf(original);
    t.true(image.segments.length > 0);
    const random = prng(0x7153 + original.length);
    const outcomes = { parsed: 0, refused: 0 };
    // Truncated: at every header boundary and at random points.
    for (const length of [0, 1, 4, 16, 63, 64, 100, 200, 1000, ...Array.from({ length: 60 }, () => Math.floor(random() * original.length))]) {
      outcomes[parsesOrRefuses(original.subarray(0, length))]++;
    }
    // Bit-flipped: mostly in the ELF and program headers and in the section
    // header table, where a flip changes the structure.
    const shoff = Number(original.readBigUInt64LE(40));
    const regions = [[0, 4096], [shoff, original.length - shoff], [0, original.length]] as const;
    for (let n = 0; n < 300; n++) {
      const copy = Buffer.from(original);
      for (let k = 0; k < 1 + Math.floor(random() * 8); k++) {
        const [from, size] = regions[Math.floor(random() * regions.length)]!;
        const at = Math.min(copy.length - 1, from + Math.floor(random() * size));
        copy[at]! ^= 1 << Math.floor(random() * 8);
      }
      outcomes[parsesOrRefuses(copy)]++;
    }
    t.true(outcomes.refused > 0, 'some copies are refused');
    t.log(outcomes);
  });
}

test('musl errno: the offset comes from the code of __errno_location', (t) => {
  const code = (hex: string) => Buffer.from(hex.replace(/ /g, ''), 'hex');
  t.is(errnoOffsetFromCode(code('64488b042500000000 4883c034 c3')), 0x34, 'musl 1.2.3 on x86-64');
  t.is(errnoOffsetFromCode(code('f30f1efa 64488b042500000000 4805 00010000 c3')), 0x100, 'with endbr64 and a 32-bit immediate');
  t.is(errnoOffsetFromCode(code('488b0579b71a00 6448030425 00000000 c3')), undefined, 'glibc\'s code is not taken for musl\'s');
  t.is(errnoOffsetFromCode(code('64488b042500000000 4883c034 90')), undefined, 'no ret: not the expected shape');
});

test('glibc link_map fields: the scan fallback finds what the descriptors say', async (t) => {
  const fixture = await Fixture.start(t, 'glibc-dynamic/tls', ['1']);
  const pid = asPid(fixture.pid);
  // Reading another process's memory needs ptrace permission only: root,
  // or a parent of the process; the test runs as both.
  const { objects } = dynamicObjects(pid, executable(pid, fixturePath('glibc-dynamic/tls')));
  const described = linkMapFieldsFromDescriptors(objects);
  t.truthy(described, 'glibc 2.34+ has descriptors in libc.so.6');
  const withTls = objects.filter((o) => o.elf.tls);
  t.true(withTls.length >= 3, 'the program, libtlsneeded.so and libc');
  for (const o of withTls) t.deepEqual(linkMapFieldsByScan(pid, o), described, o.path);
});
