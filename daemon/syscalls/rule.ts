/* A syscall rule as the API takes it, checked and made into what the
 * tracer matches (native/tracer/syscalls.h), with strace's semantics and
 * strace's words for what is wrong (docs/syscalls.md). Also strace's
 * `-e inject=` and `-e trace=` strings, which tlsctl takes. */
import os from 'node:os';
import { TlsdError } from '../errors.js';
import { pathArg, syscallClasses, syscallNames } from './table.js';

/** What applies a rule: the tracer, at ptrace stops; or the shim's engine,
 * in the process (native/shim/engine.c). */
export type Engine = 'shim' | 'ptrace';

/** What a user asks for (POST .../syscalls/rules, spawn's `syscalls`). */
export interface RuleInput {
  /** strace's set, element by element: names, numbers, %classes, /regex,
   * all, none; `!X` takes X out (first: out of every call). */
  syscalls: string[];
  tids?: number[];
  path?: string;
  error?: string | number;
  retval?: number;
  signal?: string | number;
  delayEnterUs?: number;
  delayExitUs?: number;
  when?: string;
  trace?: boolean;
  /** Default: the shim's when the process has its engine and the rule
   * fits it, else the tracer's. */
  engine?: Engine;
}

/** What the tracer's RULES command carries for one rule. */
export interface CompiledRule {
  id: number;
  /** 64 bytes: bit nr set for each call number selected. */
  set: Buffer;
  tids: number[];
  path: string;
  /** 512 bytes (1 + the path argument's index per call number) or empty. */
  pathArgs: Buffer;
  fault: 0 | 1 | 2;
  value: bigint;
  signal: number;
  delayEnterUs: number;
  delayExitUs: number;
  first: number;
  last: number;
  step: number;
  trace: boolean;
  /** The shim's engine applies it once the tracer hands it over. */
  shim?: boolean;
}

export const MAX_NR = 512;
/** What the shim's engine holds (native/shim/engine.h). */
export const SHIM_MAX_RULES = 256;
const SHIM_MAX_TIDS = 16;
const SHIM_PATH_MAX = 255;
const RT_SIGRETURN = 15;

/** Every call the shim's engine can trap: all but rt_sigreturn. */
export const anyTrap = (): Buffer => {
  const b = Buffer.alloc(MAX_NR / 8, 0xff);
  b[RT_SIGRETURN >> 3]! &= ~(1 << (RT_SIGRETURN & 7));
  return b;
};

/** Why the shim's engine, trapping `trap`, cannot apply the rule; undefined when it can. */
export function shimCapable(c: CompiledRule, trap: Buffer): string | undefined {
  if (c.tids.length > SHIM_MAX_TIDS) return `a rule on more than ${SHIM_MAX_TIDS} threads is the tracer's`;
  if (Buffer.byteLength(c.path) > SHIM_PATH_MAX) return `a path of more than ${SHIM_PATH_MAX} bytes is the tracer's`;
  const outside = [];
  for (let nr = 0; nr < MAX_NR; nr++) if (c.set[nr >> 3]! & (1 << (nr & 7)) && !(trap[nr >> 3]! & (1 << (nr & 7)))) outside.push(syscallName(nr));
  if (outside.length) return `its filter does not trap ${outside.slice(0, 5).join(', ')}${outside.length > 5 ? ', …' : ''} (the calls it traps are fixed when its engine starts)`;
  return undefined;
}
const numberOf = new Map([...syscallNames].map(([nr, name]) => [name, nr]));
const errnoNames = os.constants.errno as Record<string, number>;
const errnoByNumber = new Map(Object.entries(errnoNames).map(([name, n]) => [n, name]));
const signalNames = os.constants.signals as Record<string, number>;
/** The largest signal number (SIGRTMAX on Linux). */
const SIGRTMAX = 64;

export const syscallName = (nr: number): string => syscallNames.get(nr) ?? `syscall_${nr}`;
export const errnoName = (n: number): string | undefined => errnoByNumber.get(n);

const invalid = (message: string): TlsdError => new TlsdError('INVALID_ARGUMENT', message);

function members(element: string): number[] {
  if (element === 'all') return [...syscallNames.keys()];
  if (element === 'none') return [];
  if (element.startsWith('%')) {
    const list = syscallClasses[element.slice(1)];
    if (!list) throw invalid(`invalid system call '${element}'`);
    return list.map((name) => numberOf.get(name)!);
  }
  if (element.startsWith('/')) {
    let re: RegExp;
    try { re = new RegExp(element.slice(1)); } catch { throw invalid(`invalid system call '${element}': not a regular expression`); }
    const found = [...syscallNames].filter(([, name]) => re.test(name)).map(([nr]) => nr);
    if (!found.length) throw invalid(`invalid system call '${element}': no call matches`);
    return found;
  }
  if (/^\d+$/.test(element)) {
    const nr = Number(element);
    if (nr >= MAX_NR) throw invalid(`invalid system call '${element}'`);
    return [nr];
  }
  const nr = numberOf.get(element);
  if (nr === undefined) throw invalid(`invalid system call '${element}'`);
  return [nr];
}

/** The call numbers a set selects, in order of number. */
export function syscallSet(elements: readonly string[]): number[] {
  if (!elements.length) throw invalid('invalid system call set: empty');
  const set = new Set<number>(elements[0]!.startsWith('!') ? syscallNames.keys() : []);
  for (const e of elements) {
    if (e.startsWith('!')) for (const nr of members(e.slice(1))) set.delete(nr);
    else for (const nr of members(e)) set.add(nr);
  }
  return [...set].sort((a, b) => a - b);
}

/** strace's when=first[..last][+[step]]. */
export function parseWhen(when: string): { first: number; last: number; step: number } {
  const m = /^(\d+)(?:\.\.(\d+))?(\+(\d+)?)?$/.exec(when);
  const bad = (why: string) => invalid(`invalid inject argument 'when=${when}': ${why}`);
  if (!m) throw bad('expected first[..last][+[step]]');
  const first = Number(m[1]);
  const last = m[2] === undefined ? 0 : Number(m[2]);
  const step = m[3] === undefined ? (m[2] === undefined ? 0 : 1) : m[4] === undefined ? 1 : Number(m[4]);
  if (first < 1 || first > 65535) throw bad('first must be in 1..65535');
  if (m[2] !== undefined && (last < 1 || last > 65534 || last < first)) throw bad('last must be in first..65534');
  if (m[4] !== undefined && (step < 1 || step > 65535)) throw bad('step must be in 1..65535');
  return { first, last, step };
}

export function errnoValue(error: string | number): number {
  const n = typeof error === 'number' ? error : /^\d+$/.test(error) ? Number(error) : errnoNames[error];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 4095) throw invalid(`invalid inject argument 'error=${error}': not an errno name nor 1..4095`);
  return n;
}

export function signalValue(signal: string | number): number {
  const named = typeof signal === 'string' && !/^\d+$/.test(signal);
  const n = named ? signalNames[signal.startsWith('SIG') ? signal : `SIG${signal}`] : Number(signal);
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > SIGRTMAX) throw invalid(`invalid inject argument 'signal=${signal}': not a signal name nor 1..${SIGRTMAX}`);
  return n;
}

/** Checks a rule; the tracer's form of it. `tidOk` says whether a tid is
 * a thread of the process. */
export function compileRule(id: number, r: RuleInput, tidOk: (tid: number) => boolean): CompiledRule {
  const nrs = syscallSet(r.syscalls);
  if (r.error !== undefined && r.retval !== undefined) throw invalid('error and retval exclude each other (strace: only one of them per expression)');
  const tids = r.tids ?? [];
  for (const tid of tids) if (!tidOk(tid)) throw invalid(`thread ${tid} is not a thread of this process`);
  const set = Buffer.alloc(MAX_NR / 8);
  for (const nr of nrs) set[nr >> 3]! |= 1 << (nr & 7);
  const withPath = nrs.filter((nr) => pathArg.has(syscallName(nr)));
  if (r.path !== undefined && !withPath.length) throw invalid('path: no call in the set has a path argument');
  // The path argument of every call that has one: a path rule matches it,
  // and a traced call's record shows it.
  const pathArgs = Buffer.alloc(r.path !== undefined || r.trace ? MAX_NR : 0);
  if (pathArgs.length) for (const nr of withPath) pathArgs[nr] = pathArg.get(syscallName(nr))! + 1;
  const when = r.when === undefined ? { first: 0, last: 0, step: 0 } : parseWhen(r.when);
  return {
    id, set, tids, path: r.path ?? '', pathArgs,
    fault: r.error !== undefined ? 1 : r.retval !== undefined ? 2 : 0,
    value: BigInt(r.error !== undefined ? errnoValue(r.error) : r.retval ?? 0),
    signal: r.signal === undefined ? 0 : signalValue(r.signal),
    delayEnterUs: r.delayEnterUs ?? 0,
    delayExitUs: r.delayExitUs ?? 0,
    ...when,
    trace: r.trace ?? false,
  };
}

/* --- strace's strings, for tlsctl ------------------------------------- */

/** strace's -e trace=SET as set elements: `!a,b` is everything but a and b. */
export function parseTraceSet(set: string): string[] {
  const negated = set.startsWith('!');
  const elements = (negated ? set.slice(1) : set).split(',').filter(Boolean);
  if (!elements.length) throw invalid(`invalid system call '${set}'`);
  syscallSet(negated ? elements.map((e) => `!${e}`) : elements); // names checked here
  return negated ? elements.map((e) => `!${e}`) : elements;
}

/** strace's time: a number with an optional s, ms, us or ns (default us). */
function microseconds(text: string, option: string, spec: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|ms|us|ns)?$/.exec(text);
  if (!m) throw invalid(`invalid inject argument '${spec}': ${option} takes a time such as 500, 20ms or 1s`);
  const scale = { s: 1e6, ms: 1e3, us: 1, ns: 1e-3 }[m[2] ?? 'us']!;
  return Math.round(Number(m[1]) * scale);
}

/** strace's -e inject=SET:error=E|:retval=V[:signal=S][:delay_enter=T]
 * [:delay_exit=T][:when=EXPR] (and fault=, with ENOSYS by default). */
export function parseInjectSpec(spec: string, fault = false): RuleInput {
  const [set = '', ...options] = spec.split(':');
  const rule: RuleInput = { syscalls: parseTraceSet(set) };
  const bad = () => invalid(`invalid inject argument '${spec}'`);
  for (const option of options) {
    const eq = option.indexOf('=');
    if (eq < 0) throw bad();
    const key = option.slice(0, eq), value = option.slice(eq + 1);
    switch (key) {
      case 'error':
        if (rule.error !== undefined || rule.retval !== undefined) throw bad();
        errnoValue(value);
        rule.error = value;
        break;
      case 'retval':
        if (rule.error !== undefined || rule.retval !== undefined || !/^-?\d+$/.test(value)) throw bad();
        rule.retval = Number(value);
        break;
      case 'signal':
        if (rule.signal !== undefined) throw bad();
        signalValue(value);
        rule.signal = value;
        break;
      case 'delay_enter': rule.delayEnterUs = microseconds(value, key, spec); break;
      case 'delay_exit': rule.delayExitUs = microseconds(value, key, spec); break;
      case 'when': parseWhen(value); rule.when = value; break; // the last one wins, as in strace
      default: throw bad();
    }
  }
  if (fault && rule.error === undefined && rule.retval === undefined) rule.error = 'ENOSYS';
  const effects = [rule.error, rule.retval, rule.signal, rule.delayEnterUs, rule.delayExitUs].filter((v) => v !== undefined);
  if (!effects.length) throw invalid(`invalid inject argument '${spec}': one of error, retval, signal, delay_enter or delay_exit is needed`);
  return rule;
}
