import { namedInteger } from '../common/env.js'
import { ValidationError, type Problem } from '../common/errors.js'

/**
 * Bounds of one analyst's query (`rateflow query`, `/v1/query`). Without them `SELECT count() FROM numbers(1e11)` ran
 * for hours (and held `rateflow run`'s stop until it ended, before the stop cancelled it: Store.close), and
 * `SELECT number FROM numbers(3e7)` grew to 3.4 GB before failing on V8's string length. A billing analyst's heavy
 * reads (a year of rated_usage grouped by account) take seconds to a minute here, so the defaults leave them room.
 */
export interface AnalystLimits {
  /** max_execution_time, in seconds. */
  readonly timeoutS: number
  /** max_memory_usage of the query, in MiB. */
  readonly maxMemoryMb: number
  /** max_result_bytes, in MiB: of the result's columns in memory (the printed text is larger, ~2–4× for numbers as JSON). */
  readonly maxResultMb: number
}

export const DEFAULT_ANALYST_LIMITS: Readonly<AnalystLimits> = Object.freeze({ timeoutS: 300, maxMemoryMb: 4096, maxResultMb: 256 })

/** The environment variable of each limit, and its bounds (inclusive). */
export const ANALYST_LIMIT_VARS: Readonly<Record<keyof AnalystLimits, { name: string; min: number; max: number; unit: string }>> = Object.freeze({
  timeoutS: { name: 'RATEFLOW_QUERY_TIMEOUT_S', min: 1, max: 86_400, unit: 's' },
  maxMemoryMb: { name: 'RATEFLOW_QUERY_MAX_MEMORY_MB', min: 16, max: 1_048_576, unit: 'MiB' },
  maxResultMb: { name: 'RATEFLOW_QUERY_MAX_RESULT_MB', min: 1, max: 4096, unit: 'MiB' },
})

/**
 * Analysts' limits from the environment over the defaults (ANALYST_LIMIT_VARS: an integer within its bounds); throws
 * one ValidationError naming every bad variable. Read once when `query` or `run` starts: the analysts' chDB session
 * keeps the first query's limits, and readonly=1 refuses another value on it.
 */
export function analystLimitsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): AnalystLimits {
  const problems: Problem[] = []
  const out: Record<string, number> = {}
  for (const [key, v] of Object.entries(ANALYST_LIMIT_VARS) as Array<[keyof AnalystLimits, (typeof ANALYST_LIMIT_VARS)[keyof AnalystLimits]]>) {
    out[key] = namedInteger(env, v.name, v, DEFAULT_ANALYST_LIMITS[key], problems)
  }
  if (problems.length) throw new ValidationError('environment', problems)
  return out as unknown as AnalystLimits
}
