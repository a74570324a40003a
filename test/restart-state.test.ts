import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CSV_HEADER, deviceId, sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import type { Catalog } from '../catalog/types.js'
import { createLogger } from '../common/logger.js'
import type { Runtime } from '../pipeline/runtime.js'
import type { Store } from '../pipeline/store.js'
import { json, killStrayChildren, query, rateflow, tempDir, writeJson } from './helpers/cli.js'
// The built module, as the other tests that open a runtime in this process.
const { openRuntime } = (await import('../dist/pipeline/runtime.js' as string)) as { openRuntime: (o: { dataDir: string; log: ReturnType<typeof createLogger> }) => Runtime }

/**
 * What a rater rebuilds from the store when it starts: the dedupe index (every committed key) and the running
 * totals.
 *
 * Checkpoints of the running totals (pipeline/rater.ts, `rating_checkpoints`): a rater starts from the latest
 * committed one and folds only the rated rows committed after it. What must hold is that this changes no amount:
 * usage rated across restarts, with a crash between them, is priced exactly as one uninterrupted run prices it.
 *
 * The catalog makes every amount depend on the running total before it: egress is graduated over the period's
 * GB, and API calls are per_unit after 15,000 free calls a period. A start that lost or double-counted any
 * committed event would price the events after it differently.
 */

const EVENTS = 12_000
const size = { customers: 4, devicesPerAccount: 3 }
const work = tempDir()
const SOURCE = 'csv:usage'
const DUMP = `SELECT source, event_id, account_id, subscription_id, plan_id, charge_id, group_key, event_time,
  toString(quantity) AS quantity, toString(amount) AS amount, currency, catalog_version, period_start
  FROM rated_usage ORDER BY source, event_id, charge_id`
const CHECKPOINTS = `SELECT flush_id, count() AS totals, flush_id IN (SELECT flush_id FROM flushes) AS committed
  FROM rating_checkpoints GROUP BY flush_id`

function catalog(): Catalog {
  const c = sampleCatalog()
  const plan = c.plans[0]!
  plan.charges = plan.charges.map((ch) => {
    if (ch.id === 'egress') {
      return {
        id: 'egress',
        kind: 'usage',
        meter: 'egress_gb',
        model: 'graduated',
        tiers: [
          { up_to: '2', unit_price: '0.10', flat_fee: '1' },
          { up_to: '6', unit_price: '0.07' },
          { up_to: null, unit_price: '0.03' },
        ],
      }
    }
    if (ch.id === 'api') return { id: 'api', kind: 'usage', meter: 'api_calls', model: 'per_unit', unit_price: '0.0004', free_units: '15000' }
    return ch
  })
  return c
}

/** The file's rows split in two halves, each a CSV file with the header: the same events, same order. */
function writeFiles(): { all: string; first: string; second: string } {
  const [header, ...rows] = [...sampleCsvLines({ events: EVENTS, size, seed: 21 })]
  const file = (name: string, lines: string[]) => {
    const path = join(work.dir, name)
    writeFileSync(path, [header, ...lines].join('\n') + '\n')
    return path
  }
  return { all: file('all.csv', rows), first: file('first.csv', rows.slice(0, EVENTS / 2)), second: file('second.csv', rows.slice(EVENTS / 2)) }
}

async function prepare(data: string): Promise<void> {
  await json(['catalog', 'apply', writeJson(join(work.dir, 'catalog.json'), catalog()), '--data', data])
  await json(['accounts', 'apply', writeJson(join(work.dir, 'accounts.json'), sampleAccounts(size)), '--data', data])
}

/** The log lines (pino JSON on stderr) whose message is `msg`, parsed. */
function logLines<T>(stderr: string, msg: string): T[] {
  return stderr
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as T)
}

/** The fields of the rater's start-up log line ('rater state rebuilt from the store'). */
function startLog(stderr: string): { checkpoint: string | null; folded: number; totals: number } {
  const [line] = logLines<{ checkpoint: string | null; folded: number; totals: number }>(stderr, 'rater state rebuilt from the store')
  if (!line) throw new Error(`no start-up line in:\n${stderr}`)
  return line
}

/** A store that rated the first half of the file, then had `edit` done to it directly (as another release, say, left it). */
async function firstHalfThenEdit(data: string, edit: (store: Store) => Promise<unknown>): Promise<void> {
  await prepare(data)
  await json(['ingest', 'csv', files.first, '--source', SOURCE, '--wait', '--data', data])
  const rt = openRuntime({ dataDir: data, log: createLogger('test') })
  try {
    await edit(await rt.store())
  } finally {
    await rt.close()
  }
}

let files: ReturnType<typeof writeFiles>
let uninterrupted: unknown[]

beforeAll(async () => {
  files = writeFiles()
  const data = join(work.dir, 'uninterrupted')
  await prepare(data)
  const c = await json<{ rated: number }>(['ingest', 'csv', files.all, '--source', SOURCE, '--wait', '--data', data])
  expect(c.rated).toBe(EVENTS)
  uninterrupted = await query(data, DUMP)
  expect(uninterrupted.length).toBe(EVENTS)
}, 120_000)
afterEach(() => {
  killStrayChildren()
})
afterAll(() => work.cleanup())

describe('running totals restored from a checkpoint', () => {
  it('price the usage after a restart and a crash exactly as one uninterrupted run', async () => {
    const data = join(work.dir, 'restarted')
    await prepare(data)
    const log = { RATEFLOW_LOG: 'info' }

    // 1. The first half; stopping writes a checkpoint of the totals (one committed checkpoint).
    const first = await rateflow(['ingest', 'csv', files.first, '--source', SOURCE, '--wait', '--data', data], log)
    expect(first.code).toBe(0)
    expect(startLog(first.stderr)).toMatchObject({ checkpoint: null, folded: 0 })
    const afterFirst = await query<{ flush_id: string; committed: number }>(data, CHECKPOINTS)
    expect(afterFirst).toHaveLength(1)
    expect(afterFirst[0]!.committed).toBe(1)

    // 2. The second half, killed (kill -9) right after its first flush committed: rows committed after the
    //    checkpoint, and no checkpoint at stop.
    const killed = await rateflow(['ingest', 'csv', files.second, '--source', SOURCE, '--wait', '--data', data], {
      ...log,
      RATEFLOW_FLUSH_ROWS: '2000',
      RATEFLOW_CRASH_AT: 'after-commit:1',
    })
    expect(killed.signal).toBe('SIGKILL')
    expect(startLog(killed.stderr)).toMatchObject({ checkpoint: afterFirst[0]!.flush_id, folded: 0 })
    const [committed] = await query<{ n: string }>(data, `SELECT count() AS n FROM rated_usage`)
    const committedAfter = Number(committed!.n) - EVENTS / 2
    expect(committedAfter).toBeGreaterThan(0)

    // 3. The same command again: the totals are the checkpoint's plus the rows committed after it, folded again
    //    (and nothing else: not the first half a second time).
    const again = await rateflow(['ingest', 'csv', files.second, '--source', SOURCE, '--wait', '--data', data], { ...log, RATEFLOW_LOAD_PAGE_ROWS: '333' })
    expect(again.code).toBe(0)
    expect(startLog(again.stderr)).toMatchObject({ checkpoint: afterFirst[0]!.flush_id, folded: committedAfter })
    // Its own batches of the file: what the killed run left unacked was redelivered and rated first.
    const counts = JSON.parse(again.stdout) as { rated: number; duplicates: number }
    expect(counts.rated + counts.duplicates).toBe(EVENTS / 2)

    expect(await query(data, DUMP)).toEqual(uninterrupted)
    // Only the newest checkpoint is kept, and it is committed.
    const kept = await query<{ flush_id: string; committed: number }>(data, CHECKPOINTS)
    expect(kept).toHaveLength(1)
    expect(kept[0]!.committed).toBe(1)
    expect(kept[0]!.flush_id).not.toBe(afterFirst[0]!.flush_id)
  })

  it('a charge whose total depends on the fold order (percentage with free units) prices a crash and rerun as one run', async () => {
    // The free allowance goes to the events folded first; a start refolds stored rows by (rated_at, event_time), so
    // within a batch the rater folds in that order too. Before, a batch's events were folded in arrival order and the
    // rerun after a kill -9 refolded them by time: 11.2 billed where the model gives 12 (the maximum).
    const pay: Catalog = sampleCatalog()
    pay.meters.push({ id: 'pay', metric: 'pay_amount', aggregation: 'sum' })
    pay.plans[0]!.charges.push({
      id: 'pay_fee', kind: 'usage', meter: 'pay', model: 'percentage', rate: '2', fixed_fee_per_event: '0.30', free_units: '100',
      per_event_min: '0.5', per_event_max: '5', minimum: '1', maximum: '12',
    } as Catalog['plans'][number]['charges'][number])
    const line = (id: string, day: string, q: string) => `${id},2026-10-${day}T10:00:00Z,${deviceId(1, 1)},,,pay_amount,${q},`
    const m1 = join(work.dir, 'pay-1.csv')
    const m2 = join(work.dir, 'pay-2.csv')
    writeFileSync(m1, [CSV_HEADER, line('q3', '09', '60'), line('q1', '03', '300')].join('\n') + '\n')
    writeFileSync(m2, [CSV_HEADER, line('q5', '11', '500'), line('q7', '12', '700')].join('\n') + '\n')
    const PAY = `SELECT event_id, toString(amount) AS amount FROM rated_usage WHERE charge_id = 'pay_fee' ORDER BY event_id`
    const run = async (name: string, kill: boolean) => {
      const data = join(work.dir, name)
      await json(['catalog', 'apply', writeJson(join(work.dir, `${name}-catalog.json`), pay), '--data', data])
      await json(['accounts', 'apply', writeJson(join(work.dir, `${name}-accounts.json`), sampleAccounts(size)), '--data', data])
      if (kill) {
        const killed = await rateflow(['ingest', 'csv', m1, '--source', 'csv:pay', '--wait', '--data', data], { RATEFLOW_CRASH_AT: 'after-commit:1' })
        expect(killed.signal).toBe('SIGKILL')
      }
      await json(['ingest', 'csv', m1, '--source', 'csv:pay', '--wait', '--data', data])
      await json(['ingest', 'csv', m2, '--source', 'csv:pay', '--wait', '--data', data])
      return query<{ event_id: string; amount: string }>(data, PAY)
    }
    const clean = await run('pay-clean', false)
    expect(await run('pay-killed', true)).toEqual(clean)
    // Folded by time: q1 (300: 200 past the free 100 → 4.3), q3 (60 → 1.5), q5 (→ 5), q7 (→ 5, clamped: 12 in all).
    expect(clean).toEqual([
      { event_id: 'q1', amount: '4.3' },
      { event_id: 'q3', amount: '1.5' },
      { event_id: 'q5', amount: '5' },
      { event_id: 'q7', amount: '1.2' },
    ])
  }, 120_000)

  it('batches the queue delivers again after their commit (acks lost) are not folded twice at the next start', async () => {
    const data = join(work.dir, 'redelivered')
    await prepare(data)
    const log = { RATEFLOW_LOG: 'info' }
    // 1. The first half; stopping writes a checkpoint of the totals.
    expect((await rateflow(['ingest', 'csv', files.first, '--source', SOURCE, '--wait', '--data', data], log)).code).toBe(0)
    const [checkpoint] = await query<{ flush_id: string }>(data, CHECKPOINTS)
    // 2. What a rater commits when a queue that lost its acks delivers those batches again: a later flush naming
    //    them, every event a duplicate, no rows of its own (a nats-server killed and restarted did this).
    const rt = openRuntime({ dataDir: data, log: createLogger('test') })
    try {
      const store = await rt.store()
      const [b] = await store.rows<{ batches: string[] }>(`SELECT groupArray(b) AS batches FROM (SELECT DISTINCT arrayJoin(batches) AS b FROM flushes)`)
      expect(b!.batches.length).toBeGreaterThan(0)
      const batches = `[${b!.batches.map((x) => `'${x}'`).join(',')}]`
      await store.command(`INSERT INTO flushes VALUES ('f-again', now64(3, 'UTC') + 1, ${batches}, 0, ${EVENTS / 2}, 0, 0, 0)`)
    } finally {
      await rt.close()
    }
    // 3. The second half: its start folds nothing after the checkpoint (the first half is in it), and every amount
    //    is the uninterrupted run's.
    const second = await rateflow(['ingest', 'csv', files.second, '--source', SOURCE, '--wait', '--data', data], log)
    expect(second.code).toBe(0)
    expect(startLog(second.stderr)).toMatchObject({ checkpoint: checkpoint!.flush_id, folded: 0 })
    expect(await query(data, DUMP)).toEqual(uninterrupted)
  })

  it('a store without a checkpoint (written before checkpoints existed) is folded whole, and gets one', async () => {
    const data = join(work.dir, 'legacy')
    // As a store written before checkpoints existed: rated rows, no checkpoint.
    await firstHalfThenEdit(data, (store) => store.command('TRUNCATE TABLE rating_checkpoints'))
    const second = await rateflow(['ingest', 'csv', files.second, '--source', SOURCE, '--wait', '--data', data], { RATEFLOW_LOG: 'info' })
    expect(second.code).toBe(0)
    expect(startLog(second.stderr)).toMatchObject({ checkpoint: null, folded: EVENTS / 2 })
    expect(await query(data, DUMP)).toEqual(uninterrupted)
    const kept = await query<{ committed: number; totals: string }>(data, CHECKPOINTS)
    expect(kept).toHaveLength(1)
    expect(kept[0]!.committed).toBe(1)
  })
})

describe('a checkpoint of an earlier release', () => {
  it('keyed without the plan, is dropped and every rated row folded instead: the usage after it is priced as one run', async () => {
    const data = join(work.dir, 'old-keys')
    // The checkpoint's keys as an earlier release wrote them: subscription, charge, period, group, version (no plan).
    await firstHalfThenEdit(data, async (store) => {
      await store.command(`INSERT INTO rating_checkpoints SELECT flush_id, arrayStringConcat(arrayConcat([parts[1]], arraySlice(parts, 3)), char(0)), state
        FROM (SELECT flush_id, splitByChar('\\0', totals_key) AS parts, state FROM rating_checkpoints)`)
      await store.command("ALTER TABLE rating_checkpoints DELETE WHERE countSubstrings(totals_key, char(0)) = 5 SETTINGS mutations_sync = 2")
      expect(await store.rows('SELECT DISTINCT countSubstrings(totals_key, char(0)) AS n FROM rating_checkpoints')).toEqual([{ n: '4' }])
    })
    const second = await rateflow(['ingest', 'csv', files.second, '--source', SOURCE, '--wait', '--data', data], { RATEFLOW_LOG: 'info' })
    expect(second.code).toBe(0)
    expect(startLog(second.stderr)).toMatchObject({ checkpoint: null, folded: EVENTS / 2 })
    expect(await query(data, DUMP)).toEqual(uninterrupted)
  })
})

describe('the dedupe index read back from the store', () => {
  it('holds a key accepted lately for an event before the horizon: the event sent again with its time corrected is a duplicate after a restart too', async () => {
    // An event 2 h old (before a 1-hour horizon) is accepted; corrected to 30 min ago and sent again by the next
    // process. Held in memory until its acceptance passes the horizon, a start read keys by event time alone: it was
    // rated twice, where one process caught it.
    const data = join(work.dir, 'corrected-time')
    await prepare(data)
    const env = { RATEFLOW_DEDUPE_HORIZON_HOURS: '1' }
    const dev = deviceId(1, 1)
    const at = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60_000).toISOString()
    const csv = (name: string, time: string) => {
      const f = join(work.dir, name)
      writeFileSync(f, `${CSV_HEADER}\nL-1,${time},${dev},,,api_calls,1000,\n`)
      return f
    }
    expect(await json(['ingest', 'csv', csv('late-1.csv', at(120)), '--source', 'csv:late', '--wait', '--data', data], env)).toMatchObject({ rated: 1 })
    expect(await json(['ingest', 'csv', csv('late-2.csv', at(30)), '--source', 'csv:late', '--wait', '--data', data], env)).toMatchObject({ rated: 0, duplicates: 1 })
    expect(await query(data, "SELECT count() AS n FROM rated_usage WHERE source = 'csv:late'")).toEqual([{ n: '1' }])
  })

  it('knows every committed event id, whatever characters it holds: the same file again is all duplicates', async () => {
    const data = join(work.dir, 'odd-ids')
    await prepare(data)
    const ids = ['tab\there', 'new\nline', 'back\\slash', '\\t not a tab', 'quo""te', "apo'strophe", 'ünïcødé €', '😀', 'x'.repeat(200)]
    const dev = deviceId(1, 1)
    const csv = join(work.dir, 'odd-ids.csv')
    writeFileSync(csv, [CSV_HEADER, ...ids.map((id, i) => `"${id}",2026-10-05T10:00:0${i}Z,${dev},,,api_calls,1,`)].join('\n') + '\n')
    const first = await json<{ rated: number }>(['ingest', 'csv', csv, '--source', 'csv:odd', '--wait', '--data', data])
    expect(first).toMatchObject({ read: ids.length, rated: ids.length })
    // A new process: its index comes from the store alone, read as text (in pages of 2 keys, so pages end on these
    // ids) under a horizon that takes in October; under the default one (a week) the store is asked about each id.
    const again = await json<{ rated: number }>(['ingest', 'csv', csv, '--source', 'csv:odd', '--wait', '--data', data], {
      RATEFLOW_LOAD_PAGE_ROWS: '2',
      RATEFLOW_DEDUPE_HORIZON_HOURS: '87600',
    })
    expect(again).toMatchObject({ read: ids.length, rated: 0, duplicates: ids.length })
    const late = await json<{ rated: number }>(['ingest', 'csv', csv, '--source', 'csv:odd', '--wait', '--data', data])
    expect(late).toMatchObject({ read: ids.length, rated: 0, duplicates: ids.length })
  })

  it("reads a source's keys when its first batch comes, and only that source's: a new file reads none of history's", async () => {
    const data = join(work.dir, 'per-source')
    await prepare(data)
    const log = { RATEFLOW_LOG: 'info' }
    const keysRead = (stderr: string) =>
      logLines<{ source: string; keys: number }>(stderr, 'dedupe keys of a source read from the store').map(({ source, keys }) => ({ source, keys }))
    const first = await rateflow(['ingest', 'csv', files.first, '--source', 'csv:a', '--wait', '--data', data], log)
    expect(keysRead(first.stderr)).toEqual([{ source: 'csv:a', keys: 0 }])
    // Another source, the same event ids: none is a duplicate, and csv:a's 6,000 keys are not read.
    const other = await rateflow(['ingest', 'csv', files.first, '--source', 'csv:b', '--wait', '--data', data], log)
    expect(JSON.parse(other.stdout)).toMatchObject({ rated: EVENTS / 2, duplicates: 0 })
    expect(keysRead(other.stderr)).toEqual([{ source: 'csv:b', keys: 0 }])
    // The first source again, with a dedupe horizon (10 years) that takes in its October events: its keys are read
    // (in pages of 1,000), and every event is a duplicate.
    const again = await rateflow(['ingest', 'csv', files.first, '--source', 'csv:a', '--wait', '--data', data], {
      ...log,
      RATEFLOW_LOAD_PAGE_ROWS: '1000',
      RATEFLOW_DEDUPE_HORIZON_HOURS: '87600',
    })
    expect(JSON.parse(again.stdout)).toMatchObject({ rated: 0, duplicates: EVENTS / 2 })
    expect(keysRead(again.stderr)).toEqual([{ source: 'csv:a', keys: EVENTS / 2 }])
    // And with the default horizon (a week), before which every October event lies: their keys are read all the same,
    // as they were received within it (held as the running rater held them: until their acceptance is past the
    // horizon), and every event is a duplicate still.
    const late = await rateflow(['ingest', 'csv', files.first, '--source', 'csv:a', '--wait', '--data', data], log)
    expect(JSON.parse(late.stdout)).toMatchObject({ rated: 0, duplicates: EVENTS / 2 })
    expect(logLines<{ keys: number; olderKeys: boolean; horizonHours: number }>(late.stderr, 'dedupe keys of a source read from the store')).toMatchObject([
      { keys: EVENTS / 2, olderKeys: true, horizonHours: 168 },
    ])
  })
})
