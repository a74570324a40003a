import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** Writes one run's figures to bench/out/<name>-<epoch ms>.json (git-ignored), beside the printed table. */
export function saveResult(name: string, result: unknown): string {
  mkdirSync('bench/out', { recursive: true })
  const file = join('bench/out', `${name}-${Date.now()}.json`)
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
  return file
}

/** Events per second, rounded to a whole number; `ms` is a duration in milliseconds (> 0). */
export function perSecond(count: number, ms: number): number {
  return Math.round((count * 1000) / Math.max(ms, 1e-6))
}

/** a / b to two decimals, for the ratio columns (b > 0). */
export function ratio(a: number, b: number): number {
  return Math.round((a / b) * 100) / 100
}
