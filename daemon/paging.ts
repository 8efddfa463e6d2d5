/* Pages of a list that can grow without bound (processes, an exit ledger,
 * events): at most `limit` items after a cursor, in a fixed order, with
 * the total that match and the cursor of the next page. A cursor is the
 * position of the last item given, an increasing number along the list,
 * so a page that follows is right even if items were added meanwhile;
 * clients treat it as opaque. The lists are read from the records
 * (records/records.ts). */
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

export const pageLimit = (request: PageRequest): number => request.limit ?? DEFAULT_PAGE;

export function cursorPosition(after: string | undefined): number {
  if (after === undefined) return 0;
  if (!/^\d{1,15}$/.test(after)) throw new TlsdError('INVALID_ARGUMENT', `"${after}" is not a cursor this list gave`);
  return Number(after);
}
