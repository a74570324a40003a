import { existsSync, realpathSync, statSync } from 'node:fs'
import { csvBatchIdPrefix, csvFileProblems, defaultCsvSource, newRunId, publishCsvFile } from '../adapters/index.js'
import { ValidationError, type Problem } from '../common/errors.js'
import { SOURCE_NAME, SOURCE_RULE, sourceHint } from '../adapters/config.js'
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
  /** checkIngest has passed these options already (the CLI checks before it opens the data directory). */
  checked?: boolean
}

/**
 * What `ingest csv` refuses before it opens anything: no file, a bad --source, and every file first (there, readable, a
 * good header, a source it may have; gzip whole), so a bad file named after a good one exits 2, naming every problem,
 * before anything is published; with --wait, the rater's RATEFLOW_* knobs. Throws bad usage or a ValidationError.
 */
export async function checkIngest(opts: IngestOptions): Promise<void> {
  if (opts.files.length === 0) throw usage('ingest csv: give at least one FILE')
  if (opts.source !== undefined && !SOURCE_NAME.test(opts.source)) {
    // As for every adapter's source: half of every event's dedupe key.
    throw usage(`ingest csv: --source ${opts.source === '' ? 'must not be empty' : JSON.stringify(opts.source)}: ${sourceHint('csv:oct-export')}`)
  }
  const problems: Problem[] = []
  /** Default source → the first file given that has it, and that file's identity (realpath). */
  const bySource = new Map<string, { file: string; real: string }>()
  for (const file of opts.files) {
    const stat = existsSync(file) ? statSync(file) : undefined
    if (!stat?.isFile()) {
      problems.push({ path: file, message: stat === undefined ? 'no such file' : stat.isDirectory() ? 'is a directory, not a CSV file' : 'is not a regular file' })
      continue
    }
    if (opts.source === undefined) {
      const source = defaultCsvSource(file)
      if (!SOURCE_NAME.test(source)) {
        problems.push({ path: file, message: `its default source would be ${JSON.stringify(source)}, and a source ${SOURCE_RULE}: give --source` })
      }
      // Two different files of one name (jan/usage.csv, feb/usage.csv) would share a default source, and the second's
      // events whose ids the first has would be counted as duplicates, never billed (exit 0, a warning naming no file).
      // One file named twice is read twice, as documented: its second reading counts duplicates.
      const real = realpathSync(file)
      const first = bySource.get(source)
      if (first === undefined) bySource.set(source, { file, real })
      else if (first.real !== real) {
        problems.push({
          path: file,
          message:
            `its default source ${JSON.stringify(source)} is also that of ${first.file}, another file: an event of this one with an event_id the ` +
            `other has would be counted as a duplicate and not billed. Give each file its own --source (one command each), or --source ` +
            `for both when their ids are unique across them`,
        })
      }
    }
    // Named as given (the CSV inbox names a file by its name alone): two files of one name are told apart.
    problems.push(...(await csvFileProblems(file, { name: file, mappable: false })))
  }
  if (problems.length) throw new ValidationError('ingest csv', problems)
  if (opts.wait) raterOptionsFromEnv()
}

/**
 * `rateflow ingest csv FILE... [--source NAME] [--wait]`.
 *
 * Publishes each file's rows to JetStream in micro-batches. With --wait this process also runs the rater
 * until every batch it published has an outcome, and returns the counts. Without it, the batches wait in
 * JetStream for a rater (`rateflow run`, or the next `ingest --wait`), and the publish counts are returned.
 */
export async function ingestCsv(rt: Runtime, opts: IngestOptions): Promise<IngestCounts | { read: number; batches: number }> {
  if (!opts.checked) await checkIngest(opts)
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
      // Nothing this process publishes now would be rated by it: publishes waiting for room in the stream stop waiting.
      queue.stopRetrying()
      settle?.()
    })
    await rater.start()
  }
  let read = 0
  opts.onReading?.()
  try {
    for (const [i, file] of opts.files.entries()) {
      const source = opts.source ?? defaultCsvSource(file)
      // The file's place on the command line is part of its batch ids: the same file named twice is read twice,
      // and its second reading counts duplicates, instead of JetStream dropping its batches as repeats of the first.
      const plan = { path: file, source, batchIdPrefix: csvBatchIdPrefix(source, file, `${runId}.${i}`), maxBatchBytes: queue.maxBatchBytes }
      const r = await publishCsvFile(plan, (batch) => {
        // The rater failed (a full disk, say): the file stops here, and the command exits with the rater's error.
        if (raterFailure !== undefined) return Promise.reject(raterFailure)
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
    // Held usage the guiding data owns now (an apply beside this process leaves its release to this rater) is released
    // whole before the stop, which would end it between pages.
    await rater.settleReleases()
    if (raterFailure !== undefined) throw raterFailure
  } finally {
    await rater?.stop()
  }
  if (counts.duplicates > 0 && opts.source === undefined) {
    // A default source is the file's name: a different file of the same name (a monthly usage.csv whose ids start
    // again) would be counted as duplicates of the earlier one and never billed. Say so where the user looks; an id
    // repeated within the file counts alike, and the outcome does not tell the two apart, so the warning names both.
    rt.log.warn(
      { duplicates: counts.duplicates },
      'ingest csv: some events were duplicates: their id under the same source was ingested before, or appears earlier in the same file; ' +
        'each file\'s default source is csv:<file name>, so if a different file with the same name was ingested before, this one needs its own --source',
    )
  }
  return counts
}
