import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ValidationError, type Problem } from '../common/errors.js'
import type { Logger } from '../common/logger.js'
import type { BatchSink } from './batcher.js'
import { SOURCE_NAME, sourceHint } from './config.js'
import { CSV_COLUMNS, csvBatchIdPrefix, csvFileProblems, newRunId, publishCsvFile } from './csv.js'
import { jsonMemberPath } from '../common/strings.js'

export interface CsvInboxOptions {
  readonly watch: string
  readonly source: string
  readonly columns?: Readonly<Record<string, string>>
}

export interface CsvInboxStats {
  files: number
  failedFiles: number
  rows: number
  batches: number
  /**
   * Entries skipped now, each with one warning in the log: a symbolic link, an entry that is no regular file or cannot
   * be read, and processing/, done/ or failed/ when one is a link (then the inbox reads nothing). Above 0, usage
   * dropped in the folder may be waiting: /v1/stats shows it, where the warning may have left the log.
   */
  skippedEntries: number
}

/** Checks the `csv` entries of rateflow.json's adapters section; returns the problems found (path-located). */
export function checkCsvInboxEntries(entries: readonly unknown[], path = '$.adapters.csv'): { options: CsvInboxOptions[]; problems: Problem[] } {
  const problems: Problem[] = []
  const options: CsvInboxOptions[] = []
  entries.forEach((e, i) => {
    const p = `${path}[${i}]`
    if (typeof e !== 'object' || e === null || Array.isArray(e)) {
      problems.push({ path: p, message: 'must be an object' })
      return
    }
    const o = e as Record<string, unknown>
    let ok = true
    for (const k of Object.keys(o)) {
      if (!['watch', 'source', 'columns'].includes(k)) {
        problems.push({ path: jsonMemberPath(p, k), message: 'unknown key' })
        ok = false
      }
    }
    for (const k of ['watch', 'source'] as const) {
      if (o[k] === undefined) problems.push({ path: `${p}.${k}`, message: 'is required' }), (ok = false)
      else if (typeof o[k] !== 'string' || o[k] === '') problems.push({ path: `${p}.${k}`, message: 'must be a non-empty string' }), (ok = false)
    }
    // The same rule as the MQTT and syslog sources: it is half of every event's dedupe key, and shows in every row.
    if (typeof o.source === 'string' && o.source !== '' && !SOURCE_NAME.test(o.source)) {
      problems.push({ path: `${p}.source`, message: sourceHint('csv:drop') })
      ok = false
    }
    if (o.columns !== undefined) {
      if (typeof o.columns !== 'object' || o.columns === null || Array.isArray(o.columns)) {
        problems.push({ path: `${p}.columns`, message: 'must be an object of column name → canonical field' })
        ok = false
      } else {
        for (const [k, v] of Object.entries(o.columns as Record<string, unknown>)) {
          if (typeof v !== 'string') problems.push({ path: jsonMemberPath(`${p}.columns`, k), message: 'must be a string' }), (ok = false)
          // Checked here too, not only per file: a typo would otherwise send every dropped file to failed/.
          else if (!(CSV_COLUMNS as readonly string[]).includes(v) && !/^dim\.\S+$/.test(v)) {
            problems.push({ path: jsonMemberPath(`${p}.columns`, k), message: `must be one of ${CSV_COLUMNS.join(', ')} or dim.<name>, got ${JSON.stringify(v)}` })
            ok = false
          }
        }
      }
    }
    if (ok) options.push({ watch: o.watch as string, source: o.source as string, ...(o.columns ? { columns: o.columns as Record<string, string> } : {}) })
  })
  return { options, problems }
}

/**
 * How often in a row a file may fail for a reason that is neither a bad file nor the queue before it goes to failed/:
 * enough for a passing one (a read error, no file descriptor free) to clear, few enough that a file that always fails
 * (a defect: a header named `constructor` once threw a TypeError) leaves within a few scans.
 */
const UNEXPECTED_FAILURE_LIMIT = 3

/**
 * Watches a folder for `*.csv` / `*.csv.gz` files (polling every 500 ms). Each file is claimed into processing/
 * (see scan), published in micro-batches and, once every batch is stored, moved to `done/`; a file with a bad header goes to
 * `failed/` with `<name>.error.txt` beside it, and so does one that fails for another reason of its own
 * UNEXPECTED_FAILURE_LIMIT times in a row. A file the queue does not take stays, and is retried.
 */
export class CsvInbox {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = false
  private readonly counts: Omit<CsvInboxStats, 'skippedEntries'> = { files: 0, failedFiles: 0, rows: 0, batches: 0 }
  /** Failures in a row of a file, by name, for errors that are neither a bad file nor the queue's. */
  private readonly failures = new Map<string, number>()
  /** Entries skipped because they cannot be stat'ed or are no regular file, warned about once each. */
  private readonly unreadable = new Set<string>()

  constructor(
    private readonly options: CsvInboxOptions,
    private readonly deps: {
      sink: BatchSink
      logger: Logger
      pollMs?: number
      /** The most bytes a batch's encoding may take (Queue.maxBatchBytes); default DEFAULT_BATCHING.maxBytes. */
      maxBatchBytes?: number
    },
  ) {}

  get stats(): CsvInboxStats {
    return { ...this.counts, skippedEntries: this.unreadable.size }
  }

  async start(): Promise<void> {
    mkdirSync(this.options.watch, { recursive: true })
    this.schedule(0)
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.running = this.scan()
        .catch((err) => this.deps.logger.error({ err, source: this.options.source }, 'CSV inbox scan failed'))
        .finally(() => {
          this.running = undefined
          this.schedule(this.deps.pollMs ?? 500)
        })
    }, ms)
  }

  /**
   * 1. Files left in processing/ (a crash or kill while one was read, or a queue that refused it) are read again
   *    first: dedupe is on (source, event_id), and a row without an id has a content id of source and row, and a
   *    reject a key of file name, line and row, none of which depends on the folder, so the rows read before count as
   *    duplicates, each rated once.
   * 2. Then each file of the folder, in name order, is claimed by renaming it into processing/, read there, and moved
   *    from there to done/ or failed/. Reading one path and moving another by name once moved a file renamed into the
   *    folder under the same name meanwhile to done/, unread.
   */
  private async scan(): Promise<void> {
    const dir = this.options.watch
    if (!existsSync(dir)) return
    const [unsafe] = unsafeMoveFolders(dir)
    for (const sub of MOVE_FOLDERS) {
      if (sub === unsafe?.sub) break
      this.unreadable.delete(`${sub}/`)
    }
    if (unsafe !== undefined) {
      this.skipped(`${unsafe.sub}/`, undefined, `CSV inbox: ${unsafe.sub} in the folder is ${unsafe.link ? 'a symbolic link' : 'not a folder'}: nothing is read or moved until it is a folder of its own`)
      return
    }
    const processing = join(dir, PROCESSING)
    const entries = readdirSync(dir)
    const claimed = existsSync(processing) ? readdirSync(processing) : []
    // A name that is gone may warn again when it comes back broken.
    const present = new Set([...entries, ...claimed.map((n) => `${PROCESSING}/${n}`)])
    for (const n of this.unreadable) if (!present.has(n)) this.unreadable.delete(n)
    for (const n of this.failures.keys()) if (!present.has(`${PROCESSING}/${n}`)) this.failures.delete(n)
    const csvFiles = (names: string[], sub?: string) =>
      names
        // Any case: a `.CSV` export was left in the folder without a word.
        .filter((n) => /\.csv(\.gz)?$/i.test(n))
        .filter((n) => this.isFile(dir, sub ? `${sub}/${n}` : n))
        .sort()
    for (const name of csvFiles(claimed, PROCESSING)) {
      if (this.stopped) return
      await this.ingest(name)
    }
    for (const name of csvFiles(entries)) {
      if (this.stopped) return
      // Checked again once claimed: the entry checked may have been swapped for a link before the rename moved it.
      if (this.claim(name) && this.isFile(dir, `${PROCESSING}/${name}`)) await this.ingest(name)
    }
  }

  /**
   * Renames `name` into processing/; false when it cannot be now. A file of that name still there (one that failed and
   * waits to be tried again) is never replaced: this one waits in the folder until that one leaves.
   */
  private claim(name: string): boolean {
    const processing = join(this.options.watch, PROCESSING)
    const target = join(processing, name)
    if (existsSync(target)) return false
    try {
      mkdirSync(processing, { recursive: true })
      renameSync(join(this.options.watch, name), target)
      return true
    } catch (err) {
      // Gone since the listing: nothing to read. Anything else (no permission) would fail the same way at every scan.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.skipped(name, err, 'CSV inbox: cannot move the file into processing/; skipped')
      return false
    }
  }

  /**
   * Whether an entry is a file to read. One that cannot be stat'ed (a file removed since readdir) is skipped, with a
   * warning once per name: a throw here stopped the scan, and so every other file, for as long as the entry stayed.
   * So is one that is no regular file (a directory named `x.csv`), which was skipped without a word, and a symbolic
   * link, which is not followed: whoever may write the folder (an export user) linked `x.csv` to a file only this
   * process could read, and its lines came back in failed/'s error file and in rejected_usage, for anyone to read.
   */
  private isFile(dir: string, name: string): boolean {
    // `name` is relative to the folder (processing/ files are `processing/<name>`).
    try {
      const st = lstatSync(join(dir, name))
      if (st.isSymbolicLink()) {
        this.skipped(name, undefined, 'CSV inbox: this entry is a symbolic link, which the inbox does not follow (put the file itself in the folder); skipped')
        return false
      }
      if (!st.isFile()) {
        this.skipped(name, undefined, 'CSV inbox: this entry is not a regular file (a directory?); skipped')
        return false
      }
      this.unreadable.delete(name)
      return true
    } catch (err) {
      this.skipped(name, err, 'CSV inbox: cannot read this entry (a dangling symlink?); skipped')
      return false
    }
  }

  /** Warns that entry `name` is skipped, once while it stays unreadable (a scan runs every 500 ms). */
  private skipped(name: string, err: unknown, message: string): void {
    if (this.unreadable.has(name)) return
    this.unreadable.add(name)
    this.deps.logger.warn({ source: this.options.source, file: name, err }, message)
  }

  /** Reads processing/`name` (claimed), then moves it to done/ or failed/, or leaves it there to be read again. */
  private async ingest(name: string): Promise<void> {
    const { watch, source, columns } = this.options
    const path = join(watch, PROCESSING, name)
    // Set once the queue refused a batch: then the error, whatever the batcher makes of it, is the queue's, not the file's.
    let queueFailed = false
    let published = 0
    try {
      const plan = {
        path,
        source,
        ...(columns ? { columns } : {}),
        ...(this.deps.maxBatchBytes !== undefined ? { maxBatchBytes: this.deps.maxBatchBytes } : {}),
        batchIdPrefix: csvBatchIdPrefix(source, path, newRunId()),
      }
      // A bad file (header, gzip that does not decompress whole) goes to failed/ before any of it is published.
      const problems = await csvFileProblems(path, { columns })
      if (problems.length) throw new ValidationError(`CSV file ${name}`, problems)
      const r = await publishCsvFile(plan, async (batch) => {
        this.counts.batches++
        try {
          await this.deps.sink(batch)
        } catch (err) {
          queueFailed = true
          throw err
        }
        published++
      })
      this.counts.rows += r.read
      this.counts.files++
      this.failures.delete(name)
      moveTo(watch, 'done', name)
    } catch (err) {
      if (err instanceof ValidationError) {
        this.failures.delete(name)
        this.fail(name, err.message)
        this.deps.logger.warn({ source, file: name }, 'CSV inbox: invalid file moved to failed/')
        return
      }
      // The queue is down or full: every file would fail alike, so the scan stops here and the next one retries this
      // file first; nothing is moved to failed/ for an outage.
      if (queueFailed) throw err
      // Anything else is this file's own (a defect, a read error): retried a few times in case it passes, and never
      // blocking the files after it, which the scan goes on with.
      const failures = (this.failures.get(name) ?? 0) + 1
      if (failures < UNEXPECTED_FAILURE_LIMIT) {
        this.failures.set(name, failures)
        this.deps.logger.error({ err, source, file: name, failures }, 'CSV inbox: reading the file failed; it is tried again, the next files go on')
        return
      }
      this.failures.delete(name)
      this.fail(
        name,
        `CSV file ${name}: could not be ingested, ${failures} times in a row: ${err instanceof Error ? err.message : String(err)}\n` +
          (published > 0
            ? `  ${published} batch${published === 1 ? ' was' : 'es were'} published before the failure (in the last attempt); dropping the file again once the cause is fixed bills nothing twice: its rows read already count as duplicates\n`
            : '  nothing of it was published in the last attempt\n') +
          (err instanceof Error && err.stack ? `${err.stack}\n` : ''),
      )
      this.deps.logger.error({ err, source, file: name, failures }, 'CSV inbox: the file failed again and again; moved to failed/')
    }
  }

  /**
   * Moves `name` to failed/ with `<name>.error.txt` beside it holding `text`. The reason is there, whole, before the
   * file: written aside and renamed in first, so whoever sees the file in failed/ finds why beside it (it was written
   * after the move, and a reader quick enough found it empty).
   */
  private fail(name: string, text: string): void {
    this.counts.failedFiles++
    moveTo(this.options.watch, 'failed', name, (target) => {
      writeFileSync(`${target}.error.txt.tmp`, text.endsWith('\n') ? text : text + '\n')
      renameSync(`${target}.error.txt.tmp`, `${target}.error.txt`)
    })
  }
}

/** Where a file is read from, once claimed. */
const PROCESSING = 'processing'

/** The folders of the watched folder that files are moved through. */
const MOVE_FOLDERS = [PROCESSING, 'done', 'failed'] as const

/**
 * Those of the folders an inbox moves files through (processing/, done/, failed/, in that order) that stand in
 * `watch` as a symbolic link or as no folder. A link in their place (whoever may write the folder can make one) had
 * every `*.csv` of the link's target read, its lines shown in failed/, and the files moved out of it; the inbox reads
 * and moves nothing while there is one, and `rateflow run` refuses to start with one.
 */
export function unsafeMoveFolders(watch: string): Array<{ sub: (typeof MOVE_FOLDERS)[number]; link: boolean }> {
  const out: Array<{ sub: (typeof MOVE_FOLDERS)[number]; link: boolean }> = []
  for (const sub of MOVE_FOLDERS) {
    let st
    try {
      st = lstatSync(join(watch, sub))
    } catch {
      continue
    }
    if (st.isSymbolicLink() || !st.isDirectory()) out.push({ sub, link: st.isSymbolicLink() })
  }
  return out
}

/**
 * Moves processing/`name` to `sub`/ (done, failed), under another name when `sub` has one of that name already;
 * `before` is called with the path it will have, before it moves.
 */
function moveTo(watch: string, sub: string, name: string, before?: (target: string) => void): string {
  const dir = join(watch, sub)
  mkdirSync(dir, { recursive: true })
  let target = join(dir, name)
  if (existsSync(target)) target = join(dir, `${Date.now()}-${name}`)
  before?.(target)
  renameSync(join(watch, PROCESSING, name), target)
  return target
}
