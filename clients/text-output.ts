/* Human output of tlsctl: aligned tables and key/value lists that fit the
 * terminal. Bold headers only on a terminal that wants colour (NO_COLOR,
 * https://no-color.org, turns it off); plain text into pipes and files. */
import { styleText } from 'node:util';

export interface Output {
  write(text: string): void;
  isTTY?: boolean;
  columns?: number;
}

function styled(out: Output, text: string): string {
  return out.isTTY && !process.env.NO_COLOR ? styleText('bold', text) : text;
}

/** Columns separated by two spaces. On a terminal the last column is cut
 * to the width (it is the long one: a command line, a value). */
export function printTable(out: Output, headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fit = (cells: string[]) => {
    const line = cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
    const max = out.isTTY && out.columns ? out.columns : Infinity;
    return line.length > max ? line.slice(0, Math.max(0, max - 1)) + '…' : line;
  };
  out.write(styled(out, fit(headers)) + '\n');
  for (const r of rows) out.write(fit(r) + '\n');
}

/** `key  value` lines, keys aligned; nested objects as `a.b`. */
export function printFields(out: Output, fields: Record<string, unknown>): void {
  const flat: Array<[string, string]> = [];
  const walk = (prefix: string, value: unknown) => {
    if (value === undefined) return;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else {
      flat.push([prefix, Array.isArray(value) ? value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(' ') : String(value)]);
    }
  };
  walk('', fields);
  const width = Math.max(0, ...flat.map(([k]) => k.length));
  for (const [k, v] of flat) out.write(`${styled(out, k.padEnd(width))}  ${v}\n`);
}

/** `2026-11-22T05:17:38.123Z` -> `2026-11-22 05:17:38` (UTC). */
export function shortTime(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').slice(0, 19) : '';
}
