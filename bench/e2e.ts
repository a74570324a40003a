import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager, AckPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import { validateAccounts } from '../catalog/accounts.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import { ingestCsv, type IngestCounts } from '../cli/ingest.js'
import { createLogger } from '../common/logger.js'
import { openRuntime } from '../pipeline/runtime.js'
import { encodeBatch } from '../pipeline/queue.js'
import type { UsageBatch, WireRecord } from '../rating-core/record.js'
import { saveResult } from './results.js'
import { sampleAccounts, sampleCatalog, sampleCsvLines, writeSampleCsv } from './sample-data.js'

/** One scenario's figures. */
export interface E2eResult {
  events: number
  e2e_events_per_s: number
  store_raw_rows_per_s: number
  jetstream_publish_events_per_s: number
  jetstream_consume_events_per_s: number
  ratio_e2e_to_store: number
  ratio_e2e_to_jetstream: number
  counts: IngestCounts
}

/**
 * CSV → JetStream → pool → ClickHouse, events/s from the first row read to the last commit (services
 * already up), and in the same run, on the same machine state:
 *  - the store's raw ceiling: inserting the same rated rows (TabSeparated, 100k-row inserts) into a copy table;
 *  - JetStream's raw ceiling: publishing the same events as msgpack batches of 1,000, then consuming them.
 */
export async function benchE2e(events = 300_000): Promise<E2eResult> {
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-bench-'))
  const log = createLogger('bench', process.env.RATEFLOW_LOG ?? 'error')
  const rt = openRuntime({ dataDir: join(dir, 'data'), log, natsUrl: process.env.NATS_URL, clickhouseUrl: process.env.CLICKHOUSE_URL })
  try {
    const size = { customers: 50, devicesPerAccount: 10 }
    rt.repo.putCatalog(validateCatalog(sampleCatalog()))
    rt.repo.putAccounts(validateAccounts(sampleAccounts(size)))
    const csv = join(dir, 'usage.csv')
    await writeSampleCsv(csv, { events, size, seed: 3 })
    const store = await rt.store()
    const queue = await rt.queue()

    // 1. End to end.
    let t = performance.now()
    const counts = (await ingestCsv(rt, { files: [csv], source: 'csv:bench', wait: true })) as IngestCounts
    const e2eS = (performance.now() - t) / 1000
    if (counts.rated !== events) throw new Error(`bench: expected ${events} rated, got ${JSON.stringify(counts)}`)

    // 2. Store ceiling: the same rows, straight in.
    await store.command('CREATE TABLE IF NOT EXISTS bench_rated AS rated_usage')
    const tsvText = await store.text('SELECT * FROM rated_usage', 'TabSeparated')
    const lines = tsvText.split('\n').filter(Boolean)
    const chunks: string[] = []
    for (let i = 0; i < lines.length; i += 100_000) chunks.push(lines.slice(i, i + 100_000).join('\n') + '\n')
    t = performance.now()
    for (const c of chunks) await store.insertTsv('bench_rated', c)
    const storeS = (performance.now() - t) / 1000

    // 3. JetStream ceiling: the same events as batches of 1,000 on a stream of their own.
    const jsm = await jetstreamManager(queue.nc)
    await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], storage: StorageType.File, retention: RetentionPolicy.Limits })
    await jsm.consumers.add('BENCH', { durable_name: 'b', ack_policy: AckPolicy.None })
    const batches: Uint8Array[] = []
    let records: WireRecord[] = []
    let header = true
    for (const line of sampleCsvLines({ events, size, seed: 3 })) {
      if (header) {
        header = false
        continue
      }
      const [event_id, event_time, device_id, , , metric, quantity, region] = line.split(',')
      records.push({ event_id: event_id!, source: 'csv:bench', event_time: event_time!, device_id: device_id!, metric: metric!, quantity: quantity!, dimensions: region ? { region } : {}, raw: line, origin: `usage.csv:${records.length}` })
      if (records.length === 1000) {
        batches.push(encodeBatch({ id: `b${batches.length}`, records, rejects: [] } satisfies UsageBatch))
        records = []
      }
    }
    if (records.length) batches.push(encodeBatch({ id: `b${batches.length}`, records, rejects: [] }))
    t = performance.now()
    const inflight: Promise<unknown>[] = []
    for (const b of batches) {
      inflight.push(queue.js.publish('bench.x', b))
      if (inflight.length >= 8) await inflight.shift()
    }
    await Promise.all(inflight)
    const pubS = (performance.now() - t) / 1000
    t = performance.now()
    const consumer = await queue.js.consumers.get('BENCH', 'b')
    let got = 0
    const msgs = await consumer.consume({ max_messages: 64 })
    for await (const m of msgs) {
      if (m.data.length === 0) continue
      if (++got === batches.length) break
    }
    const subS = (performance.now() - t) / 1000
    await jsm.streams.delete('BENCH')

    const r = (n: number) => Math.round(n)
    return {
      events,
      e2e_events_per_s: r(events / e2eS),
      store_raw_rows_per_s: r(lines.length / storeS),
      jetstream_publish_events_per_s: r(events / pubS),
      jetstream_consume_events_per_s: r(events / subS),
      ratio_e2e_to_store: +(events / e2eS / (lines.length / storeS)).toFixed(2),
      ratio_e2e_to_jetstream: +(events / e2eS / (events / Math.max(pubS, subS))).toFixed(2),
      counts,
    }
  } finally {
    await rt.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** `rateflow bench e2e`: runs, prints a table, writes bench/out/e2e-<time>.json. BENCH_EVENTS sets the size. */
export async function run(out: (s: string) => void): Promise<number> {
  const events = Number(process.env.BENCH_EVENTS ?? 300_000)
  const res = await benchE2e(events)
  out(
    [
      `benchmark e2e: ${events} events, CSV → JetStream → pool → ClickHouse (${process.env.CLICKHOUSE_URL ? 'server' : 'chDB embedded'})`,
      `  end to end                 ${res.e2e_events_per_s.toLocaleString('en')} events/s`,
      `  store raw insert           ${res.store_raw_rows_per_s.toLocaleString('en')} rows/s     ratio e2e/store     ${res.ratio_e2e_to_store}`,
      `  JetStream publish          ${res.jetstream_publish_events_per_s.toLocaleString('en')} events/s`,
      `  JetStream consume          ${res.jetstream_consume_events_per_s.toLocaleString('en')} events/s   ratio e2e/jetstream ${res.ratio_e2e_to_jetstream}`,
      `  counts                     ${JSON.stringify(res.counts)}`,
    ].join('\n'),
  )
  saveResult('e2e', res)
  return 0
}
