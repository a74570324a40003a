import { committedEventIds, readCommittedKeys } from '../pipeline/rater.js'
import { COMMITTED_BATCHES, type CommittedLookup, type Store } from '../pipeline/store.js'
import { median, ratio, saveResult, withTempRuntime } from './results.js'

/** One read timed both ways on the same store, rounds alternating. */
export interface HistoryRead {
  read: string
  /** How Rateflow reads it, ms per round. */
  rateflow_ms: number[]
  /** The same answer with each batch's commit read from `flushes` (ARRAY JOIN … IN), as before committed_batches. */
  scan_flushes_ms: number[]
  /** The same answer filtered on every batch ever committed (`batch_id IN (COMMITTED_BATCHES)`). */
  filter_all_ms: number[]
  /** median(rateflow) / median(scan_flushes): below 1 is cheaper. */
  ratio_scan: number
  /** median(rateflow) / median(filter_all): below 1 is cheaper. */
  ratio: number
}

export interface HistoryResult {
  flushes: number
  usage_rows: number
  rounds: number
  reads: HistoryRead[]
}

/** Batches of 1,000 events, as the adapters publish them. */
const BATCH = 1000

/**
 * What the reads around dedupe cost against a long history: a store holding `flushes` committed flushes (one batch
 * each, as a `rateflow run` that flushes every second writes about 86,000 a day, with their committed_batches rows as
 * the rater writes them) and `usageRows` rows of one source in those batches. Times each read three ways: as Rateflow
 * reads it (which batches are committed: a lookup in committed_batches), the same reads with each batch's commit read
 * from `flushes` instead (ARRAY JOIN … IN, passed to them as their lookup), and filtered on every batch ever committed.
 * The last two grow with the number of flushes. The reads:
 * - a late-event check: which of 1,000 of the source's ids are committed (`committedEventIds`);
 * - meeting a new source: its keys inside the horizon (none);
 * - a known source's keys inside the horizon, as a start reads them (all `usageRows`, pages of 100,000).
 * The three ways must give the same answer, or the benchmark throws. Embedded store; synthetic rows written by
 * INSERT … SELECT, so building the history takes seconds, not a run of the pipeline.
 */
export async function benchHistory(flushes = 1_000_000, usageRows = 1_000_000, rounds = 3): Promise<HistoryResult> {
  if (usageRows > flushes * BATCH) throw new Error(`bench history: ${usageRows} usage rows need at least ${Math.ceil(usageRows / BATCH)} flushes`)
  return withTempRuntime(async (rt) => {
    const store = await rt.store()
    await store.command(`INSERT INTO committed_batches SELECT concat('b-', toString(number)), concat('f-', toString(number)) FROM numbers(${flushes})`)
    await store.command(
      `INSERT INTO flushes SELECT concat('f-', toString(number)), now64(3), [concat('b-', toString(number))], ${BATCH}, 0, 0, 0, 0 FROM numbers(${flushes})`,
    )
    await store.command(
      `INSERT INTO usage_events (source, event_id, event_time, device_id, account_id, subscription_id, metric, quantity, dimensions, received_at, batch_id)
       SELECT 'csv:history', concat('e-', toString(number)), now64(3) - toIntervalSecond(number % 86400), 'fw-1', '', '', 'api_calls', 1, map(), now64(3),
              concat('b-', toString(intDiv(number, ${BATCH}))) FROM numbers(${usageRows})`,
    )
    // 1,000 ids spread over the source's rows, and a few the store does not have.
    const ids = Array.from({ length: BATCH }, (_, i) => `e-${Math.floor((i * usageRows) / BATCH) + (i % 7)}`).concat(['e-none-1', 'e-none-2'])
    const since = Date.now() - 7 * 86_400_000
    const sorted = (rows: Array<{ event_id: string }>) =>
      rows
        .map((r) => r.event_id)
        .sort()
        .join(',')
    // The rater's two reads, with each batch's commit looked up in committed_batches (as it reads) or in `flushes`.
    const lateCheck = async (committed?: CommittedLookup) => [...(await committedEventIds(store, 'csv:history', ids, committed))].sort().join(',')
    const keysOf = async (source: string, page: number, committed?: CommittedLookup) => {
      const keys: string[] = []
      await readCommittedKeys(store, page, (_s, id) => keys.push(id), source, since, committed)
      return keys.sort().join(',')
    }
    const ways: Array<{ read: string; rateflow: () => Promise<string>; scanFlushes: () => Promise<string>; filterAll: () => Promise<string> }> = [
      {
        read: 'late check, 1,000 ids',
        rateflow: () => lateCheck(),
        scanFlushes: () => lateCheck(committedInFlushes),
        filterAll: async () =>
          sorted(
            await store.rows<{ event_id: string }>(
              `SELECT DISTINCT event_id FROM usage_events WHERE source = {source:String} AND event_id IN {ids:Array(String)} AND batch_id IN (${COMMITTED_BATCHES})`,
              { source: 'csv:history', ids },
            ),
          ),
      },
      {
        read: 'a new source met',
        rateflow: () => keysOf('csv:new', 500_000),
        scanFlushes: () => keysOf('csv:new', 500_000, committedInFlushes),
        filterAll: async () => sorted(await keysFilteredOnEveryCommit(store, 'csv:new', since)),
      },
      {
        read: "a known source's keys",
        rateflow: () => keysOf('csv:history', 100_000),
        scanFlushes: () => keysOf('csv:history', 100_000, committedInFlushes),
        filterAll: async () => sorted(await keysFilteredOnEveryCommit(store, 'csv:history', since)),
      },
    ]
    const reads: HistoryRead[] = []
    for (const w of ways) {
      const rateflowMs: number[] = []
      const scanMs: number[] = []
      const filterMs: number[] = []
      for (let round = 0; round < rounds; round++) {
        let t = performance.now()
        const a = await w.rateflow()
        rateflowMs.push(Math.round(performance.now() - t))
        t = performance.now()
        const b = await w.scanFlushes()
        scanMs.push(Math.round(performance.now() - t))
        t = performance.now()
        const c = await w.filterAll()
        filterMs.push(Math.round(performance.now() - t))
        if (a !== b || a !== c) throw new Error(`bench history: ${w.read}: the ways disagree (${a.slice(0, 80)} / ${b.slice(0, 80)} / ${c.slice(0, 80)})`)
      }
      const m = Math.max(1, median(rateflowMs))
      reads.push({
        read: w.read,
        rateflow_ms: rateflowMs,
        scan_flushes_ms: scanMs,
        filter_all_ms: filterMs,
        ratio_scan: ratio(m, Math.max(1, median(scanMs))),
        ratio: ratio(m, Math.max(1, median(filterMs))),
      })
    }
    return { flushes, usage_rows: usageRows, rounds, reads }
  })
}

/**
 * Which of `batchIds` a `flushes` row names, read from `flushes` (ARRAY JOIN … IN, probing a set of the wanted ones):
 * how committedBatches answered before committed_batches. Passed to the rater's reads in place of the lookup.
 */
const committedInFlushes: CommittedLookup = async (store, batchIds) => {
  if (batchIds.length === 0) return new Set()
  const rows = await store.rows<{ b: string }>('SELECT DISTINCT b FROM flushes ARRAY JOIN batches AS b WHERE b IN {batches:Array(String)}', {
    batches: batchIds,
  })
  return new Set(rows.map((r) => r.b))
}

/** A source's keys inside the horizon, filtered on every committed batch (how the rater read them before). */
function keysFilteredOnEveryCommit(store: Store, source: string, since: number): Promise<Array<{ event_id: string }>> {
  return store.rows<{ event_id: string }>(
    `SELECT event_id FROM usage_events WHERE source = {source:String} AND event_time >= fromUnixTimestamp64Milli({since:Int64})
     AND batch_id IN (${COMMITTED_BATCHES}) ORDER BY event_id`,
    { source, since },
  )
}

/** `rateflow bench history` (BENCH_FLUSHES, default 1,000,000; BENCH_EVENTS: usage rows, default 1,000,000; BENCH_ROUNDS, default 3). */
export async function run(out: (s: string) => void): Promise<number> {
  const flushes = Number(process.env.BENCH_FLUSHES ?? 1_000_000)
  const events = Number(process.env.BENCH_EVENTS ?? 1_000_000)
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
  out(`benchmark history: reads around dedupe against ${flushes} committed flushes and ${events} usage rows (${rounds} rounds, alternating)`)
  const r = await benchHistory(flushes, events, rounds)
  for (const x of r.reads) {
    out(
      `  ${x.read.padEnd(24)} rateflow ${String(median(x.rateflow_ms)).padStart(6)} ms (${x.rateflow_ms.join(', ')}); ` +
        `commits read from flushes ${String(median(x.scan_flushes_ms)).padStart(6)} ms (${x.scan_flushes_ms.join(', ')}), ratio ${x.ratio_scan}; ` +
        `filtered on every commit ${String(median(x.filter_all_ms)).padStart(6)} ms (${x.filter_all_ms.join(', ')}), ratio ${x.ratio}`,
    )
  }
  out(`  saved ${saveResult('history', r)}`)
  return 0
}
