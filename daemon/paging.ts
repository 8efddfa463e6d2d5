/* Pages of a list that can grow without bound (processes, an exit ledger,
 * events): at most `limit` items after a cursor, in a fixed order, with
 * the total that match and the cursor of the next page. A cursor is the
 * position of the last item given, an increasing number along the list,
 * so a page that follows is right even if items were added meanwhile;
 * clients treat it as opaque. */
import { TlsdError } from './errors.js';

export const DEFAULT_PAGE = 1000;
export const MAX_PAGE = 10000;

export interface PageRequest {
  limit?: number;
  /** The `next` of the page before. */
  after?: string;
}

export interface Page<T> {
  items: T[];
  /** Absent on the last page. */
  next?: string;
  /** Items that match, on every page. */
  total: number;
}

function cursorPosition(after: string | undefined): number {
  if (after === undefined) return 0;
  if (!/^\d{1,15}$/.test(after)) throw new TlsdError('INVALID_ARGUMENT', `"${after}" is not a cursor this list gave`);
  return Number(after);
}

/** `items` are in increasing `position`; `keep` filters them. Unfiltered,
 * a page is found by bisection: paging through a list costs what its
 * pages hold, not what the list holds times the pages. */
export function pageOf<T>(items: readonly T[], position: (item: T) => number, request: PageRequest, keep?: (item: T) => boolean): Page<T> {
  const limit = request.limit ?? DEFAULT_PAGE;
  const after = cursorPosition(request.after);
  if (!keep) {
    let lo = 0;
    for (let hi = items.length; lo < hi;) {
      const mid = (lo + hi) >>> 1;
      if (position(items[mid]!) <= after) lo = mid + 1;
      else hi = mid;
    }
    const page = items.slice(lo, lo + limit);
    const last = page.at(-1);
    return { items: page, total: items.length, ...(lo + limit < items.length && last !== undefined ? { next: String(position(last)) } : {}) };
  }
  const page: T[] = [];
  let total = 0;
  let more = false;
  for (const item of items) {
    if (!keep(item)) continue;
    total++;
    if (position(item) <= after) continue;
    if (page.length < limit) page.push(item);
    else more = true;
  }
  const last = page.at(-1);
  return { items: page, total, ...(more && last !== undefined ? { next: String(position(last)) } : {}) };
}
