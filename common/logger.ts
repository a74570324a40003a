import { pino, type Logger } from 'pino'

export type { Logger }

/**
 * The process logger. Logs go to stderr so that command output on stdout (JSON counts, query results)
 * stays machine-readable. Level from RATEFLOW_LOG (default `warn` for CLI commands, `info` for `run`).
 */
export function createLogger(name: string, level = process.env.RATEFLOW_LOG ?? 'warn'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2))
}
