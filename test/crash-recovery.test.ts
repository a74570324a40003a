import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, writeSampleCsv } from '../bench/sample-data.js'
import { jetstreamManager } from '@nats-io/jetstream'
import { openQueue, USAGE_STREAM } from '../pipeline/queue.js'
import { startNatsServer } from '../pipeline/services/nats-server.js'
import { json, query, rateflow, tempDir, writeJson, killStrayChildren, type CliResult } from './helpers/cli.js'

/**
 * kill -9 of `ingest csv --wait` in the middle of a large file, then the same command again: rated_usage
 * must equal that of one clean run, row for row. Real processes, real nats-server, real chDB.
 */
const EVENTS = 60_000
const size = { customers: 8, devicesPerAccount: 4 }
const work = tempDir()
const csv = join(work.dir, 'big.csv')
// Flushes of at most 5,000 rows: the file takes at least 12 flushes however fast the machine stages, so
// the n-th flush named by RATEFLOW_CRASH_AT is always reached.
const SMALL_FLUSHES = { RATEFLOW_FLUSH_ROWS: '5000' }
type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }

const DUMP = `SELECT source, event_id, account_id, subscription_id, plan_id, charge_id, group_key, event_time,
  toString(quantity) AS quantity, toString(amount) AS amount, currency, catalog_version, period_start
  FROM rated_usage ORDER BY source, event_id, charge_id`

async function prepare(data: string, env: Record<string, string> = {}): Promise<void> {
  await json(['catalog', 'apply', writeJson(join(work.dir, 'catalog.json'), sampleCatalog()), '--data', data], env)
  await json(['accounts', 'apply', writeJson(join(work.dir, 'accounts.json'), sampleAccounts(size)), '--data', data], env)
}

let clean: unknown[]

beforeAll(async () => {
  await writeSampleCsv(csv, { events: EVENTS, size, withFaults: true, seed: 5 })
  const data = join(work.dir, 'clean')
  await prepare(data)
  const c = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', '--data', data])
  expect(c).toEqual({ read: EVENTS + 6, rated: EVENTS, duplicates: 0, rejected: 4, suspended: 2 })
  clean = await query(join(work.dir, 'clean'), DUMP)
  expect(clean.length).toBe(EVENTS)
}, 180_000)
// A test that timed out must not leave a process holding its data directory for the tests after it.
afterEach(() => {
  killStrayChildren()
})
afterAll(() => work.cleanup())

/**
 * Re-runs the same command after the crash and checks the result equals the clean run. The restarted rater reads
 * the stored keys and rated rows back 997 at a time (RATEFLOW_LOAD_PAGE_ROWS): pages end inside batches and between
 * the charges of one event, and the amounts after the restart (increments of the rebuilt totals) must not change.
 */
async function rerunAndCompare(data: string, env: Record<string, string> = {}): Promise<Counts> {
  const again = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', '--data', data], { RATEFLOW_LOAD_PAGE_ROWS: '997', ...env })
  expect(again.read).toBe(EVENTS + 6)
  expect(again.rated + again.duplicates + again.rejected + again.suspended).toBe(again.read)
  const dump = await query(data, DUMP)
  expect(dump.length).toBe(clean.length)
  expect(dump).toEqual(clean)
  const [u] = await query<{ held: string }>(data, "SELECT count() AS held FROM suspended_usage FINAL WHERE status = 'held'")
  expect(Number(u!.held)).toBe(2)
  return again
}

/**
 * A prepared data directory `name` under the work directory, and the `ingest csv --wait` of the big file there, in
 * small flushes, ended by `signal` as soon as its first flush has committed: part of the file is rated, part is in
 * JetStream, part unread.
 */
async function interruptedAfterFirstFlush(name: string, signal: NodeJS.Signals): Promise<{ data: string; r: CliResult }> {
  const data = join(work.dir, name)
  await prepare(data)
  const run = rateflow(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', '--data', data], { RATEFLOW_LOG: 'info', ...SMALL_FLUSHES })
  await new Promise<void>((resolve) => {
    run.child.stderr!.on('data', (d: Buffer) => {
      if (d.toString().includes('flush committed')) resolve()
    })
  })
  run.child.kill(signal)
  return { data, r: await run }
}

describe('kill -9 in the middle of a large file, then the same command again', () => {
  it('after a flush has committed (random point in the stream)', async () => {
    const { data, r } = await interruptedAfterFirstFlush('killed', 'SIGKILL')
    expect(r.signal).toBe('SIGKILL')
    const again = await rerunAndCompare(data)
    expect(again.duplicates).toBeGreaterThan(0) // what the killed run committed is not billed twice
  })

  it('Ctrl-C (SIGINT) ends it as a kill does, saying what was kept and what to do; the same command again finishes it', async () => {
    const { data, r } = await interruptedAfterFirstFlush('interrupted', 'SIGINT')
    // It ended without a word before.
    expect([r.signal, r.stdout]).toEqual(['SIGINT', ''])
    expect(r.stderr).toContain('rateflow: ingest csv: interrupted (SIGINT): the events committed so far are kept; run the same command again to ingest the rest')
    const again = await rerunAndCompare(data)
    expect(again.duplicates).toBeGreaterThan(0)
  })

  // Every flush here also writes a checkpoint of the running totals (RATEFLOW_CHECKPOINT_ROWS=1): the torn flush
  // leaves one whose flush never committed. The rerun must start from the first flush's, and drop the torn one.
  it('between the inserts and the commit row (partial rows must be rolled back), every flush with a checkpoint', async () => {
    const data = join(work.dir, 'torn')
    await prepare(data)
    const everyFlush = { RATEFLOW_CHECKPOINT_ROWS: '1' }
    const r = await rateflow(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', '--data', data], {
      RATEFLOW_CRASH_AT: 'before-commit:2',
      ...SMALL_FLUSHES,
      ...everyFlush,
    })
    expect(r.signal).toBe('SIGKILL')
    await rerunAndCompare(data, everyFlush)
    const kept = await query<{ committed: number }>(
      data,
      'SELECT flush_id, flush_id IN (SELECT flush_id FROM flushes) AS committed FROM rating_checkpoints GROUP BY flush_id',
    )
    expect(kept).toEqual([expect.objectContaining({ committed: 1 })])
  })

  // With a NATS_URL the queue is shared, not the process's own: the restarted rater takes the killed one's lease
  // (same host, process gone) and has the batches it left unacked delivered again at once, in stream order, rather
  // than after ack_wait (two minutes) behind newer ones.
  it('with a shared NATS_URL: between the inserts and the commit row, then at once the same command again', async () => {
    const data = join(work.dir, 'shared')
    const nats = await startNatsServer(join(work.dir, 'shared-nats'))
    try {
      const env = { NATS_URL: nats.authUrl }
      await prepare(data, env)
      const r = await rateflow(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', '--data', data], { RATEFLOW_CRASH_AT: 'before-commit:2', ...SMALL_FLUSHES, ...env })
      expect(r.signal).toBe('SIGKILL')
      await rerunAndCompare(data, env)
      // Everything the killed run left unacked was rated (or found a duplicate) and acked by the rerun already:
      // the work-queue stream is empty, nothing waits for ack_wait to come round.
      const queue = await openQueue(nats.authUrl)
      try {
        expect((await (await jetstreamManager(queue.nc)).streams.info(USAGE_STREAM)).state.messages).toBe(0)
      } finally {
        await queue.close()
      }
    } finally {
      await nats.stop()
    }
  })

  it('after the commit row, before the JetStream ack (redelivered batches are duplicates)', async () => {
    const data = join(work.dir, 'unacked')
    await prepare(data)
    const r = await rateflow(['ingest', 'csv', csv, '--source', 'csv:big', '--wait', '--data', data], { RATEFLOW_CRASH_AT: 'after-commit:1', ...SMALL_FLUSHES })
    expect(r.signal).toBe('SIGKILL')
    const again = await rerunAndCompare(data)
    expect(again.duplicates).toBeGreaterThan(0)
  })
})
