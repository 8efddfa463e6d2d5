/* Where the package's own files are, from the compiled module's place
 * (dist/daemon/paths.js -> the package root two levels up). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const tracerBinary = path.join(packageRoot, 'native', 'tracer', 'build', 'tlsd-tracer');
export const shimLibrary = path.join(packageRoot, 'native', 'shim', 'build', 'libtlsshim.so');
export const version: string = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version;
/** The daemon's entry point (bin/tlsd.ts), compiled. */
export const daemonEntry = path.join(packageRoot, 'dist', 'bin', 'tlsd.js');
