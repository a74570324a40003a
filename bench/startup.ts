import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ingestCsv, type IngestCounts } from '../cli/ingest.js'
import { DedupeIndex } from '../rating-core/dedupe-index.js'
import { eachPage, readCommittedKeys } from '../pipeline/rater.js'
import type { Store } from '../pipeline/store.js'
import { writeE2eScenario, E2E_SIZE } from './e2e.js'
import { median, ratio, saveResult, withTempRuntime } from './results.js'
import { sampleCsvLines } from './sample-data.js'

/** One way of starting, over its rounds. */
export interface StartupWay {
  way: string
  /** `ingest csv --wait` of `small_events` new events: call to return, ms (median of the rounds). */
  ingest_ms_median: number
  /** The rater's start inside it (recovery, dedupe index, running totals), ms (median). */
  start_ms_median: number
  start_ms: number[]
}

/** One way of reading the stored dedupe keys. */
export interface KeyReading {
  way: string
  keys: number
  /** Reading every key into a new dedupe index, ms (median of the rounds). */
  ms_median: number
  ms: number[]
}

export interface StartupResult {
  history_events: number
  small_events: number
  rounds: number
  starts: StartupWay[]
  /** Start from the latest checkpoint ÷ fold of all history (median start times); below 1 is faster. */
  start_ratio_checkpoint_to_full_fold: number
  keys: KeyReading[]
  /** TabSeparated ÷ JSONEachRow (median read times). */
  keys_ratio_tsv_to_json: number
}

/** The alternative to readCommittedKeys: the same pages, as JSONEachRow objects (how the rater read keys before). */
async function readKeysAsJson(store: Store, page: number, visit: (source: string, eventId: string, eventMs: number) => void): Promise<number> {
  let total = 0
  await eachPage<{ source: string; event_id: string; ms: string }>(
    store,
    page,
    ['source', 'event_id'],
    ['String', 'String'],
    (where, limit) =>
      `SELECT toString(source) AS source, event_id, toUnixTimestamp64Milli(event_time) AS ms FROM usage_events AS k WHERE ${where} ORDER BY k.source, k.event_id ${limit}`,
    (rows) => {
      for (const r of rows) visit(r.source, r.event_id, Number(r.ms))
      total += rows.length
    },
  )
  return total
}

/**
 * What a rater's start costs against a stored history, as `ingest csv --wait` pays it before it rates anything.
 * A history of `historyEvents` events (the e2e scenario) is rated first. Then, alternating for `rounds` rounds,
 * `ingest csv --wait` of 1,000 new events is timed two ways: from the latest checkpoint of the running totals (how
 * the rater starts), and with the checkpoints removed first, so it folds every stored rated row again (how it
 * started before checkpoints, and how it starts once on a store an older release wrote). Then the stored keys are
 * read into a dedupe index as the rater reads them (TabSeparated) and as JSONEachRow objects, alternating.
 */
export async function benchStartup(historyEvents = 1_000_000, rounds = 3): Promise<StartupResult> {
  return withTempRuntime(async (rt, dir) => {
    const csv = await writeE2eScenario(rt, dir, historyEvents)
    const store = await rt.store()
    const history = (await ingestCsv(rt, { files: [csv], source: 'csv:history', wait: true })) as IngestCounts
    if (history.rated !== historyEvents) throw new Error(`bench: expected ${historyEvents} rated, got ${JSON.stringify(history)}`)

    const small = 1_000
    const starts: Record<string, number[]> = { 'from the latest checkpoint': [], 'folding all history (no checkpoint)': [] }
    const ingests: Record<string, number[]> = { 'from the latest checkpoint': [], 'folding all history (no checkpoint)': [] }
    let n = 0
    for (let round = 0; round < rounds; round++) {
      for (const way of Object.keys(starts)) {
        if (way.startsWith('folding')) await store.command('TRUNCATE TABLE rating_checkpoints')
        const file = join(dir, `small-${++n}.csv`)
        writeFileSync(file, [...sampleCsvLines({ events: small, size: E2E_SIZE, seed: 100 + n })].join('\n') + '\n')
        const t = performance.now()
        let readingAt = t
        const c = (await ingestCsv(rt, { files: [file], source: `csv:small-${n}`, wait: true, onReading: () => (readingAt = performance.now()) })) as IngestCounts
        const end = performance.now()
        if (c.rated !== small) throw new Error(`bench: expected ${small} rated, got ${JSON.stringify(c)}`)
        starts[way]!.push(Math.round(readingAt - t))
        ingests[way]!.push(Math.round(end - t))
      }
    }

    const keyWays: Record<string, typeof readCommittedKeys> = {
      'TabSeparated text (the rater)': readCommittedKeys,
      'JSONEachRow objects': readKeysAsJson,
    }
    const keyMs: Record<string, number[]> = Object.fromEntries(Object.keys(keyWays).map((w) => [w, []]))
    let keys = 0
    for (let round = 0; round < rounds; round++) {
      for (const [way, read] of Object.entries(keyWays)) {
        const index = new DedupeIndex()
        const t = performance.now()
        keys = await read(store, 500_000, (source, id) => index.add(source, id))
        keyMs[way]!.push(Math.round(performance.now() - t))
        if (index.size !== keys) throw new Error(`bench: ${way} read ${keys} keys, the index holds ${index.size}`)
      }
    }

    const startList: StartupWay[] = Object.keys(starts).map((way) => ({
      way,
      ingest_ms_median: median(ingests[way]!),
      start_ms_median: median(starts[way]!),
      start_ms: starts[way]!,
    }))
    const keyList: KeyReading[] = Object.keys(keyWays).map((way) => ({ way, keys, ms_median: median(keyMs[way]!), ms: keyMs[way]! }))
    return {
      history_events: historyEvents,
      small_events: small,
      rounds,
      starts: startList,
      start_ratio_checkpoint_to_full_fold: ratio(startList[0]!.start_ms_median, startList[1]!.start_ms_median),
      keys: keyList,
      keys_ratio_tsv_to_json: ratio(keyList[0]!.ms_median, keyList[1]!.ms_median),
    }
  })
}

/** `rateflow bench startup` (BENCH_EVENTS: the history's events, default 1,000,000; BENCH_ROUNDS, default 3). */
export async function run(out: (s: string) => void): Promise<number> {
  const events = Number(process.env.BENCH_EVENTS ?? 1_000_000)
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
  out(`benchmark startup: a rater's start against a history of ${events} rated events (${rounds} rounds, alternating)`)
  const r = await benchStartup(events, rounds)
  for (const s of r.starts) {
    out(`  ${s.way.padEnd(40)} start ${String(s.start_ms_median).padStart(6)} ms (${s.start_ms.join(', ')}); ingest of ${r.small_events} events ${s.ingest_ms_median} ms`)
  }
  out(`  ratio start, checkpoint / full fold       ${r.start_ratio_checkpoint_to_full_fold}`)
  for (const k of r.keys) out(`  keys read, ${k.way.padEnd(30)} ${String(k.ms_median).padStart(6)} ms for ${k.keys} keys (${k.ms.join(', ')})`)
  out(`  ratio keys, TabSeparated / JSONEachRow    ${r.keys_ratio_tsv_to_json}`)
  out(`  saved ${saveResult('startup', r)}`)
  return 0
}
