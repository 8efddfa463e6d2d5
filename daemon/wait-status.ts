/* The int that waitpid(2) stores, and the exit status PTRACE_EVENT_EXIT
 * reports in the same format (<sys/wait.h> macros). */
export interface Ending {
  code?: number;
  signal?: number;
  coreDumped?: boolean;
}

export function decodeWaitStatus(status: number): Ending {
  const signal = status & 0x7f;
  if (signal === 0) return { code: (status >> 8) & 0xff };
  return { signal, coreDumped: (status & 0x80) !== 0 };
}

export const killedBySignal = (status: number): boolean => (status & 0x7f) !== 0;
