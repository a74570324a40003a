/**
 * What the adapter benchmarks (mqtt, syslog, csv) share: a nats-server of their own with a fresh JetStream store,
 * the USAGE stream, a sink that publishes like `rateflow run` does and notes when the n-th item was stored, a
 * recount of what the stream holds, and the printed table.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import type { BatchSink } from '../adapters/batcher.js'
import { decodeBatch, openQueue, USAGE_STREAM, type Queue } from '../pipeline/queue.js'
import { startNatsServer, type LocalNatsServer } from '../pipeline/services/nats-server.js'

/** Items stored so far by a harness sink. */
export interface StoredCounts {
  batches: number
  records: number
  rejects: number
}

/** A fresh nats-server + USAGE stream for one benchmark run. */
export interface JetStreamHarness {
  /** Temporary directory of the run (nats store, generated files); removed by close(). */
  readonly dir: string
  readonly queue: Queue
  /** Publishes a batch to USAGE (as `rateflow run` does) and counts it once JetStream has stored it. */
  readonly sink: BatchSink
  readonly stored: Readonly<StoredCounts>
  /** Resolves with performance.now() of the store that brought records + rejects to at least `items`. */
  storedAt(items: number): Promise<number>
  /**
   * Reads every batch in the stream back and counts records and rejects (so nothing lost is hidden); with `keep`,
   * also appends each message's bytes to it (for a raw publish of the very same batches).
   */
  recount(keep?: Uint8Array[]): Promise<StoredCounts>
  /** Recounts the stream and returns the counts; throws, naming `bench`, unless it holds exactly `records` records and no reject. */
  expectStreamHolds(bench: string, records: number): Promise<StoredCounts>
  /**
   * Publishes pre-encoded batches, `inFlight` at a time, to a stream of their own (BENCH, file storage like USAGE)
   * and returns the milliseconds taken: JetStream's raw rate for the same bytes, without any adapter.
   */
  rawPublish(batches: readonly Uint8Array[], inFlight: number): Promise<number>
  /** A stream of its own (BENCH, file storage like USAGE) for a raw path to publish to; remove() deletes it. */
  benchStream(): Promise<{ publish(bytes: Uint8Array): Promise<unknown>; remove(): Promise<void> }>
  close(): Promise<void>
}

/** Starts nats-server (127.0.0.1, free port, store in a temp dir) and opens the USAGE stream. */
export async function openHarness(name: string): Promise<JetStreamHarness> {
  const dir = mkdtempSync(join(tmpdir(), `rateflow-bench-${name}-`))
  let nats: LocalNatsServer | undefined
  try {
    nats = await startNatsServer(dir)
    const queue = await openQueue(nats.authUrl)
    const stored: StoredCounts = { batches: 0, records: 0, rejects: 0 }
    const waiters: Array<{ items: number; resolve: (t: number) => void }> = []
    const sink: BatchSink = async (batch) => {
      await queue.publish(batch)
      stored.batches++
      stored.records += batch.records.length
      stored.rejects += batch.rejects.length
      const now = performance.now()
      const total = stored.records + stored.rejects
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (total >= waiters[i]!.items) waiters.splice(i, 1)[0]!.resolve(now)
      }
    }
    const recount = async (keep?: Uint8Array[]): Promise<StoredCounts> => {
      const jsm = await jetstreamManager(queue.nc)
      const info = await jsm.streams.info(USAGE_STREAM)
      const out: StoredCounts = { batches: 0, records: 0, rejects: 0 }
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(USAGE_STREAM, { seq })
        if (!m) continue
        const b = decodeBatch(m.data)
        keep?.push(m.data)
        out.batches++
        out.records += b.records.length
        out.rejects += b.rejects.length
      }
      return out
    }
    const server = nats
    const benchStream = async () => {
      const jsm = await jetstreamManager(queue.nc)
      await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], storage: StorageType.File, retention: RetentionPolicy.Limits })
      return {
        publish: (bytes: Uint8Array) => queue.js.publish('bench.raw', bytes),
        remove: () => jsm.streams.delete('BENCH').then(() => undefined),
      }
    }
    return {
      dir,
      queue,
      sink,
      stored,
      storedAt: (items) =>
        stored.records + stored.rejects >= items ? Promise.resolve(performance.now()) : new Promise((resolve) => waiters.push({ items, resolve })),
      recount,
      async expectStreamHolds(bench, records) {
        const stream = await recount()
        if (stream.records !== records || stream.rejects !== 0) {
          throw new Error(`bench ${bench}: the stream holds ${JSON.stringify(stream)}, expected ${records} records`)
        }
        return stream
      },
      async rawPublish(batches, inFlight) {
        const stream = await benchStream()
        const t = performance.now()
        const pending: Promise<unknown>[] = []
        for (const b of batches) {
          pending.push(stream.publish(b))
          if (pending.length >= inFlight) await pending.shift()
        }
        await Promise.all(pending)
        const ms = performance.now() - t
        await stream.remove()
        return ms
      },
      benchStream,
      async close() {
        await queue.close()
        await server.stop()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    await nats?.stop()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

/** An environment variable as a positive integer, or the default. */
export function envInt(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`)
  return n
}

/** One row of an adapter benchmark's table. */
export interface RateRow {
  readonly label: string
  readonly perSecond: number
  readonly unit: string
}

/** The table every adapter benchmark prints: Rateflow's rate, the raw rate, the ratio, the goal, met or not. */
export function adapterTable(title: string, rateflow: RateRow, raw: readonly RateRow[], goal: number, extra: readonly string[] = []): string {
  const fmt = (n: number) => n.toLocaleString('en').padStart(11)
  const lines = [title]
  lines.push(`  ${rateflow.label.padEnd(46)} ${fmt(rateflow.perSecond)} ${rateflow.unit}`)
  for (const r of raw) {
    lines.push(`  ${r.label.padEnd(46)} ${fmt(r.perSecond)} ${r.unit}   Rateflow / raw = ${(rateflow.perSecond / r.perSecond).toFixed(2)}`)
  }
  lines.push(`  goal ≥ ${goal.toLocaleString('en')} ${rateflow.unit}: ${rateflow.perSecond >= goal ? 'met' : 'NOT met'}`)
  for (const e of extra) lines.push(`  ${e}`)
  return lines.join('\n')
}

