import type { Problem } from './errors.js'

/**
 * Reads the value named `name` in `values` (an environment variable, or a command's option) as a whole number from
 * `min` to `max` (inclusive): `fallback` when it is unset or empty (empty is unset, for every RATEFLOW_* knob). Digits
 * only, spaces around them allowed: `1e3`, `0x10` and `5s` are not taken for numbers. A bad value adds a problem naming
 * the variable, its bounds (in `unit` when given) and the text, to `problems`, and gives `fallback`: the caller throws
 * one error naming every bad variable.
 */
export function namedInteger(
  values: Readonly<Record<string, string | undefined>>,
  name: string,
  bounds: { min: number; max: number; unit?: string },
  fallback: number,
  problems: Problem[],
): number {
  const text = values[name]
  if (text === undefined || text === '') return fallback
  const n = /^\s*[0-9]+\s*$/.test(text) ? Number(text) : NaN
  if (Number.isSafeInteger(n) && n >= bounds.min && n <= bounds.max) return n
  const of = bounds.unit ? ` of ${bounds.unit}` : ''
  problems.push({ path: name, message: `must be a whole number${of} from ${bounds.min} to ${bounds.max}, got ${JSON.stringify(text)}` })
  return fallback
}
