/* Query strings -> the daemon's filters and page requests. A time that is
 * not one is a 400, like any other bad query field. */
import { TlsdError } from '../daemon/errors.js';
import type { PageRequest } from '../daemon/paging.js';
import type { EndingFilter } from '../daemon/records/records.js';

export function pageRequest(q: { limit?: number; after?: string }): PageRequest {
  return { ...(q.limit !== undefined ? { limit: q.limit } : {}), ...(q.after !== undefined ? { after: q.after } : {}) };
}

export function endingFilter(q: { exitCode?: number; signal?: number; since?: string }): EndingFilter {
  let since: Date | undefined;
  if (q.since !== undefined) {
    since = new Date(q.since);
    if (Number.isNaN(since.getTime())) throw new TlsdError('INVALID_ARGUMENT', `since: "${q.since}" is not an ISO-8601 time`);
  }
  return {
    ...(q.exitCode !== undefined ? { exitCode: q.exitCode } : {}),
    ...(q.signal !== undefined ? { signal: q.signal } : {}),
    ...(since ? { since } : {}),
  };
}
