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

/** Columns separated by two spaces, written as rows come: the widths are
 * those of the header and the first rows given, and a later, longer cell
 * pushes its line along rather than holding every row back. On a
 * terminal the last column is cut to the width (it is the long one: a
 * command line, a value). */
export class TableWriter {
  private widths?: number[];

  constructor(private readonly out: Output, private readonly headers: string[]) {}

  add(rows: string[][]): void {
    if (!this.widths) {
      this.widths = this.headers.map((h) => h.length);
      for (const r of rows) r.forEach((c, i) => { if (c.length > (this.widths![i] ?? 0)) this.widths![i] = c.length; });
      this.out.write(styled(this.out, this.fit(this.headers)) + '\n');
    }
    for (const r of rows) this.out.write(this.fit(r) + '\n');
  }

  /** Ends the table: the header alone, if no row came. */
  end(): void {
    if (!this.widths) this.add([]);
  }

  private fit(cells: string[]): string {
    const line = cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(this.widths![i]!))).join('  ');
    const max = this.out.isTTY && this.out.columns ? this.out.columns : Infinity;
    return line.length > max ? line.slice(0, Math.max(0, max - 1)) + '…' : line;
  }
}

export function printTable(out: Output, headers: string[], rows: string[][]): void {
  new TableWriter(out, headers).add(rows);
}

/** `{ "<name>": [ ... ] }` as JSON.stringify(value, null, 2) writes it,
 * an item at a time. */
export class JsonListWriter {
  private count = 0;

  constructor(private readonly out: Output, name: string) {
    out.write(`{\n  ${JSON.stringify(name)}: [`);
  }

  add(items: unknown[]): void {
    for (const item of items) {
      const text = JSON.stringify(item, null, 2).replace(/^/gm, '    ');
      this.out.write(`${this.count++ ? ',' : ''}\n${text}`);
    }
  }

  end(): void {
    this.out.write(this.count ? '\n  ]\n}\n' : ']\n}\n');
  }
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
  const width = flat.reduce((w, [k]) => Math.max(w, k.length), 0);
  for (const [k, v] of flat) out.write(`${styled(out, k.padEnd(width))}  ${v}\n`);
}

/** `2026-11-22T05:17:38.123Z` -> `2026-11-22 05:17:38` (UTC). */
export function shortTime(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').slice(0, 19) : '';
}

/** A C string as gdb prints one: quoted, with what is not printable
 * escaped (\n, \t, \033, ...). */
export function cString(text: string): string {
  const named: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r', '"': '\\"', '\\': '\\\\' };
  return `"${[...text].map((c) => named[c] ?? (c < ' ' || c === '\x7f' ? `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}` : c)).join('')}"`;
}
