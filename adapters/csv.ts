import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, statSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { basename, resolve } from 'node:path'
import { createGunzip } from 'node:zlib'
import { ValidationError, type Problem } from '../common/errors.js'
import type { WireRecord } from '../rating-core/record.js'
import { DEFAULT_BATCHING, MicroBatcher, type BatchSink } from './batcher.js'
import { CsvRowParser, type CsvItem } from './csv-parser.js'
import { EscapingUtf8Decoder, firstInvalidByte, hasInvalidBytes, originalBytes } from './utf8-text.js'
import { reservedDimensionName } from './wire.js'

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
 * Throws ValidationError naming every problem (unknown columns, duplicates, missing required ones) at `line`, the
 * header's physical line (blank lines before it are skipped).
 */
export function mapHeader(header: readonly string[], file: string, columns: Readonly<Record<string, string>> = {}, line = 1, mappable = true): string[] {
  const problems: Problem[] = []
  const fields = header.map((raw, i) => {
    const name = raw.trim().replace(/^\uFEFF/, '')
    // Own keys only: a header named `constructor` or `toString` found Object.prototype's function as its target.
    const target = Object.hasOwn(columns, name) ? columns[name]! : name
    const reserved = target.startsWith('dim.') ? reservedDimensionName(target.slice(4)) : undefined
    if (!(CSV_COLUMNS as readonly string[]).includes(target) && !/^dim\.[^\s]+$/.test(target)) {
      const fix = mappable ? `or map it in the adapter's "columns"` : `ingest csv maps no column: rename it, or map it in the "columns" of a CSV inbox of rateflow run`
      problems.push({ path: `${file}:${line} column ${i + 1}`, message: `unknown column "${name}" (expected ${CSV_COLUMNS.join(', ')} or dim.<name>; ${fix})` })
    } else if (reserved !== undefined) {
      problems.push({ path: `${file}:${line} column ${i + 1}`, message: reserved })
    }
    return target
  })
  const seen = new Set<string>()
  fields.forEach((f, i) => {
    if (seen.has(f)) problems.push({ path: `${file}:${line} column ${i + 1}`, message: `column "${f}" appears twice` })
    seen.add(f)
  })
  for (const req of ['event_time', 'metric', 'quantity'] as const) {
    if (!seen.has(req)) problems.push({ path: `${file}:${line}`, message: `required column "${req}" is missing` })
  }
  if (!seen.has('device_id') && !seen.has('account_id') && !seen.has('subscription_id')) {
    problems.push({ path: `${file}:${line}`, message: 'no owner column: need at least one of device_id, account_id, subscription_id' })
  }
  if (problems.length) throw new ValidationError(`CSV header of ${file}`, problems)
  return fields
}

/** Whether a file is read as gzip: by its name, in any case (exports from Windows tools say `.CSV.GZ`). */
function isGzipName(path: string): boolean {
  return /\.gz$/i.test(path)
}

/** The text of a CSV file (gunzipped when it ends in `.gz`), chunk by chunk, invalid UTF-8 bytes escaped (utf8-text.ts). */
function openCsvText(path: string): { chunks: AsyncIterable<Buffer>; decoder: EscapingUtf8Decoder; close(): void } {
  const file = createReadStream(path, { highWaterMark: 1 << 16 })
  const input: Readable = isGzipName(path) ? file.pipe(createGunzip()) : file
  // The gunzip stream does not end the file stream it reads when it fails: close both.
  const close = () => {
    input.destroy()
    file.destroy()
  }
  if (input !== file) file.on('error', (err) => input.destroy(err))
  return { chunks: input as AsyncIterable<Buffer>, decoder: new EscapingUtf8Decoder(), close }
}

/** A zlib failure (not gzip, corrupt or cut short): zlib's errors carry a `Z_…` code. */
function isZlibError(err: unknown): err is NodeJS.ErrnoException {
  return typeof (err as NodeJS.ErrnoException | undefined)?.code === 'string' && (err as NodeJS.ErrnoException).code!.startsWith('Z_')
}

/** How csvFileProblems names and reads a file. */
export interface CsvCheckOptions {
  /** The adapter's column mapping (a CSV inbox's "columns"). */
  readonly columns?: Readonly<Record<string, string>> | undefined
  /** The file's name in the problems: its base name unless given (`ingest csv` gives the path as the user wrote it). */
  readonly name?: string | undefined
  /** Whether the caller can map columns, so an unknown column's message may suggest it (`ingest csv` cannot). */
  readonly mappable?: boolean | undefined
}

/**
 * The problems of a CSV file, found without publishing anything: none when the file can be ingested. `ingest csv`
 * checks every file first, so a bad second file no longer leaves the first one half-published when the command
 * exits 2, and the CSV inbox moves a bad file to failed/ before any of it is rated. Covers a missing or empty
 * header, everything mapHeader checks, and for a `.gz` file that it decompresses whole: gzip checks its data only
 * at the end of the stream, so a corrupt file whose damage is found there has already handed out damaged rows
 * (seen: a changed byte rated as another quantity and another event id). That check reads the whole file once more.
 */
export async function csvFileProblems(path: string, options: CsvCheckOptions = {}): Promise<Problem[]> {
  const { columns, name = basename(path), mappable = true } = options
  const { chunks, decoder, close } = openCsvText(path)
  const parser = new CsvRowParser()
  const gz = isGzipName(path)
  let first: CsvItem | undefined
  try {
    for await (const chunk of chunks) {
      // The header is all a plain file needs; a gzip file is read to its end, where its check is, unparsed.
      if (first) continue
      first = parser.push(decoder.write(chunk))[0]
      if (first && !gz) break
    }
    first ??= parser.push(decoder.end())[0] ?? parser.end()[0]
  } catch (err) {
    if (isZlibError(err)) return [{ path: name, message: `not readable as gzip: ${err.message} (nothing of it was ingested)` }]
    return [{ path: name, message: `cannot be read: ${(err as Error).message}` }]
  } finally {
    close()
  }
  try {
    headerFields(first, name, columns, mappable)
  } catch (err) {
    if (err instanceof ValidationError) return [...err.problems]
    throw err
  }
  return []
}

/**
 * The fields of a file's header row (`first`, the file's first item; undefined when the file has none), mapped by
 * mapHeader. Throws ValidationError naming the problem: no header (an empty file), a header the parser could not read,
 * a header with bytes that are not UTF-8, or what mapHeader finds.
 */
function headerFields(first: CsvItem | undefined, name: string, columns: Readonly<Record<string, string>> | undefined, mappable = true): string[] {
  if (!first) throw new ValidationError(`CSV file ${name}`, [{ path: `${name}:1`, message: 'the file is empty: a header row is required' }])
  if (!first.ok) throw new ValidationError(`CSV header of ${name}`, [{ path: `${name}:${first.line}`, message: first.error }])
  const at = firstInvalidByte(first.raw)
  if (at !== undefined) {
    const message = `the header is not valid UTF-8 (byte 0x${at.byte.toString(16)} at character ${at.position})`
    throw new ValidationError(`CSV header of ${name}`, [{ path: `${name}:${first.line}`, message }])
  }
  return mapHeader(first.fields, name, columns, first.line, mappable)
}

/**
 * A reject's raw text: the row as read, or `base64:` and its exact bytes when it holds bytes that are not UTF-8
 * (the same form as the push adapters' rawText), so rejected_usage keeps the input exactly either way.
 */
function rejectRaw(raw: string): string {
  return hasInvalidBytes(raw) ? `base64:${originalBytes(raw).toString('base64')}` : raw
}

/**
 * Streams one CSV file (gzip when it ends in `.gz`) into the batcher: a 1 GB file never sits in memory,
 * because reading waits whenever the batcher asks for backpressure, and the row parser bounds a row's size
 * (adapters/csv-parser.ts). A row with the wrong number of columns, broken quoting or bytes that are not UTF-8
 * becomes a reject naming file and line; field checks (time, quantity, owner) happen in the rater's validate
 * stage, which keeps the raw row and origin for rejected_usage. A bad header throws ValidationError before
 * anything is published. Gzip data that is corrupt or cut short part way ends the file with one reject that says
 * so and holds the incomplete row: the rows before it are ingested, none is rated from a cut row.
 */
export async function ingestCsvFile(
  path: string,
  options: CsvFileOptions,
  batcher: MicroBatcher,
): Promise<CsvFileResult> {
  const name = basename(path)
  const { chunks, decoder, close } = openCsvText(path)
  const parser = new CsvRowParser()
  const source = options.source
  let shape: RowShape | undefined
  let read = 0
  const take = async (items: CsvItem[]): Promise<void> => {
    for (const item of items) {
      if (!shape) {
        shape = rowShape(headerFields(item, name, options.columns))
        continue
      }
      read++
      const origin = `${name}:${item.line}`
      let wait: Promise<void> | undefined
      // The row's exact bytes: for a quoted row, its text as read, not the fields written back. The offset named is
      // of those bytes, as raw holds them (it was of the fields written back, a character or more off).
      const exact = decoder.invalidSeen ? ((item.ok ? item.exact : undefined) ?? item.raw) : undefined
      const invalid = exact !== undefined ? firstInvalidByte(exact) : undefined
      if (invalid !== undefined) {
        const offset = originalBytes(exact!.slice(0, invalid.position - 1)).length
        const reason =
          `byte 0x${invalid.byte.toString(16).padStart(2, '0')} at offset ${offset} of the row is not valid UTF-8` +
          `${item.ok ? '' : ` (and: ${item.error})`}; raw holds the row's bytes in base64`
        wait = batcher.add({ reject: { source, raw: rejectRaw(exact!), origin, reason } })
      } else if (!item.ok) wait = batcher.add({ reject: { source, raw: item.raw, origin, reason: item.error } })
      else if (item.fields.length !== shape.width) {
        wait = batcher.add({ reject: { source, raw: item.raw, origin, reason: `has ${item.fields.length} columns, the header has ${shape.width}` } })
      } else wait = batcher.add({ record: toRecord(item.fields, item.raw, origin, source, shape) })
      if (wait) await wait
    }
  }
  try {
    for await (const chunk of chunks) await take(parser.push(decoder.write(chunk)))
  } catch (err) {
    if (!isZlibError(err) || !shape) throw err
    // Cut or corrupt gzip after the header: what was read stands; the row in progress is incomplete and must not
    // be rated (a cut quantity is still a number), so it is one reject with the reason, and the file ends here.
    const line = parser.pendingLine
    const raw = parser.abandon()
    read++
    await batcher.add({
      reject: {
        source,
        raw: rejectRaw(raw),
        origin: `${name}:${line}`,
        reason: `the gzip data is corrupt or cut short here (${err.message}): the file ends at this row, which is incomplete${raw === '' ? ' (no bytes of it were readable)' : ''}; the rows before it were read`,
      },
    })
    return { read }
  } finally {
    close()
  }
  await take(parser.push(decoder.end()))
  await take(parser.end())
  // No header at all (an empty file): headerFields throws the problem.
  if (!shape) headerFields(undefined, name, options.columns)
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
  /** The most bytes a batch's encoding may take (Queue.maxBatchBytes); default DEFAULT_BATCHING.maxBytes. */
  readonly maxBatchBytes?: number
}

/** The source `ingest csv` gives a file's records without --source: `csv:` and the file's name without `.csv`/`.gz`. */
export function defaultCsvSource(path: string): string {
  // `.gz` in any case, as it is read (USAGE.CSV.GZ is gunzipped), so a file and its gzipped copy share a source and
  // their events dedupe; `.csv` only as written, as it always was, so files ingested before keep their sources.
  return `csv:${basename(path).replace(/\.gz$/i, '').replace(/\.csv$/, '')}`
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
  // No cut by time: a file's batches are the same whatever the machine's speed. A rater folds a batch's events in event
  // time order when a percentage charge has free units (pipeline/rater.ts foldInStoredOrder), so where a batch ends
  // decides per-event amounts; a 50 ms cut while the reader waited for the queue made two runs of one file differ.
  const batcher = new MicroBatcher(sink, {
    ...DEFAULT_BATCHING,
    maxDelayMs: Number.POSITIVE_INFINITY,
    maxBytes: plan.maxBatchBytes ?? DEFAULT_BATCHING.maxBytes,
    batchId: (seq) => `${plan.batchIdPrefix}${seq}`,
  })
  const r = await ingestCsvFile(plan.path, plan, batcher)
  await batcher.flush()
  return { read: r.read, batches: batcher.batches }
}

/** A new run id: every ingest run publishes its own batch ids. */
export function newRunId(): string {
  return randomBytes(6).toString('hex')
}
