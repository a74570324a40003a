import { pino, type Logger } from 'pino'
import { ErrorCode, RateflowError } from './errors.js'

export type { Logger }

/** The levels RATEFLOW_LOG takes. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** RATEFLOW_LOG's level (default `warn`; empty is unset, as for every RATEFLOW_* knob); another value is bad usage naming the variable (exit 2). */
export function logLevelFromEnv(level = process.env.RATEFLOW_LOG || 'warn'): string {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new RateflowError(ErrorCode.BadUsage, `RATEFLOW_LOG: ${JSON.stringify(level)} is not a log level (one of ${LOG_LEVELS.join(', ')})`)
  }
  return level
}

/**
 * The process logger. Logs go to stderr so that command output on stdout (JSON counts, query results)
 * stays machine-readable. Level: `level`, else RATEFLOW_LOG's (logLevelFromEnv).
 */
export function createLogger(name: string, level?: string): Logger {
  return pino({ name, level: logLevelFromEnv(level), base: { pid: process.pid } }, pino.destination(2))
}
