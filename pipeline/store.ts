import { Readable } from 'node:stream'
import { mkdirSync, rmSync, unlinkSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { DEFAULT_ANALYST_LIMITS, type AnalystLimits } from './analyst-limits.js'
import { isoUtc } from '../common/time.js'
import { readOnlyStatement } from './read-only-sql.js'
import { chString, chTime, tsv } from './tsv.js'

/**
 * The analyst tables of CONTRACT §7 plus the sink's own: `flushes` (its commit log), `flush_intents`,
 * `committed_batches` (which flush committed each batch, by batch id), `rating_checkpoints` and `store_migrations`.
 *
 * Commit protocol (see pipeline/rater.ts): every row carries the `batch_id` it came from; a flush first writes a
 * row in `flush_intents` naming its batches, then its rows, then its row in `flushes`, naming the same batches,
 * which is the commit. Rows whose batch_id no `flushes` row names were written by a flush that crashed before
 * committing; `recover()` deletes them before rating starts (it finds their batches in the intents no commit
 * matches, so a start reads no more than the intents), and JetStream redelivers those batches because they were
 * never acked.
 *
 * ReplacingMergeTree keys are a backstop against a bug, not the dedupe mechanism (the rater's index is).
 *
 * `rating_checkpoints` holds the rater's running totals as of one flush (its `flush_id`; a checkpoint counts once
 * that flush's `flushes` row exists), so a rater starts from the latest one and folds only the rated rows committed
 * after it, not all of history. One partition per checkpoint: an older one is dropped whole once a newer one commits.
 * Only the rater writes rated_usage today; anything else that ever rewrites it must empty this table in the same
 * step, or the next start would fold on totals that no longer match the rows.
 */
export const DDL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS usage_events (
    source LowCardinality(String), event_id String, event_time DateTime64(3, 'UTC'),
    device_id String, account_id String, subscription_id String,
    metric LowCardinality(String), quantity Decimal(38, 9), dimensions Map(String, String),
    received_at DateTime64(3, 'UTC'), batch_id String
  ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(event_time) ORDER BY (source, event_id)`,
  `CREATE TABLE IF NOT EXISTS rated_usage (
    event_id String, source LowCardinality(String), account_id String, subscription_id String,
    plan_id LowCardinality(String), charge_id LowCardinality(String), group_key String,
    metric LowCardinality(String), event_time DateTime64(3, 'UTC'), quantity Decimal(38, 9),
    amount Decimal(38, 9), currency LowCardinality(String), catalog_version LowCardinality(String),
    period_start DateTime64(3, 'UTC'), rated_at DateTime64(3, 'UTC'), batch_id String
  ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(period_start)
    ORDER BY (account_id, period_start, charge_id, source, event_id)`,
  `CREATE TABLE IF NOT EXISTS rejected_usage (
    source LowCardinality(String), raw String, reason String, origin String,
    received_at DateTime64(3, 'UTC'), reject_key String, batch_id String
  ) ENGINE = ReplacingMergeTree ORDER BY (source, reject_key)`,
  `CREATE TABLE IF NOT EXISTS suspended_usage (
    source LowCardinality(String), event_id String, event_time DateTime64(3, 'UTC'),
    device_id String, account_id String, subscription_id String, metric LowCardinality(String),
    quantity Decimal(38, 9), dimensions Map(String, String), raw String, origin String, reason String,
    status Enum8('held' = 1, 'released' = 2), version UInt64, received_at DateTime64(3, 'UTC'), batch_id String
  ) ENGINE = ReplacingMergeTree(version) ORDER BY (source, event_id)`,
  `CREATE TABLE IF NOT EXISTS flushes (
    flush_id String, committed_at DateTime64(3, 'UTC'), batches Array(String),
    rated UInt64, duplicates UInt64, rejected UInt64, suspended UInt64, released UInt64
  ) ENGINE = MergeTree ORDER BY (committed_at, flush_id)`,
  `CREATE TABLE IF NOT EXISTS flush_intents (
    flush_id String, written_at DateTime64(3, 'UTC'), batches Array(String)
  ) ENGINE = MergeTree ORDER BY flush_id`,
  // Which flush committed each batch, keyed by batch id: "is this batch committed" is a lookup in the sort key, where
  // reading `flushes` for it grew with every flush ever committed (~30 ns a flush: ~1 s a question after a year of a
  // `rateflow run` flushing every second). Small granules: a question names up to ~1,000 batches, each read with the
  // granule around it. Written by each flush before its `flushes` row; rows of a flush that never committed are
  // deleted by recover(), so after recover() every row here is of a committed flush.
  `CREATE TABLE IF NOT EXISTS committed_batches (
    batch_id String, flush_id String
  ) ENGINE = MergeTree ORDER BY batch_id SETTINGS index_granularity = 256`,
  // Data migrations done on this store, by name (see migrate()).
  `CREATE TABLE IF NOT EXISTS store_migrations (
    name String, done_at DateTime64(3, 'UTC')
  ) ENGINE = MergeTree ORDER BY name`,
  `CREATE TABLE IF NOT EXISTS rating_checkpoints (
    flush_id String, totals_key String, state String
  ) ENGINE = MergeTree PARTITION BY flush_id ORDER BY totals_key`,
]

/** Tables whose rows carry a batch_id and are rolled back by `recover()`. */
export const FLUSHED_TABLES = ['usage_events', 'rated_usage', 'rejected_usage', 'suspended_usage'] as const
export type FlushedTable = (typeof FLUSHED_TABLES)[number]

/**
 * The batch ids of committed flushes, as a subquery: `batch_id IN (${COMMITTED_BATCHES})` is a committed row. It builds
 * the set of every batch ever committed, so its cost grows with history: a query that runs often, or that needs only
 * a few batches, asks `committedBatches` instead.
 */
export const COMMITTED_BATCHES = 'SELECT arrayJoin(batches) FROM flushes'

/**
 * Which of `batchIds` are committed: named by a `committed_batches` row (a lookup in its sort key per id). The
 * caller runs after recover(), which leaves no row there of a flush that never committed; a flush in flight has
 * written its rows there, and counts as committed, before its `flushes` row (a rater asking about its own in-flight
 * rows would hold their keys in memory anyway, and if that flush fails no later one commits).
 * `rateflow bench history` times it against reading `flushes` for the same answer.
 */
export async function committedBatches(store: Store, batchIds: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>()
  for (const batches of paramChunks(batchIds)) {
    const rows = await store.rows<{ b: string }>('SELECT DISTINCT batch_id AS b FROM committed_batches WHERE batch_id IN {batches:Array(String)}', { batches })
    for (const r of rows) out.add(r.b)
  }
  return out
}

/**
 * Bytes of text at most in one Array(String) query parameter. Past about 1 MB of values a query took seconds to
 * minutes of the engine's CPU (committed_batches asked about 18,000 batch ids of 55 bytes: 9 s; 40,000: 23 s; where
 * 17,000 took 0.2 s): a start reading a page of a source of small batches (syslog's, cut by their 50 ms delay) stalled
 * all rating for 10–14 s a page. Longer lists are asked in parts.
 */
export const MAX_PARAM_BYTES = 256 * 1024

/** `values` in runs of at most `maxBytes` of UTF-8 text each (one value longer than that is a run of its own); none when empty. */
export function paramChunks(values: readonly string[], maxBytes = MAX_PARAM_BYTES): string[][] {
  const out: string[][] = []
  let run: string[] = []
  let bytes = 0
  for (const v of values) {
    const n = Buffer.byteLength(v) + 3 // quotes and comma, as the parameter is written
    if (run.length > 0 && bytes + n > maxBytes) {
      out.push(run)
      run = []
      bytes = 0
    }
    run.push(v)
    bytes += n
  }
  if (run.length > 0) out.push(run)
  return out
}

/** Which of `batchIds` are committed, as `committedBatches` answers it (the reads that need it take one). */
export type CommittedLookup = (store: Store, batchIds: readonly string[]) => Promise<Set<string>>

/** The `committed_batches` rows (TabSeparated) recording that flush `flushId` commits `batchIds`. */
export function committedBatchLines(flushId: string, batchIds: readonly string[]): string {
  const flush = '\t' + tsv(flushId) + '\n'
  let out = ''
  for (const b of batchIds) out += tsv(b) + flush
  return out
}

/**
 * Data migrations, each run once per store (its name in `store_migrations` once done). A crash midway runs it
 * again from the start on the next migrate(), so each must be safe to repeat.
 */
const MIGRATIONS: ReadonlyArray<{ name: string; sql: string }> = [
  {
    // Stores written before committed_batches: index every committed flush's batches. Repeating it only adds
    // duplicate rows, which every read of the table ignores (DISTINCT).
    name: 'committed_batches',
    sql: 'INSERT INTO committed_batches SELECT b, flush_id FROM flushes ARRAY JOIN batches AS b',
  },
]

export type QueryFormat = 'JSONEachRow' | 'CSV' | 'Pretty' | 'PrettyCompact' | 'TabSeparated' | 'TabSeparatedWithNames'

/** Settings for every read: decimals and 64-bit integers as strings, so money never becomes a JS number. */
const READ_SETTINGS = {
  output_format_json_quote_decimals: 1,
  output_format_json_quote_64bit_integers: 1,
} as const

/** The log_comment of every analyst's query. */
const ANALYST_MARK = 'rateflow-analyst'

/**
 * Embedded: analysts' queries waiting for the one running, at most; one more is refused as the store being busy
 * (ServiceUnavailable: exit 1, HTTP 503), where each used to wait, and a page that sent queries in a loop held the
 * process's memory and every later analyst.
 */
export const MAX_WAITING_ANALYST_QUERIES = 16

/** An analyst's query refused or cut because the store is closing (`rateflow run` stopping). */
function stoppingError(): RateflowError {
  return new RateflowError(ErrorCode.ServiceUnavailable, 'the store is closing (rateflow run is stopping): the query did not run')
}

/**
 * Settings of an analyst's read: its limits, times printed as ISO-8601 with their offset (`2026-10-05T11:00:00.000Z`),
 * as CONTRACT gives every time in JSON output (ClickHouse's own form, `2026-10-05 11:00:00.000`, names no zone; the
 * store's internal reads keep it, as they parse it), and read-only. `readonly` comes last: chDB applies the settings
 * as SETs in this order, and after `readonly = 1` no other may change (so neither can the analyst's SQL).
 */
function analystSettings(l: AnalystLimits): Record<string, string | number> {
  const MiB = 1024 * 1024
  return {
    ...READ_SETTINGS,
    date_time_output_format: 'iso',
    max_execution_time: l.timeoutS,
    max_memory_usage: String(l.maxMemoryMb * MiB),
    max_result_bytes: String(l.maxResultMb * MiB),
    result_overflow_mode: 'throw',
    // Marks the query as an analyst's in system.processes, where close() finds it to cancel it.
    log_comment: ANALYST_MARK,
    readonly: '1',
  }
}

export interface InsertOptions {
  /**
   * The caller guarantees that no two rows of this insert share the table's sorting key (the rater's dedupe
   * index does, for rated_usage and usage_events). The insert then skips ReplacingMergeTree's replacing pass
   * over the inserted block (`optimize_on_insert = 0`), which could only ever find nothing: measured here on
   * 300,000 synthetic events of both tables inserted at once, it was half the CPU and half the time. Background
   * merges still replace, so the engine stays the backstop it is meant to be.
   */
  readonly uniqueKeys?: boolean
}

export interface Store {
  readonly mode: 'embedded' | 'server'
  readonly client: ClickHouseClient
  /** Creates the tables when missing, then runs each data migration this store has not had yet (MIGRATIONS). */
  migrate(): Promise<void>
  /**
   * Inserts TabSeparated text (rows end in \n) into a table, as one INSERT: one string, or chunks of whole
   * rows inserted as their concatenation. Embedded, the text goes through a file that chDB parses in
   * parallel: measured here 1.5–2× the rows/s of passing the same bytes inline.
   */
  insertTsv(table: string, tsv: string | readonly string[], options?: InsertOptions): Promise<void>
  /** A table's columns in their order, with their ClickHouse types; throws when there is no such table. */
  columns(table: string): Promise<Array<{ name: string; type: string }>>
  /** Rows as objects, decimals as strings. For internal reads. */
  rows<T>(sql: string, params?: Record<string, unknown>): Promise<T[]>
  /**
   * The answer of an analyst's query in the given format, as bytes (a result past V8's longest string, ~512 MiB, is
   * still printed, where a string failed with V8's own message), within `limits` (DEFAULT_ANALYST_LIMITS when not
   * given). It can change nothing: only one read statement passes (readOnlyStatement: no INTO OUTFILE, no KILL, no
   * second statement, no FORMAT clause of its own; refusals are RateflowErrors of BadInput), and it runs with
   * `readonly=1` (no write, no DDL, no setting). Safe in a writer: embedded, it runs on a chDB session of its own on
   * the same data (chDB keeps a query's settings on its session, so on the writer's session every later insert would
   * be refused); on a server the setting belongs to the request alone.
   */
  readOnlyBytes(sql: string, format: QueryFormat, limits?: AnalystLimits): Promise<Buffer>
  /**
   * The store is closing: analysts' queries waiting for their turn (embedded) are refused now, and so is any new one
   * (ServiceUnavailable, "the store is closing"); the one running goes on until close() cancels it. A stopping
   * `rateflow run` calls it first, so that its HTTP drain answers them rather than cutting them off.
   */
  refuseAnalystQueries(): void
  /** Text of an internal query in the given format (no readonly session setting), with `{name:Type}` parameters. */
  text(sql: string, format: QueryFormat, params?: Record<string, unknown>): Promise<string>
  command(sql: string): Promise<void>
  /**
   * Deletes rows of flushes that never committed; returns how many batch ids were rolled back. Reads the intents of
   * flushes that did not commit, and deletes only when there are some (after a crash); a store with no intent at
   * all (written by an older release, which wrote none) is scanned whole instead.
   */
  recover(): Promise<number>
  close(): Promise<void>
}

/**
 * A failure to reach a ClickHouse server (refused, reset, timed out, no such host), or a server that took the request
 * and never answered (the client gives up after its request timeout with a plain "Timeout error.", no code), not an
 * answer from it.
 */
export function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === 'string') return ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE'].includes(code)
  return err instanceof Error && err.message.trim() === 'Timeout error.'
}

/**
 * The oldest ClickHouse server release Rateflow's DDL and SQL are for: `DELETE FROM` (lightweight delete) without a
 * setting came in 23.3; older releases also lack, going back, Map, DateTime64 and query parameters. Debian's own
 * package (bookworm) is 18.16, on which the first CREATE TABLE fails.
 */
export const MIN_SERVER_VERSION: readonly [number, number] = [23, 3]

/**
 * Why a ClickHouse server whose `version()` is `version` cannot hold Rateflow's store (a sentence naming both versions
 * and CLICKHOUSE_URL), or undefined when it is MIN_SERVER_VERSION or later, or the text is no version number.
 */
export function serverVersionProblem(version: string): string | undefined {
  const m = /^(\d+)\.(\d+)(?:\.|$)/.exec(version.trim())
  if (!m) return undefined
  const [major, minor] = [Number(m[1]), Number(m[2])]
  const [minMajor, minMinor] = MIN_SERVER_VERSION
  if (major > minMajor || (major === minMajor && minor >= minMinor)) return undefined
  return `the ClickHouse server of CLICKHOUSE_URL is version ${version.trim()}; Rateflow needs ${minMajor}.${minMinor} or later (its tables and queries use what older releases lack): upgrade the server, or point CLICKHOUSE_URL at another`
}

/** How long the client waits for a server's answer to one request before it gives up ("Timeout error."). */
export const SERVER_REQUEST_TIMEOUT_MS = 300_000

/**
 * Opens the store: a ClickHouse server when `url` is given (CLICKHOUSE_URL), otherwise chDB embedded with
 * its data under `dataDir/clickhouse`. Same DDL, same SQL either way. `toRead`: for reads only (analysts' queries);
 * embedded, no directory is made and the insert spool is left alone (the caller checked the store exists).
 * `requestTimeoutMs`: server only, SERVER_REQUEST_TIMEOUT_MS unless given (tests give a short one).
 */
export async function openStore(opts: { dataDir: string; url?: string | undefined; toRead?: boolean; requestTimeoutMs?: number }): Promise<Store> {
  let client: ClickHouseClient
  /** Analysts' reads: embedded, a second session on the same data (opened on the first read); else `client`. */
  let analysts: (() => ClickHouseClient) | undefined
  let analystClient: ClickHouseClient | undefined
  let mode: Store['mode']
  /** Embedded only: the folder of insert files. */
  let spool: string | undefined
  let spoolSeq = 0
  /** Table → its column list as a file() structure, read from system.columns on the first insert. */
  const structures = new Map<string, string>()
  if (opts.url) {
    mode = 'server'
    // The client's own log lines (a warning about progress headers at every start, a multi-line dump of each failed
    // request) are off: a failure comes back as the error the caller reports, once, saying what and where.
    client = createClient({ url: opts.url, request_timeout: opts.requestTimeoutMs ?? SERVER_REQUEST_TIMEOUT_MS, log: { level: ClickHouseLogLevel.OFF } })
  } else {
    mode = 'embedded'
    const path = join(opts.dataDir, 'clickhouse')
    if (!opts.toRead) {
      // 0700 as the data directory when made (pipeline/runtime.ts, makeDataDir): billing data, also in a directory made by hand.
      mkdirSync(path, { recursive: true, mode: 0o700 })
      // Insert files of a process that died mid-insert are garbage: their rows were never committed.
      spool = join(opts.dataDir, 'clickhouse-spool')
      rmSync(spool, { recursive: true, force: true })
      mkdirSync(spool, { recursive: true, mode: 0o700 })
    }
    const { createChdbConnection } = await import('chdb/connection')
    const open = () => createClient({ connection: createChdbConnection({ path }) } as Parameters<typeof createClient>[0])
    client = open()
    endOnAbort()
    analysts = () => (analystClient ??= open())
  }
  /**
   * Server only: why the server is too old for the store (serverVersionProblem), asked once, after a statement failed:
   * an old server refuses the first CREATE TABLE or setting with a message that names neither version. Undefined when
   * it is recent enough, or its version could not be read (asked again after the next failure).
   */
  let versionAsked: Promise<string | undefined> | undefined
  const serverTooOld = (): Promise<string | undefined> => {
    if (mode !== 'server') return Promise.resolve(undefined)
    versionAsked ??= client
      .query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })
      .then(async (rs) => serverVersionProblem(String(((await rs.json()) as Array<{ v?: unknown }>)[0]?.v ?? '')))
      .catch(() => {
        versionAsked = undefined
        return undefined
      })
    return versionAsked
  }
  /** A server's failure as what it is when the server is too old for the store (bad config, exit 2); else `err`. */
  const explained = async (err: unknown, what?: string): Promise<unknown> => {
    if (mode !== 'server' || isConnectionError(err)) return err
    const problem = await serverTooOld()
    return problem === undefined ? err : new RateflowError(ErrorCode.BadConfig, what === undefined ? problem : `${what}: ${problem}`, { cause: err })
  }
  const wrap = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f()
    } catch (err) {
      // A server that cannot be reached is named as such (which variable to check), not as a failing statement.
      if (mode === 'server' && isConnectionError(err)) {
        throw new RateflowError(ErrorCode.ServiceUnavailable, `${what}: the ClickHouse server of CLICKHOUSE_URL does not answer: ${(err as Error).message}`, { cause: err })
      }
      const why = await explained(err, what)
      if (why !== err) throw why
      throw new RateflowError(ErrorCode.StoreFailure, `${what}: ${(err as Error).message}`, { cause: err })
    }
  }
  const execBytes = async (
    sql: string,
    format: QueryFormat,
    settings: Record<string, string | number>,
    on = client,
    params?: Record<string, unknown>,
  ): Promise<Buffer> => {
    // exec + an explicit FORMAT clause: the client's query() knows only streamable formats, not Pretty.
    const query = sql.trim().replace(/;+\s*$/, '') + '\nFORMAT ' + format
    const rs = await on.exec({ query, clickhouse_settings: settings, ...(params ? { query_params: params } : {}) })
    const chunks: Buffer[] = []
    for await (const c of rs.stream) chunks.push(Buffer.from(c as Uint8Array))
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  }
  const execText = async (...args: Parameters<typeof execBytes>) => (await execBytes(...args)).toString('utf8')
  /**
   * Embedded: the analysts' queries, run one at a time in the order they came. chDB runs one query at a time on a
   * session, and a query waiting for the session waited inside one of libuv's 4 worker threads: four analysts' queries
   * held them all, and the writer's inserts and the CSV inbox's file work queued behind them (rating stalled for the
   * queries' whole time limit). Queued here, a waiting query holds no thread. `running` is the query on the session.
   */
  const lane: Array<{ start: () => void; fail: (err: Error) => void }> = []
  let running: Promise<unknown> | undefined
  let closing = false
  const runNext = (): void => {
    if (running !== undefined) return
    lane.shift()?.start()
  }
  const readOnlyBytes = (sql: string, format: QueryFormat, limits: AnalystLimits = DEFAULT_ANALYST_LIMITS): Promise<Buffer> => {
    let statement: string
    try {
      statement = readOnlyStatement(sql)
    } catch (err) {
      // A refusal is the promise's, as for any other failure of the query (a caller's .then/.catch sees it).
      return Promise.reject(err)
    }
    if (!analysts) {
      return execBytes(statement, format, analystSettings(limits), client).catch(async (err: unknown) => {
        throw await explained(err)
      })
    }
    const session = analysts
    if (closing) return Promise.reject(stoppingError())
    if (lane.length >= MAX_WAITING_ANALYST_QUERIES) {
      return Promise.reject(
        new RateflowError(
          ErrorCode.ServiceUnavailable,
          `the store is busy: ${lane.length} analysts' queries are waiting for the one running (the embedded store runs one at a time); try again later`,
        ),
      )
    }
    // A query waits at most its time limit for the session, then runs at most its time limit.
    const deadline = Date.now() + limits.timeoutS * 1000
    return new Promise<Buffer>((resolve, reject) => {
      lane.push({
        fail: reject,
        start: () => {
          let p: Promise<Buffer>
          try {
            // TIMEOUT_EXCEEDED's code, so that the time limit is named as for a query the engine stopped.
            if (Date.now() >= deadline) {
              throw Object.assign(new Error(`it waited its whole time for other analysts' queries to end (the embedded store runs one at a time)`), { code: '159' })
            }
            // The same settings every time: chDB keeps them on the analysts' session, and once readonly=1 is on it a
            // query sending another value (what was left of its time limit, say) is refused.
            p = execBytes(statement, format, analystSettings(limits), session())
          } catch (err) {
            // Out of time, or the session could not be opened: this query fails, the next ones try in turn.
            reject(err)
            runNext()
            return
          }
          running = p
          p.then(resolve, reject).finally(() => {
            running = undefined
            runNext()
          })
        },
      })
      runNext()
    })
  }
  /** Embedded: refuses the analysts' queries still waiting, and any new one (Store.refuseAnalystQueries). */
  const refuseAnalystQueries = (): void => {
    closing = true
    for (const waiting of lane.splice(0)) waiting.fail(stoppingError())
  }
  /**
   * Embedded: refuses the analysts' queries still waiting, cancels the one running and waits for it to end. A chDB
   * session closed under a running query aborts the engine, and a `rateflow run` stopping waited for an analyst's query
   * to its end (hours for `SELECT count() FROM numbers(1e11)`): a KILL from the writer's session ends one in ~20 ms
   * here. Queries waiting are refused first: started after the KILL, each ran to its own time limit.
   */
  const cancelAnalystQueries = async (): Promise<void> => {
    refuseAnalystQueries()
    const now = running
    if (now === undefined) return
    await client.command({ query: `KILL QUERY WHERE Settings['log_comment'] = ${chString(ANALYST_MARK)} ASYNC` }).catch(() => undefined)
    await now.catch(() => undefined)
  }
  const columns = async (table: string): Promise<Array<{ name: string; type: string }>> => {
    const rs = await client.query({
      query: `SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String} ORDER BY position`,
      query_params: { t: table },
      format: 'JSONEachRow',
    })
    const cols = (await rs.json()) as Array<{ name: string; type: string }>
    if (cols.length === 0) throw new Error(`no table ${table}`)
    return cols
  }
  const structureOf = async (table: string): Promise<string> => {
    const cols = await columns(table)
    // LowCardinality columns are read from the file as plain String and converted by the INSERT: parsing text
    // straight into LowCardinality builds its dictionary row by row, measured here 25–35 % more CPU per insert.
    const structure = cols.map((c) => `${c.name} ${fileType(c.type)}`).join(', ')
    structures.set(table, structure)
    return structure
  }
  const store: Store = {
    mode,
    client,
    async migrate() {
      for (const ddl of DDL) await wrap('create table', () => client.command({ query: ddl }))
      const done = new Set((await store.rows<{ name: string }>('SELECT DISTINCT name FROM store_migrations')).map((r) => r.name))
      for (const m of MIGRATIONS) {
        if (done.has(m.name)) continue
        await wrap(`migration ${m.name}`, () => client.command({ query: m.sql }))
        await store.insertTsv('store_migrations', `${tsv(m.name)}\t${chTime(isoUtc(Date.now()))}\n`)
      }
    },
    insertTsv(table, tsv, options) {
      const chunks = typeof tsv === 'string' ? [tsv] : tsv
      return wrap(`insert into ${table}`, async () => {
        if (spool) {
          // 1. write the rows to a file 2. INSERT … SELECT from it, typed by the table's own columns (no
          // schema inference: a decimal must never pass through a float) 3. remove the file.
          const file = join(spool, `${table}-${process.pid}-${++spoolSeq}.tsv`)
          await writeChunks(file, chunks)
          try {
            const structure = structures.get(table) ?? (await structureOf(table))
            // The setting goes in the SQL, scoped to this query: chDB keeps a request's settings on its session.
            const settings = options?.uniqueKeys ? ' SETTINGS optimize_on_insert = 0' : ''
            await client.command({
              query: `INSERT INTO ${table} SELECT * FROM file(${chString(file)}, 'TabSeparated', ${chString(structure)})${settings}`,
            })
          } finally {
            unlinkSync(file)
          }
          return
        }
        await client.insert({
          table,
          values: Readable.from(chunks.map((c) => Buffer.from(c)), { objectMode: false }),
          format: 'TabSeparated',
          clickhouse_settings: options?.uniqueKeys ? { optimize_on_insert: 0 } : {},
        })
      })
    },
    columns: (table) => wrap(`columns of ${table}`, () => columns(table)),
    rows<T>(sql: string, params?: Record<string, unknown>) {
      return wrap('query', async () => {
        const rs = await client.query({
          query: sql,
          format: 'JSONEachRow',
          ...(params ? { query_params: params } : {}),
          clickhouse_settings: READ_SETTINGS,
        })
        return (await rs.json()) as T[]
      })
    },
    // readonly=1 does not stop what the engine does outside its permission checks (INTO OUTFILE, KILL): the
    // statement is checked first.
    readOnlyBytes,
    refuseAnalystQueries,
    text: (sql, format, params) => wrap('query', () => execText(sql, format, READ_SETTINGS, client, params)),
    command(sql) {
      return wrap('command', async () => {
        await client.command({ query: sql })
      })
    },
    async recover() {
      const [intents] = await store.rows<{ n: string; since: string }>(
        'SELECT count() AS n, toString(toUnixTimestamp64Milli(min(written_at))) AS since FROM flush_intents',
      )
      if (Number(intents!.n) === 0) return recoverByScan(store)
      // A flush's commit row is written after its intent, by the process that wrote the intent, so its committed_at is
      // not before the intent's written_at (an hour's margin for a clock set back in between): only the flushes
      // committed since the oldest intent are read, not all of history.
      const since = { since: Number(intents!.since) }
      const recent = `SELECT flush_id FROM flushes WHERE committed_at >= fromUnixTimestamp64Milli({since:Int64}) - INTERVAL 1 HOUR`
      // Flushes that wrote their intent and never their commit.
      const torn = await store.rows<{ flush_id: string }>(`SELECT flush_id FROM flush_intents WHERE flush_id NOT IN (${recent})`, since)
      let rolledBack = 0
      if (torn.length > 0) {
        const tornIds = torn.map((f) => chString(f.flush_id)).join(', ')
        // First their committed_batches rows (written before the commit row they never wrote), so that the check below
        // sees only batches a committed flush names.
        await store.command(`DELETE FROM committed_batches WHERE flush_id IN (${tornIds}) SETTINGS mutations_sync = 2`)
        // Their batches' rows, less any batch a flush committed (a batch redelivered and rated again keeps its id; one
        // committed before the crash and delivered again, because its ack was lost, is named by an older flush).
        const named = await store.rows<{ batch_id: string }>(`SELECT DISTINCT arrayJoin(batches) AS batch_id FROM flush_intents WHERE flush_id IN (${tornIds})`)
        const committed = await committedBatches(store, named.map((r) => r.batch_id))
        const batches = named.map((r) => r.batch_id).filter((b) => !committed.has(b))
        // A torn release's held events are written back as held before its rows go (restoreHeld).
        const releases = batches.filter((b) => RELEASE_BATCH_ID.test(b))
        if (releases.length > 0) await restoreHeld(store, releases)
        // Not filtered on every commit again: committedBatches just left out every batch a flush committed.
        if (batches.length > 0) await deleteRows(store, `batch_id IN (${batches.map(chString).join(', ')})`)
        // Their intents are done with (a crash before this line only repeats the deletes above, which then find nothing).
        await store.command(`DELETE FROM flush_intents WHERE flush_id IN (${tornIds}) SETTINGS mutations_sync = 2`)
        rolledBack = batches.length
      }
      // Every intent left is a committed flush's. Past PRUNE_INTENTS of them, all but the newest go: a start then reads
      // the intents and flushes of the time since the last start, not of all history. The newest stays, so the store
      // still shows it writes intents (a store with none is scanned whole, as one written before intents).
      if (Number(intents!.n) - torn.length > PRUNE_INTENTS) {
        await store.command(
          `DELETE FROM flush_intents WHERE flush_id != (SELECT flush_id FROM flush_intents ORDER BY written_at DESC, flush_id DESC LIMIT 1)
           SETTINGS mutations_sync = 2`,
        )
      }
      return rolledBack
    },
    async close() {
      await cancelAnalystQueries()
      await analystClient?.close()
      await client.close()
      if (spool) rmSync(spool, { recursive: true, force: true })
    },
  }
  return store
}

/** Committed flushes' intents kept before recover() prunes them (see there). */
export const PRUNE_INTENTS = 1000

/** How the batch id of a page of released held usage begins (the rater's releases: `release-<ms>-<page>`). */
export const RELEASE_BATCH_PREFIX = 'release-'

/**
 * A release page's batch id, and nothing else: a queue batch's id is `<source>:…`, always with a ':', so a source named
 * `release-x` does not match (taken for a release, its torn batch's new held rows were copied as held, released by the
 * next apply, and its redelivery, whose usage_events rows the recovery had deleted, rated them a second time).
 */
export const RELEASE_BATCH_ID = new RegExp(`^${RELEASE_BATCH_PREFIX}\\d+-\\d+$`)

/** How the batch id of held rows recover() wrote back begins (restoreHeld): a '/', which no source name has. */
const RESTORED_BATCH_PREFIX = 'restored/'

/**
 * Writes the held events a torn release rewrote back as held, before recover() deletes the release's rows.
 *
 * Why: a release rewrites each event's suspended_usage row (ReplacingMergeTree(version)) as `released`, or as `held`
 * with a new reason, at a higher version. Deleting those rows by batch id gives the event back its older held row only
 * while the two rows sit in different parts: a merge between the crash and the next start (a ClickHouse server merges
 * while the rater is down) keeps the higher version alone, the delete then removed the event from suspended_usage for
 * good, and no release ever found it again. So each rewritten row is copied first as `held`, at its own version, under a
 * batch id no recovery deletes (the torn id prefixed). Inserted before the delete: a crash in between copies the rows
 * again on the next start, identical rows one key and version keep as one.
 */
async function restoreHeld(store: Store, releaseBatches: readonly string[]): Promise<void> {
  // Columns by position, without aliases: an alias `batch_id` would be what the WHERE reads (ClickHouse resolves a
  // name to the SELECT's alias first), and it matched no row.
  await store.command(
    `INSERT INTO suspended_usage
       SELECT source, event_id, event_time, device_id, account_id, subscription_id, metric, quantity, dimensions, raw, origin,
              reason, 'held', version, received_at, concat(${chString(RESTORED_BATCH_PREFIX)}, batch_id)
       FROM suspended_usage WHERE batch_id IN (${releaseBatches.map(chString).join(', ')})`,
  )
}

/** recover() on a store written before flush intents: every flushed table's batch ids are read (grows with history). */
async function recoverByScan(store: Store): Promise<number> {
  // Rows of no committed flush; held rows a recovery wrote back (restoreHeld) belong to no flush, and are kept.
  const orphan = `batch_id NOT IN (${COMMITTED_BATCHES}) AND NOT startsWith(batch_id, ${chString(RESTORED_BATCH_PREFIX)})`
  const orphans = new Set<string>()
  for (const t of FLUSHED_TABLES) {
    const rows = await store.rows<{ batch_id: string }>(`SELECT DISTINCT batch_id FROM ${t} WHERE ${orphan}`)
    for (const r of rows) orphans.add(r.batch_id)
  }
  if (orphans.size === 0) return 0
  await deleteRows(store, orphan)
  return orphans.size
}

/** Deletes the rows of every flushed table that match `where` (rows of batches no flush committed). */
async function deleteRows(store: Store, where: string): Promise<void> {
  for (const t of FLUSHED_TABLES) {
    await store.command(`DELETE FROM ${t} WHERE ${where} SETTINGS mutations_sync = 2`)
  }
}

/** Ends the process on SIGABRT (see endOnAbort). */
const abortNow = (): void => process.abort()

/**
 * Makes abort() end the process again once chDB has opened a session. chDB installs a SIGABRT handler then, and
 * that handler never returns: a fatal error after it (V8 out of heap, a failed native assertion, `process.abort()`)
 * left the process hanging instead of ending it (measured: still running 30 s after running out of heap), and a
 * supervisor that restarts a dead rater never saw it die. A listener of Rateflow's own puts libuv's handler in place
 * of chDB's: it returns, so abort() restores the default action and raises again, and the process ends with SIGABRT
 * (exit status 134). An abort sent from outside (`kill -ABRT`) reaches the listener, which aborts. Removed and added
 * again each time a store opens, so that libuv installs its handler anew after whatever chDB installed last.
 */
function endOnAbort(): void {
  process.removeListener('SIGABRT', abortNow)
  process.on('SIGABRT', abortNow)
}

/** The type a file() column is parsed as: the table's type, with every LowCardinality(T) read as T. */
export function fileType(type: string): string {
  return type.replace(/LowCardinality\((.*?)\)/g, '$1')
}

/**
 * Writes the chunks one after another to a new file (no concatenated copy of them). The writes run on libuv's
 * threads: the rater's thread goes on applying batches meanwhile (each chunk is encoded to UTF-8 here first).
 */
async function writeChunks(file: string, chunks: readonly string[]): Promise<void> {
  const fh = await open(file, 'w')
  try {
    // writeFile, not write: it loops until every byte is written (write may write part and say so), and on a
    // handle it continues from the current position, so the chunks follow one another.
    for (const chunk of chunks) await fh.writeFile(chunk)
  } finally {
    await fh.close()
  }
}
