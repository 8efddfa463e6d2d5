/* Distinct ideas get distinct types even when they are all numbers, so
 * that a tid can never be passed where an address is expected. */

export type Pid = number & { readonly __brand: 'Pid' };
export type Tid = number & { readonly __brand: 'Tid' };
/** An address in a tracee's address space. */
export type Address = bigint & { readonly __brand: 'Address' };

export const asPid = (n: number): Pid => n as Pid;
export const asTid = (n: number): Tid => n as Tid;
export const asAddress = (n: bigint): Address => n as Address;

/** docs/api.md: addresses are lowercase hex strings. */
export function formatAddress(a: Address): string {
  return '0x' + a.toString(16);
}

/** Where a thread's FS base was read (Thread.fsBaseSource, docs/api.md). */
export const fsBaseSources = ['attach', 'clone', 'exec', 'stop', 'refresh'] as const;
export type FsBaseSource = (typeof fsBaseSources)[number];
/** A process's state (Process.state, docs/api.md): running, supervised
 * now; exited, detached, supervised until then; unsupervised, still
 * running but supervised only by an earlier run of the daemon; lost, an
 * earlier run supervised it until that run ended, and it ended unseen. */
export const processStates = ['running', 'exited', 'detached', 'unsupervised', 'lost'] as const;
export type ProcessState = (typeof processStates)[number];
export const processOrigins = ['attached', 'spawned', 'forked'] as const;
export type ProcessOrigin = (typeof processOrigins)[number];
/** How a thread ended (Exit.how, docs/api.md). */
export const exitHows = ['exit', 'exit_group', 'signal', 'exec', 'unknown'] as const;
export type ExitHow = (typeof exitHows)[number];
export const shimModes = ['thread-pointer', 'tid'] as const;
export type ShimMode = (typeof shimModes)[number];

/** The thread group leader's tid is the process id (clone(2)). */
export const leaderTid = (pid: Pid): Tid => pid as number as Tid;
export const isLeader = (tid: Tid, pid: Pid): boolean => (tid as number) === (pid as number);
