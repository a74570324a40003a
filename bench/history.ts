import { committedEventIds, readCommittedKeys } from '../pipeline/rater.js'
import { COMMITTED_BATCHES, type Store } from '../pipeline/store.js'
import { median, ratio, saveResult, withTempRuntime } from './results.js'

/** One read timed both ways on the same store, rounds alternating. */
export interface HistoryRead {
  read: string
  /** How Rateflow reads it, ms per round. */
  rateflow_ms: number[]
  /** The alternative: the same answer filtered on every batch ever committed (`batch_id IN (COMMITTED_BATCHES)`). */
  filter_all_ms: number[]
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
 * each, as a `rateflow run` that flushes every second writes about 86,000 a day) and `usageRows` rows of one source in
 * those batches. Times, against the same answer filtered on every batch ever committed, whose cost grows with the
 * number of flushes:
 * - a late-event check: which of 1,000 of the source's ids are committed (`committedEventIds`);
 * - meeting a new source: its keys inside the horizon (none).
 * Each read's two ways must give the same answer, or the benchmark throws. Embedded store; synthetic rows written
 * by INSERT … SELECT, so building the history takes seconds, not a run of the pipeline.
 */
export async function benchHistory(flushes = 1_000_000, usageRows = 1_000_000, rounds = 3): Promise<HistoryResult> {
  if (usageRows > flushes * BATCH) throw new Error(`bench history: ${usageRows} usage rows need at least ${Math.ceil(usageRows / BATCH)} flushes`)
  return withTempRuntime(async (rt) => {
    const store = await rt.store()
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
    const ways: Array<{ read: string; rateflow: () => Promise<string>; filterAll: () => Promise<string> }> = [
      {
        read: 'late check, 1,000 ids',
        rateflow: async () => [...(await committedEventIds(store, 'csv:history', ids))].sort().join(','),
        filterAll: async () =>
          (
            await store.rows<{ event_id: string }>(
              `SELECT DISTINCT event_id FROM usage_events WHERE source = {source:String} AND event_id IN {ids:Array(String)} AND batch_id IN (${COMMITTED_BATCHES})`,
              { source: 'csv:history', ids },
            )
          )
            .map((r) => r.event_id)
            .sort()
            .join(','),
      },
      {
        read: 'a new source met',
        rateflow: async () => String(await readCommittedKeys(store, 500_000, () => undefined, 'csv:new', since)),
        filterAll: async () => String((await keysFilteredOnEveryCommit(store, 'csv:new', since)).length),
      },
    ]
    const reads: HistoryRead[] = []
    for (const w of ways) {
      const rateflowMs: number[] = []
      const filterMs: number[] = []
      for (let round = 0; round < rounds; round++) {
        let t = performance.now()
        const a = await w.rateflow()
        rateflowMs.push(Math.round(performance.now() - t))
        t = performance.now()
        const b = await w.filterAll()
        filterMs.push(Math.round(performance.now() - t))
        if (a !== b) throw new Error(`bench history: ${w.read}: the two ways disagree (${a.slice(0, 80)} / ${b.slice(0, 80)})`)
      }
      reads.push({ read: w.read, rateflow_ms: rateflowMs, filter_all_ms: filterMs, ratio: ratio(median(rateflowMs), Math.max(1, median(filterMs))) })
    }
    return { flushes, usage_rows: usageRows, rounds, reads }
  })
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
        `filtered on every commit ${String(median(x.filter_all_ms)).padStart(6)} ms (${x.filter_all_ms.join(', ')}); ratio ${x.ratio}`,
    )
  }
  out(`  saved ${saveResult('history', r)}`)
  return 0
}
