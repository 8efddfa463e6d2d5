/* The lists a client pages through, with the filters a test farm needs:
 * which processes ended how, which threads died of what, what happened
 * since when. Each is in a fixed order (paging.ts). */
import type { EventBus, LifecycleEvent } from './event-bus.js';
import { pageOf, type Page, type PageRequest } from './paging.js';
import type { ExitRecord, ProcessRecord, Registry } from './registry.js';
import type { Ending } from './wait-status.js';
import type { ExitHow, Pid } from './types.js';

/** How a process or thread ended, to filter on. */
export interface EndingFilter {
  exitCode?: number;
  signal?: number;
  /** Ended (exits) or started (processes) at this time or later. */
  since?: Date;
}

export interface ProcessFilter extends EndingFilter {
  state?: ProcessRecord['state'];
  /** A substring of the executable's path. */
  exe?: string;
  /** A substring of the command line, its arguments joined by spaces. */
  argv?: string;
}

export interface ExitFilter extends EndingFilter {
  how?: ExitHow;
}

export interface EventFilter {
  pid?: Pid;
  /** Events with a greater id only. */
  sinceId?: number;
}

const endedAs = (e: Ending | undefined, f: EndingFilter): boolean =>
  (f.exitCode === undefined || e?.code === f.exitCode) && (f.signal === undefined || e?.signal === f.signal);

/** Undefined when the filter keeps everything: pageOf then bisects. */
const filtering = <T>(f: object, keep: (item: T) => boolean) => (Object.keys(f).length ? keep : undefined);

export function processPage(registry: Registry, f: ProcessFilter, page: PageRequest): Page<ProcessRecord> {
  return pageOf(registry.list(), (p) => p.serial, page, filtering(f, (p: ProcessRecord) =>
    (f.state === undefined || p.state === f.state) &&
    (f.exitCode === undefined && f.signal === undefined || endedAs(p.exit, f)) &&
    (f.since === undefined || p.startedAt >= f.since) &&
    (f.exe === undefined || p.exe.includes(f.exe)) &&
    (f.argv === undefined || p.argv.join(' ').includes(f.argv))));
}

export function exitPage(p: ProcessRecord, f: ExitFilter, page: PageRequest): Page<ExitRecord> {
  return pageOf(p.exits, (x) => x.seq, page, filtering(f, (x: ExitRecord) =>
    (f.how === undefined || x.how === f.how) && endedAs(x, f) && (f.since === undefined || x.exitedAt >= f.since)));
}

export function eventPage(bus: EventBus, f: EventFilter, page: PageRequest): Page<LifecycleEvent> {
  return pageOf(bus.since(f.sinceId), (e) => e.id, page, f.pid === undefined ? undefined : (e) => e.data.pid === f.pid);
}
