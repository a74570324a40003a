import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '../common/logger.js'
import { openRuntime, type Runtime } from '../pipeline/runtime.js'

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

/** The median of some measurements (the lower middle one for an even count): robust to one disturbed round. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.floor((s.length - 1) / 2)]!
}

/** a / b to two decimals, for the ratio columns (b > 0). */
export function ratio(a: number, b: number): number {
  return Math.round((a / b) * 100) / 100
}

/**
 * Runs `f` with a Rateflow runtime on a new temporary directory (data under `<dir>/data`; its services start on
 * first use, local ones unless `services` names others), then closes the runtime and removes the directory,
 * whatever `f` did.
 */
export async function withTempRuntime<T>(
  f: (rt: Runtime, dir: string) => Promise<T>,
  services: { readonly natsUrl?: string | undefined; readonly clickhouseUrl?: string | undefined } = {},
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-bench-'))
  const rt = openRuntime({ dataDir: join(dir, 'data'), log: createLogger('bench', process.env.RATEFLOW_LOG ?? 'error'), ...services })
  try {
    return await f(rt, dir)
  } finally {
    await rt.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
