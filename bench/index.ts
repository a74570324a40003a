/**
 * `rateflow bench NAME`: one file per scenario, each comparing Rateflow's path with an alternative measured
 * in the same run. A scenario module exports `run(out)`, prints its table and returns an exit code.
 */
export type BenchRun = (out: (s: string) => void) => Promise<number>

/** Scenario name → loader (loaded on demand: a scenario may start services the others do not need). */
export const BENCHMARKS: Readonly<Record<string, () => Promise<{ run: BenchRun }>>> = Object.freeze({
  e2e: () => import('./e2e.js'),
  rating: () => import('./rating.js'),
  mqtt: () => import('./mqtt.js'),
  syslog: () => import('./syslog.js'),
  csv: () => import('./csv.js'),
  'insert-formats': () => import('./insert-formats.js'),
  startup: () => import('./startup.js'),
  history: () => import('./history.js'),
})

/** Runs a scenario by name (default e2e); an unknown name prints the available ones and returns 2. */
export async function runBench(name: string | undefined, out: (s: string) => void): Promise<number> {
  const which = name ?? 'e2e'
  const load = BENCHMARKS[which]
  if (!load) {
    out(`unknown benchmark "${which}" (available: ${Object.keys(BENCHMARKS).join(', ')})`)
    return 2
  }
  return (await load()).run(out)
}

export { sampleAccounts, sampleCatalog, sampleCsvLines, writeSampleCsv } from './sample-data.js'
