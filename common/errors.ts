/**
 * Error codes every Rateflow component uses. A code is stable; messages may improve.
 * Exit-code mapping lives with the CLI: BAD_INPUT / BAD_CONFIG / BAD_USAGE → 2, the rest → 1.
 */
export const ErrorCode = {
  BadInput: 'BAD_INPUT',
  BadConfig: 'BAD_CONFIG',
  BadUsage: 'BAD_USAGE',
  NotFound: 'NOT_FOUND',
  ServiceUnavailable: 'SERVICE_UNAVAILABLE',
  StoreFailure: 'STORE_FAILURE',
  Internal: 'INTERNAL',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/** One problem in an input document, located by a JSON path such as `$.plans[0].charges[2].tiers[1].up_to`. */
export interface Problem {
  readonly path: string
  readonly message: string
}

/** Base class: every error Rateflow throws on purpose carries a `code`, and a `cause` when it wraps one. */
export class RateflowError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RateflowError'
    this.code = code
  }
}

/**
 * Another Rateflow process holds what this one needs to itself: a data directory (its lock) or the USAGE stream
 * (the rater lease). Bad usage (exit 2); the message names the holder. Commands that can leave the work to the
 * holder (`catalog apply` / `accounts apply` leave the release to a running rater) catch this class.
 */
export class HeldByAnotherError extends RateflowError {
  constructor(message: string) {
    super(ErrorCode.BadUsage, message)
    this.name = 'HeldByAnotherError'
  }
}

/** A document (catalog, accounts, config, CSV header) failed validation; `problems` lists every one found. */
export class ValidationError extends RateflowError {
  readonly problems: readonly Problem[]
  /** What the problems are of (a file, `catalog`, `accounts`): the head of the message. */
  readonly what: string
  constructor(what: string, problems: readonly Problem[]) {
    super(
      ErrorCode.BadInput,
      `${what}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
        problems.map((p) => `  ${p.path}: ${p.message}`).join('\n'),
    )
    this.name = 'ValidationError'
    this.what = what
    this.problems = problems
  }
}

/**
 * True for the error of a failed system call (Node's errors with a `code` and a `syscall`, such as `EROFS: read-only
 * file system, open '…'`): its message says what and where, from the machine, not from a defect.
 */
export function isSystemCallError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string'
}

/** True when the error means "the user gave bad input or usage" (exit code 2). */
export function isUserError(err: unknown): boolean {
  return (
    err instanceof RateflowError &&
    (err.code === ErrorCode.BadInput || err.code === ErrorCode.BadConfig || err.code === ErrorCode.BadUsage)
  )
}
