import { readdirSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager, AckPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import { validateAccounts } from '../catalog/accounts.js'
import { validateCatalog } from '../catalog/validate-catalog.js'
import { ingestCsv, type IngestCounts } from '../cli/ingest.js'
import { encodeBatch } from '../pipeline/queue.js'
import type { Runtime } from '../pipeline/runtime.js'
import type { UsageBatch, WireRecord } from '../rating-core/record.js'
import { saveResult, withTempRuntime } from './results.js'
import { sampleAccounts, sampleCatalog, sampleCsvLines, writeSampleCsv } from './sample-data.js'

/** One scenario's figures. */
export interface E2eResult {
  events: number
  /** Events per second from the `ingest csv --wait` call (the rater's start-up included) to its return. */
  e2e_events_per_s: number
  /** The rater's start-up inside that time (pool thread, recovery queries, state rebuilt), ms. */
  rater_start_ms: number
  /** Events per second from the first row read to the return: reading and rating alone. */
  e2e_reading_events_per_s: number
  /** CPU time of this process (main thread, pool, chDB) per event during the e2e run; nats-server excluded. */
  cpu_us_per_event: number
  /**
   * This process's CPU per event during the e2e run by kind of thread (µs): what moving work between threads does shows
   * here even when the machine's noise hides it in events/s. Null off Linux.
   */
  cpu_by_thread_us_per_event: Record<ThreadKind, number> | null
  /** Cores the whole machine kept busy during the e2e run (of `os.availableParallelism()`); null off Linux. */
  machine_busy_cores: number | null
  /** rated_usage rows alone, inserted directly. */
  store_raw_rated_rows_per_s: number
  /** Every row an event writes (rated_usage + usage_events), inserted directly: the store's ceiling in events/s. */
  store_raw_events_per_s: number
  jetstream_publish_events_per_s: number
  jetstream_consume_events_per_s: number
  ratio_e2e_to_store: number
  ratio_e2e_to_jetstream: number
  /** Machine CPU (every process, nats-server included) per event during the e2e run, µs; null off Linux. */
  machine_cpu_us_per_event: number | null
  /** Machine CPU per event while the store's raw ceiling was measured (both tables' rows inserted directly), µs. */
  store_machine_cpu_us_per_event: number | null
  /** Machine CPU per event the goal of 150,000 events/s allows on this machine's cores, µs. */
  goal_machine_cpu_us_per_event: number
  counts: IngestCounts
}

/** The goal for this machine, end to end. */
export const E2E_GOAL_EVENTS_PER_S = 150_000

/** The scenario's customers and devices: 50 accounts of 10 devices each, on the sample catalog's plans. */
export const E2E_SIZE = { customers: 50, devicesPerAccount: 10 } as const

/** Puts the scenario's catalog and accounts into `rt` and writes its CSV of `events` rows under `dir`; returns the CSV's path. */
export async function writeE2eScenario(rt: Runtime, dir: string, events: number): Promise<string> {
  rt.repo.putCatalog(validateCatalog(sampleCatalog()))
  rt.repo.putAccounts(validateAccounts(sampleAccounts(E2E_SIZE)))
  const csv = join(dir, 'usage.csv')
  await writeSampleCsv(csv, { events, size: E2E_SIZE, seed: 3 })
  return csv
}

/**
 * CSV → JetStream → pool → ClickHouse, events/s from the `ingest csv --wait` call to its return (services already
 * up; the rater's start-up is inside, and reported apart), and in the same run, on the same machine state:
 *  - the store's raw ceiling: inserting the same rows (TabSeparated, 100k-row inserts, unique keys as the rater's) into copy tables;
 *  - JetStream's raw ceiling: publishing the same events as msgpack batches of 1,000, then consuming them.
 */
export async function benchE2e(events = 300_000): Promise<E2eResult> {
  return withTempRuntime(async (rt, dir) => {
    const csv = await writeE2eScenario(rt, dir, events)
    const store = await rt.store()
    const queue = await rt.queue()

    // 1. End to end, with the CPU it took: this process's threads (main, pool, chDB) and the whole machine's.
    const machine0 = machineJiffies()
    const threads = sampleThreads()
    const cpu0 = process.cpuUsage()
    let t = performance.now()
    let readingAt = t
    const counts = (await ingestCsv(rt, { files: [csv], source: 'csv:bench', wait: true, onReading: () => (readingAt = performance.now()) })) as IngestCounts
    const end = performance.now()
    const e2eS = (end - t) / 1000
    const readingS = (end - readingAt) / 1000
    const raterStartMs = readingAt - t
    const cpu = process.cpuUsage(cpu0)
    const sampled = threads.stop()
    const machine1 = machineJiffies()
    if (counts.rated !== events) throw new Error(`bench: expected ${events} rated, got ${JSON.stringify(counts)}`)

    // 2. Store ceiling: every row the run stored (rated_usage and usage_events), straight in, in inserts as
    // large as the rater's flushes, one table after the other as a flush writes them, with the same settings.
    const chunksOf = async (table: string): Promise<string[]> => {
      await store.command(`CREATE TABLE IF NOT EXISTS bench_${table} AS ${table}`)
      const rows = (await store.text(`SELECT * FROM ${table}`, 'TabSeparated')).split('\n').filter(Boolean)
      const chunks: string[] = []
      for (let i = 0; i < rows.length; i += 100_000) chunks.push(rows.slice(i, i + 100_000).join('\n') + '\n')
      return chunks
    }
    const ratedChunks = await chunksOf('rated_usage')
    const usageChunks = await chunksOf('usage_events')
    const ratedRows = counts.rated
    const storeMachine0 = machineJiffies()
    t = performance.now()
    for (const c of ratedChunks) await store.insertTsv('bench_rated_usage', c, { uniqueKeys: true })
    const ratedS = (performance.now() - t) / 1000
    t = performance.now()
    for (const c of usageChunks) await store.insertTsv('bench_usage_events', c, { uniqueKeys: true })
    const storeS = ratedS + (performance.now() - t) / 1000
    const storeMachine1 = machineJiffies()

    // 3. JetStream ceiling: the same events as batches of 1,000 on a stream of their own.
    const jsm = await jetstreamManager(queue.nc)
    await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], storage: StorageType.File, retention: RetentionPolicy.Limits })
    await jsm.consumers.add('BENCH', { durable_name: 'b', ack_policy: AckPolicy.None })
    const batches: Uint8Array[] = []
    let records: WireRecord[] = []
    let header = true
    for (const line of sampleCsvLines({ events, size: E2E_SIZE, seed: 3 })) {
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
    const busy = (a: Jiffies | undefined, b: Jiffies | undefined) => (a && b ? ((b.busy - a.busy) / (b.total - a.total)) * b.cores : null)
    const e2eBusy = busy(machine0, machine1)
    const storeBusy = busy(storeMachine0, storeMachine1)
    return {
      events,
      e2e_events_per_s: r(events / e2eS),
      rater_start_ms: r(raterStartMs),
      e2e_reading_events_per_s: r(events / readingS),
      cpu_us_per_event: +((cpu.user + cpu.system) / events).toFixed(1),
      cpu_by_thread_us_per_event: sampled ? cpuByThread(sampled.first, sampled.last, process.pid, events, cpu.user + cpu.system) : null,
      machine_busy_cores: e2eBusy === null ? null : +e2eBusy.toFixed(2),
      store_raw_rated_rows_per_s: r(ratedRows / ratedS),
      store_raw_events_per_s: r(events / storeS),
      jetstream_publish_events_per_s: r(events / pubS),
      jetstream_consume_events_per_s: r(events / subS),
      ratio_e2e_to_store: +(storeS / e2eS).toFixed(2),
      ratio_e2e_to_jetstream: +(events / e2eS / (events / Math.max(pubS, subS))).toFixed(2),
      machine_cpu_us_per_event: e2eBusy === null ? null : +((e2eBusy * e2eS * 1e6) / events).toFixed(1),
      store_machine_cpu_us_per_event: storeBusy === null ? null : +((storeBusy * storeS * 1e6) / events).toFixed(1),
      goal_machine_cpu_us_per_event: +((availableParallelism() * 1e6) / E2E_GOAL_EVENTS_PER_S).toFixed(1),
      counts,
    }
  }, { natsUrl: process.env.NATS_URL, clickhouseUrl: process.env.CLICKHOUSE_URL })
}

/** The kinds of thread `cpuByThread` tells apart. */
export type ThreadKind = 'main' | 'staging' | 'node_helpers' | 'store_queries' | 'store_merges' | 'other' | 'unseen'

/** A thread of this process as /proc/self/task shows it: its name and the CPU it has used, in clock ticks. */
export interface ThreadTicks {
  comm: string
  ticks: number
}

/** Every thread of this process by thread id; undefined where there is no /proc/self/task. */
function threadTicks(): Map<string, ThreadTicks> | undefined {
  try {
    const out = new Map<string, ThreadTicks>()
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
        // After the name (in parentheses, which may hold spaces): fields 3…; utime and stime are the 14th and 15th.
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        out.set(tid, { comm: readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim(), ticks: Number(f[11]) + Number(f[12]) })
      } catch {
        // The thread ended between the listing and the read.
      }
    }
    return out
  } catch {
    return undefined
  }
}

/**
 * Samples this process's threads every `everyMs` until stopped, keeping each thread's last reading: a thread that
 * ends during the run (the staging pool's worker ends with the rater; chDB starts threads per query) still counts up
 * to its last sample. Reading /proc for every thread costs the main thread ~1 ms a sample.
 */
function sampleThreads(everyMs = 100): { stop(): { first: Map<string, ThreadTicks>; last: Map<string, ThreadTicks> } | undefined } {
  const first = threadTicks()
  if (first === undefined) return { stop: () => undefined }
  const last = new Map(first)
  const take = () => {
    for (const [tid, t] of threadTicks() ?? []) last.set(tid, t)
  }
  const timer = setInterval(take, everyMs)
  return {
    stop() {
      clearInterval(timer)
      take()
      return { first, last }
    },
  }
}

/**
 * CPU per event, µs, by kind of thread between two readings (Linux counts 100 clock ticks a second): the main thread
 * (`pid`: the rater, and the CSV side of `ingest csv`); threads named `node` that started after the first reading
 * (the staging pool's workers) and those that were there before it (V8's and libuv's helpers: garbage collection,
 * compilation, file writes); chDB's query threads (inserts and reads: `ThreadPool`, `QueryPipelineEx`, `QueryPullPipeEx`)
 * and its `MergeMutate` threads (background merges); the rest; and `unseen`: the process's CPU in the window
 * (`processUs`, process.cpuUsage) less what the readings account for (threads that lived between two samples).
 */
export function cpuByThread(
  first: Map<string, ThreadTicks>,
  last: Map<string, ThreadTicks>,
  pid: number,
  events: number,
  processUs: number,
): Record<ThreadKind, number> {
  const sums: Record<ThreadKind, number> = { main: 0, staging: 0, node_helpers: 0, store_queries: 0, store_merges: 0, other: 0, unseen: 0 }
  let seen = 0
  for (const [tid, t] of last) {
    const before = first.get(tid)
    const ticks = t.ticks - (before?.ticks ?? 0)
    const kind: ThreadKind =
      tid === String(pid)
        ? 'main'
        : t.comm === 'node'
          ? before === undefined
            ? 'staging'
            : 'node_helpers'
          : t.comm === 'ThreadPool' || t.comm.startsWith('QueryP')
            ? 'store_queries'
            : t.comm.startsWith('MergeMutate')
              ? 'store_merges'
              : 'other'
    sums[kind] += ticks
    seen += ticks
  }
  sums.unseen = Math.max(0, processUs / 10_000 - seen)
  const us = (ticks: number) => +((ticks * 10_000) / events).toFixed(2)
  return {
    main: us(sums.main),
    staging: us(sums.staging),
    node_helpers: us(sums.node_helpers),
    store_queries: us(sums.store_queries),
    store_merges: us(sums.store_merges),
    other: us(sums.other),
    unseen: us(sums.unseen),
  }
}

interface Jiffies {
  busy: number
  total: number
  cores: number
}

/** Busy and total jiffies of all CPUs since boot, from /proc/stat; undefined where there is none. */
function machineJiffies(): Jiffies | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0) // idle + iowait
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0)
    return { busy: total - idle, total, cores: availableParallelism() }
  } catch {
    return undefined
  }
}

/** `rateflow bench e2e`: runs, prints a table, writes bench/out/e2e-<time>.json. BENCH_EVENTS sets the size. */
export async function run(out: (s: string) => void): Promise<number> {
  const events = Number(process.env.BENCH_EVENTS ?? 300_000)
  const res = await benchE2e(events)
  out(
    [
      `benchmark e2e: ${events} events, CSV → JetStream → pool → ClickHouse (${process.env.CLICKHOUSE_URL ? 'server' : 'chDB embedded'})`,
      `  end to end                 ${res.e2e_events_per_s.toLocaleString('en')} events/s (rater start-up included: ${res.rater_start_ms} ms)`,
      `  from the first row read    ${res.e2e_reading_events_per_s.toLocaleString('en')} events/s`,
      `  CPU                        ${res.cpu_us_per_event} µs per event in this process; machine busy ${res.machine_busy_cores ?? '?'} cores of ${availableParallelism()}`,
      ...(res.cpu_by_thread_us_per_event
        ? [
            `  CPU by thread              ` +
              Object.entries(res.cpu_by_thread_us_per_event)
                .map(([k, v]) => `${k.replace('_', ' ')} ${v}`)
                .join(', ') +
              ' µs per event',
          ]
        : []),
      `  store raw, rated rows      ${res.store_raw_rated_rows_per_s.toLocaleString('en')} rows/s`,
      `  store raw, all rows        ${res.store_raw_events_per_s.toLocaleString('en')} events/s  ratio e2e/store     ${res.ratio_e2e_to_store}`,
      `  JetStream publish          ${res.jetstream_publish_events_per_s.toLocaleString('en')} events/s`,
      `  JetStream consume          ${res.jetstream_consume_events_per_s.toLocaleString('en')} events/s   ratio e2e/jetstream ${res.ratio_e2e_to_jetstream}`,
      `  machine CPU per event      e2e ${res.machine_cpu_us_per_event ?? '?'} µs; storing alone (raw ceiling) ${res.store_machine_cpu_us_per_event ?? '?'} µs; ` +
        `${E2E_GOAL_EVENTS_PER_S.toLocaleString('en')} events/s on ${availableParallelism()} cores allows ${res.goal_machine_cpu_us_per_event} µs`,
      `  counts                     ${JSON.stringify(res.counts)}`,
    ].join('\n'),
  )
  saveResult('e2e', res)
  return 0
}
