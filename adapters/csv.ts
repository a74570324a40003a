import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, statSync } from 'node:fs'
import { basename, resolve } from 'node:path'
import { createGunzip } from 'node:zlib'
import { ValidationError, type Problem } from '../common/errors.js'
import type { WireRecord } from '../rating-core/record.js'
import { DEFAULT_BATCHING, MicroBatcher, type BatchSink } from './batcher.js'
import { CsvRowParser, type CsvItem } from './csv-parser.js'

/** The CSV columns of CONTRACT §5, plus `dim.<name>` columns for dimensions. */
export const CSV_COLUMNS = ['event_id', 'event_time', 'device_id', 'account_id', 'subscription_id', 'metric', 'quantity'] as const
type CsvColumn = (typeof CSV_COLUMNS)[number]

export interface CsvFileOptions {
  /** Source name of the records (`csv:oct-export`); the dedupe key is (source, event_id). */
  readonly source: string
  /**
   * Renames input columns to canonical ones: `{"ts": "event_time", "region": "dim.region"}`. Unknown
   * columns that are not mapped make the file invalid (exit 2), so a typo never drops data silently.
   */
  readonly columns?: Readonly<Record<string, string>>
}

export interface CsvFileResult {
  /** Data rows read (each became a record or a reject). */
  readonly read: number
}

/**
 * A file's identity for batch ids: path, size and modification time. With a run id, re-ingesting the same
 * file publishes new batch ids (so every row is counted by this run), while the records' (source, event_id)
 * keys are the same, so the rater counts them as duplicates and bills nothing twice.
 */
export function fileFingerprint(path: string): string {
  const st = statSync(path)
  return createHash('sha1').update(resolve(path)).update(`\u0000${st.size}\u0000${st.mtimeMs}`).digest('hex').slice(0, 16)
}

/**
 * Checks a header row and returns, per column index, the canonical field or `dim.<name>` it fills.
 * Throws ValidationError naming every problem (unknown columns, duplicates, missing required ones).
 */
export function mapHeader(header: readonly string[], file: string, columns: Readonly<Record<string, string>> = {}): string[] {
  const problems: Problem[] = []
  const fields = header.map((raw, i) => {
    const name = raw.trim().replace(/^\uFEFF/, '')
    const target = columns[name] ?? name
    if (!(CSV_COLUMNS as readonly string[]).includes(target) && !/^dim\.[^\s]+$/.test(target)) {
      problems.push({ path: `${file}:1 column ${i + 1}`, message: `unknown column "${name}" (expected ${CSV_COLUMNS.join(', ')} or dim.<name>; or map it in the adapter's "columns")` })
    }
    return target
  })
  const seen = new Set<string>()
  fields.forEach((f, i) => {
    if (seen.has(f)) problems.push({ path: `${file}:1 column ${i + 1}`, message: `column "${f}" appears twice` })
    seen.add(f)
  })
  for (const req of ['event_time', 'metric', 'quantity'] as const) {
    if (!seen.has(req)) problems.push({ path: `${file}:1`, message: `required column "${req}" is missing` })
  }
  if (!seen.has('device_id') && !seen.has('account_id') && !seen.has('subscription_id')) {
    problems.push({ path: `${file}:1`, message: 'no owner column: need at least one of device_id, account_id, subscription_id' })
  }
  if (problems.length) throw new ValidationError(`CSV header of ${file}`, problems)
  return fields
}

/**
 * Streams one CSV file (gzip when it ends in `.gz`) into the batcher: a 1 GB file never sits in memory,
 * because reading waits whenever the batcher asks for backpressure, and the row parser bounds a row's size
 * (adapters/csv-parser.ts). A row with the wrong number of columns or broken quoting becomes a reject naming
 * file and line; field checks (time, quantity, owner) happen in the rater's validate stage, which keeps the
 * raw row and origin for rejected_usage. A bad header throws ValidationError before anything is published.
 */
export async function ingestCsvFile(
  path: string,
  options: CsvFileOptions,
  batcher: MicroBatcher,
): Promise<CsvFileResult> {
  const name = basename(path)
  let input: NodeJS.ReadableStream = createReadStream(path, { highWaterMark: 1 << 16 })
  if (path.endsWith('.gz')) input = input.pipe(createGunzip())
  // Decoded here rather than per chunk: the stream's decoder keeps a UTF-8 character split across chunks whole.
  input.setEncoding('utf8')
  const parser = new CsvRowParser()
  const source = options.source
  let shape: RowShape | undefined
  let read = 0
  const take = async (items: CsvItem[]): Promise<void> => {
    for (const item of items) {
      if (!shape) {
        if (!item.ok) throw new ValidationError(`CSV header of ${name}`, [{ path: `${name}:${item.line}`, message: item.error }])
        shape = rowShape(mapHeader(item.fields, name, options.columns))
        continue
      }
      read++
      const origin = `${name}:${item.line}`
      let wait: Promise<void> | undefined
      if (!item.ok) wait = batcher.add({ reject: { source, raw: item.raw, origin, reason: item.error } })
      else if (item.fields.length !== shape.width) {
        wait = batcher.add({ reject: { source, raw: item.raw, origin, reason: `has ${item.fields.length} columns, the header has ${shape.width}` } })
      } else wait = batcher.add({ record: toRecord(item.fields, item.raw, origin, source, shape) })
      if (wait) await wait
    }
  }
  for await (const chunk of input as AsyncIterable<string>) await take(parser.push(chunk))
  await take(parser.end())
  if (!shape) throw new ValidationError(`CSV file ${name}`, [{ path: `${name}:1`, message: 'the file is empty: a header row is required' }])
  return { read }
}

/** Where each canonical field sits in a row (-1: no such column), from the mapped header. */
interface RowShape {
  readonly width: number
  readonly eventId: number
  readonly eventTime: number
  readonly device: number
  readonly account: number
  readonly subscription: number
  readonly metric: number
  readonly quantity: number
  readonly dims: ReadonlyArray<readonly [number, string]>
}

function rowShape(fields: readonly string[]): RowShape {
  const at = (c: CsvColumn) => fields.indexOf(c)
  const dims: Array<[number, string]> = []
  fields.forEach((f, i) => {
    if (f.startsWith('dim.')) dims.push([i, f.slice(4)])
  })
  return {
    width: fields.length,
    eventId: at('event_id'),
    eventTime: at('event_time'),
    device: at('device_id'),
    account: at('account_id'),
    subscription: at('subscription_id'),
    metric: at('metric'),
    quantity: at('quantity'),
    dims,
  }
}

/** One row as a WireRecord; an empty cell is an absent field. */
function toRecord(row: readonly string[], raw: string, origin: string, source: string, s: RowShape): WireRecord {
  const cell = (i: number): string | undefined => (i < 0 ? undefined : row[i] || undefined)
  const rec: WireRecord = {
    // No event id in the file: a content hash of the row, so the same row sent twice is one event.
    event_id: cell(s.eventId) ?? createHash('sha1').update(source).update('\u0000').update(raw).digest('hex'),
    source,
    event_time: cell(s.eventTime) ?? '',
    metric: cell(s.metric) ?? '',
    quantity: cell(s.quantity) ?? '',
    raw,
    origin,
  }
  const device = cell(s.device), account = cell(s.account), sub = cell(s.subscription)
  if (device !== undefined) rec.device_id = device
  if (account !== undefined) rec.account_id = account
  if (sub !== undefined) rec.subscription_id = sub
  if (s.dims.length) {
    const d: Record<string, string> = {}
    for (const [i, k] of s.dims) if (row[i]) d[k] = row[i]!
    rec.dimensions = d
  }
  return rec
}

/** One CSV file to publish: the file, the source its records carry, the prefix of its batch ids. */
export interface CsvPublishPlan extends CsvFileOptions {
  readonly path: string
  /**
   * `<source>:<file fingerprint>:<run id>:` (csvBatchIdPrefix); batch n of the file is this prefix and n. A caller
   * waiting for the batches' outcomes knows them by it before the first is published.
   */
  readonly batchIdPrefix: string
}

/** The batch id prefix of one run over one file: see CsvPublishPlan. Reads the file's fingerprint (stat). */
export function csvBatchIdPrefix(source: string, path: string, runId: string): string {
  return `${source}:${fileFingerprint(path)}:${runId}:`
}

/**
 * Streams one file into micro-batches (DEFAULT_BATCHING) and hands them to `sink`; resolves when every batch is
 * stored, with the rows read and the batches published. A bad header throws ValidationError before any batch.
 */
export async function publishCsvFile(plan: CsvPublishPlan, sink: BatchSink): Promise<CsvFileResult & { readonly batches: number }> {
  const batcher = new MicroBatcher(sink, { ...DEFAULT_BATCHING, batchId: (seq) => `${plan.batchIdPrefix}${seq}` })
  const r = await ingestCsvFile(plan.path, plan, batcher)
  await batcher.flush()
  return { read: r.read, batches: batcher.batches }
}

/** A new run id: every ingest run publishes its own batch ids. */
export function newRunId(): string {
  return randomBytes(6).toString('hex')
}
