import { existsSync, statSync } from 'node:fs'
import { csvBatchIdPrefix, newRunId, publishCsvFile } from '../adapters/csv.js'
import type { Runtime } from '../pipeline/runtime.js'
import { Rater, raterOptionsFromEnv, type BatchOutcome } from '../pipeline/rater.js'
import { usage } from './context.js'

/** The counts `ingest csv --wait` prints (CONTRACT §1). read = rated + duplicates + rejected + suspended. */
export interface IngestCounts {
  read: number
  rated: number
  duplicates: number
  rejected: number
  suspended: number
}

export interface IngestOptions {
  files: string[]
  source?: string | undefined
  wait: boolean
  /** Called once, when reading the first file starts (with `wait`, after the rater has started): for benchmarks. */
  onReading?: () => void
}

/**
 * `rateflow ingest csv FILE... [--source NAME] [--wait]`.
 *
 * Publishes each file's rows to JetStream in micro-batches. With --wait this process also runs the rater
 * until every batch it published has an outcome, and returns the counts. Without it, the batches wait in
 * JetStream for a rater (`rateflow run`, or the next `ingest --wait`), and the publish counts are returned.
 */
export async function ingestCsv(rt: Runtime, opts: IngestOptions): Promise<IngestCounts | { read: number; batches: number }> {
  if (opts.files.length === 0) throw usage('ingest csv: give at least one FILE')
  const missing = opts.files.filter((f) => !existsSync(f) || !statSync(f).isFile())
  if (missing.length) throw usage(`ingest csv: no such file: ${missing.join(', ')}`)
  const queue = await rt.queue()
  const runId = newRunId()
  const mine = new Set<string>()
  const counts: IngestCounts = { read: 0, rated: 0, duplicates: 0, rejected: 0, suspended: 0 }
  let rater: Rater | undefined
  let settle: (() => void) | undefined
  let raterFailure: unknown
  let published = 0
  let done = false
  if (opts.wait) {
    rater = new Rater({ store: await rt.store(), queue, ownsQueue: rt.ownsQueue, repo: rt.repo, dataDir: rt.dataDir, log: rt.log }, raterOptionsFromEnv())
    rater.on('outcome', (o: BatchOutcome) => {
      if (!mine.delete(o.batchId)) return
      counts.read += o.read
      counts.rated += o.rated
      counts.duplicates += o.duplicates
      counts.rejected += o.rejected
      counts.suspended += o.suspended
      if (done && mine.size === 0) settle?.()
    })
    rater.on('error', (err: unknown) => {
      raterFailure = err
      settle?.()
    })
    await rater.start()
  }
  let read = 0
  opts.onReading?.()
  try {
    for (const file of opts.files) {
      const source = opts.source ?? `csv:${file.replace(/^.*\//, '').replace(/(\.csv)?(\.gz)?$/, '')}`
      const plan = { path: file, source, batchIdPrefix: csvBatchIdPrefix(source, file, runId) }
      const r = await publishCsvFile(plan, (batch) => {
        mine.add(batch.id)
        published++
        return queue.publish(batch).then(() => undefined)
      })
      read += r.read
    }
    if (!rater) return { read, batches: published }
    done = true
    if (mine.size > 0 && raterFailure === undefined) await new Promise<void>((resolve) => (settle = resolve))
    if (raterFailure !== undefined) throw raterFailure
  } finally {
    await rater?.stop()
  }
  return counts
}
