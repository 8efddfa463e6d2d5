/* The one error type of tlsd. Handlers throw it; api/errors.ts maps it to
 * HTTP in one place (docs/api.md "Errors"). */
export const errorStatus = {
  INVALID_ARGUMENT: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  ALREADY_TRACED: 409,
  STILL_RUNNING: 409,
  SHIM_LOADED: 409,
  PROCESS_STOPPED: 409,
  INJECTION_FAILED: 409,
  KILLS_WITH_DAEMON: 409,
  UNSUPPORTED_TARGET: 400,
  SECCOMP_FORBIDS: 403,
  GONE: 410,
  PAYLOAD_TOO_LARGE: 413,
  URI_TOO_LONG: 414,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof errorStatus;

export class TlsdError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }
  get status(): number { return errorStatus[this.code]; }
}
