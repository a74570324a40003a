import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { parseIsoTime } from '../common/time.js'
import { lockOwner } from '../pipeline/data-dir-lock.js'
import { ANALYST_LIMIT_VARS, DEFAULT_ANALYST_LIMITS, type AnalystLimits } from '../pipeline/analyst-limits.js'
import { isConnectionError, type QueryFormat, type Store } from '../pipeline/store.js'
import { usage } from './context.js'

/** `rateflow query --format` names (CONTRACT §1) and the ClickHouse formats they print. */
export const QUERY_FORMATS: Readonly<Record<string, QueryFormat>> = Object.freeze({
  JSONEachRow: 'JSONEachRow',
  CSV: 'CSVWithNames' as QueryFormat,
  Pretty: 'PrettyCompactMonoBlock' as QueryFormat,
})

/** The ClickHouse format of a `--format` name; a usage error (exit 2) naming the choices otherwise. */
export function queryFormat(name: string | undefined): QueryFormat {
  const key = name ?? 'JSONEachRow'
  // Own names only: `toString` or `constructor` would otherwise find Object.prototype's functions.
  const f = Object.hasOwn(QUERY_FORMATS, key) ? QUERY_FORMATS[key] : undefined
  if (!f) throw usage(`query: --format must be one of ${Object.keys(QUERY_FORMATS).join(', ')}`)
  return f
}

/**
 * Runs an analyst's SQL read-only within `limits` and returns the text's bytes: the store runs one read statement and
 * refuses anything else (INTO OUTFILE, KILL, writes, DDL, settings changes, a second statement, a FORMAT clause; see
 * readOnlyStatement). An error of the store's about the query is bad input (exit 2; HTTP 400 on /v1/query), with the
 * store's message after `query: `; a limit that stopped the query is named first, with the variable that sets it. The
 * store failing (its files unreadable or corrupt, the disk, the engine itself), a server that does not answer, or a
 * store that is busy or closing, is a runtime failure (exit 1; HTTP 500 or 503), with the same message.
 */
export async function readOnlyQuery(store: Store, sql: string, format: QueryFormat, limits: AnalystLimits = DEFAULT_ANALYST_LIMITS): Promise<Buffer> {
  try {
    return await store.readOnlyBytes(sql, format, limits)
  } catch (err) {
    const message = (err as Error).message.trim()
    // A server that does not answer is no fault of the SQL: a runtime failure (exit 1), naming where it was asked.
    if (store.mode === 'server' && isConnectionError(err)) {
      throw new RateflowError(ErrorCode.ServiceUnavailable, `query: the ClickHouse server of CLICKHOUSE_URL does not answer: ${message}`, { cause: err })
    }
    // Refused by the check, or the store busy or closing: already worded, with their own code.
    if (err instanceof RateflowError) throw new RateflowError(err.code, `query: ${message}`, { cause: err })
    if (STORE_FAILURE_CODES.has(String((err as { code?: unknown }).code ?? ''))) {
      throw new RateflowError(ErrorCode.StoreFailure, `query: the store failed reading: ${message}`, { cause: err })
    }
    const limit = limitHit(err, limits)
    throw new RateflowError(ErrorCode.BadInput, `query: ${limit ? `${limit}: ` : ''}${message}`, { cause: err })
  }
}

/**
 * ClickHouse's error codes that say the store failed, not the query: files unreadable, corrupt or missing, no disk
 * space or memory left to the process, the engine's own faults. A corrupt part's "Unknown codec family code" was bad
 * input (exit 2), as if the analyst's SQL were wrong.
 */
const STORE_FAILURE_CODES = new Set([
  '33', // CANNOT_READ_ALL_DATA
  '40', // CHECKSUM_DOESNT_MATCH
  '49', // LOGICAL_ERROR
  '74', // CANNOT_READ_FROM_FILE_DESCRIPTOR
  '75', // CANNOT_WRITE_TO_FILE_DESCRIPTOR
  '76', // CANNOT_OPEN_FILE
  '107', // FILE_DOESNT_EXIST
  '173', // CANNOT_ALLOCATE_MEMORY
  '243', // NOT_ENOUGH_SPACE
  '246', // CORRUPTED_DATA
  '271', // CANNOT_DECOMPRESS
  '432', // UNKNOWN_CODEC
  '1000', // POCO_EXCEPTION
  '1001', // STD_EXCEPTION
])

/**
 * Which analysts' limit stopped a query, and how to change it, by ClickHouse's error code (TIMEOUT_EXCEEDED 159,
 * MEMORY_LIMIT_EXCEEDED 241, TOO_MANY_ROWS_OR_BYTES 396); undefined for any other error.
 */
function limitHit(err: unknown, limits: AnalystLimits): string | undefined {
  const code = String((err as { code?: unknown }).code ?? '')
  const v = ANALYST_LIMIT_VARS
  if (code === '159') {
    return `the query ran longer than the analysts' limit of ${limits.timeoutS} s (${v.timeoutS.name}; set it higher for a longer query, or narrow the query)`
  }
  if (code === '241') {
    return `the query needed more memory than allowed (${v.maxMemoryMb.name}=${limits.maxMemoryMb} MiB a query; set it higher, or aggregate or filter more)`
  }
  if (code === '396') {
    return `the result is larger than the analysts' limit of ${limits.maxResultMb} MiB (${v.maxResultMb.name}; aggregate, filter or add a LIMIT, or set it higher)`
  }
  return undefined
}

/** Where `rateflow run` tells other commands on its data directory how to reach its HTTP API. */
const RUN_FILE = 'run.json'

/** What `rateflow run` writes to `<data>/run.json` while it runs. */
export interface RunInfo {
  pid: number
  http: string
}

/** Announces a running `rateflow run` in its data directory; returns the function that withdraws it. */
export function announceRun(dataDir: string, info: RunInfo): () => void {
  const file = join(dataDir, RUN_FILE)
  writeFileSync(file, JSON.stringify(info) + '\n')
  return () => rmSync(file, { force: true })
}

/**
 * The `rateflow run` that owns `dataDir`, when one does: its run.json names a live process that also holds the
 * directory's lock (`owner.pid`). Otherwise undefined (no run, or a stale file left by a killed one).
 */
export function runningRun(dataDir: string): RunInfo | undefined {
  let info: RunInfo
  try {
    info = JSON.parse(readFileSync(join(dataDir, RUN_FILE), 'utf8')) as RunInfo
  } catch {
    return undefined
  }
  return typeof info.http === 'string' && lockOwner(dataDir) === info.pid ? info : undefined
}

/**
 * Asks the running `rateflow run` to answer the query (its HTTP API, `POST /v1/query` with the SQL as the body: any
 * length, where a URL's is bounded), for a data directory that process owns: chDB binds a directory to one process, so
 * another process cannot open it while it runs. Waited for as long as the run's own limits let the query run.
 */
export async function queryRun(run: RunInfo, sql: string, format: string): Promise<Buffer> {
  const url = new URL('/v1/query', run.http)
  url.searchParams.set('format', format)
  return postToRun(run, url, sql, 'text/plain; charset=utf-8')
}

/**
 * A command's own question of the store (StoreAsk), answered by the running `rateflow run` on its own session
 * (`POST /v1/ask`): analysts' queries, which run one at a time, do not hold it up. Rows as objects, decimals as strings.
 */
export async function askRun<T>(run: RunInfo, ask: StoreAsk, timeoutMs?: number): Promise<T[]> {
  const bytes = await postToRun(run, new URL('/v1/ask', run.http), JSON.stringify(ask), 'application/json', timeoutMs)
  return JSON.parse(bytes.toString('utf8')) as T[]
}

/**
 * The questions commands ask of the store about what it holds, by name: a running run answers them on the writer's
 * session with this SQL and these parameters only (never SQL it is sent), so they need no read-only check.
 */
export type StoreAsk = { ask: 'rated_after'; at: string } | { ask: 'accounts_with_rated_usage'; accounts: string[] }

/**
 * The rows of a question, asked of `store` with its own SQL and parameters (rated_after `{n, last}`, last in epoch ms as
 * text; accounts_with_rated_usage `{account_id}`): by a command with the store open, or by the run answering /v1/ask.
 */
export function askOn<T>(store: Store, a: StoreAsk): Promise<T[]> {
  if (a.ask === 'rated_after') {
    return store.rows<T>(
      "SELECT count() AS n, toString(toUnixTimestamp64Milli(max(event_time))) AS last FROM rated_usage WHERE event_time >= parseDateTime64BestEffort({at:String}, 3, 'UTC')",
      { at: a.at },
    )
  }
  return store.rows<T>('SELECT DISTINCT account_id FROM rated_usage WHERE account_id IN {accounts:Array(String)}', { accounts: a.accounts })
}

/** A question as a run is sent it (JSON): bad input (400) unless one of StoreAsk's shapes exactly. */
export function parseAsk(text: string): StoreAsk {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new RateflowError(ErrorCode.BadInput, `ask: the body is not JSON: ${(err as Error).message}`)
  }
  const o = v as Record<string, unknown> | null
  const keys = o !== null && typeof o === 'object' && !Array.isArray(o) ? Object.keys(o).sort().join(',') : ''
  // A time the store would fail to read is the request's fault (400), not the store's.
  if (keys === 'ask,at' && o!.ask === 'rated_after' && typeof o!.at === 'string' && parseIsoTime(o!.at) !== undefined) return { ask: 'rated_after', at: o!.at }
  if (keys === 'accounts,ask' && o!.ask === 'accounts_with_rated_usage' && Array.isArray(o!.accounts) && o!.accounts.every((a) => typeof a === 'string')) {
    return { ask: 'accounts_with_rated_usage', accounts: o!.accounts as string[] }
  }
  throw new RateflowError(ErrorCode.BadInput, 'ask: expected {"ask":"rated_after","at":ISO-8601 TIME} or {"ask":"accounts_with_rated_usage","accounts":[ID,…]}')
}

/** POSTs `body` to the run and returns the answer's bytes; a non-200 answer is thrown with the API's message. */
async function postToRun(run: RunInfo, url: URL, body: string, contentType: string, timeoutMs?: number): Promise<Buffer> {
  let res: Response
  try {
    res = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'content-type': contentType },
      ...(timeoutMs !== undefined ? { signal: AbortSignal.timeout(timeoutMs) } : {}),
    })
  } catch (err) {
    throw new RateflowError(ErrorCode.Internal, `query: the rateflow run (pid ${run.pid}) at ${run.http} did not answer: ${answerFailure(err, timeoutMs)}`)
  }
  let bytes: Buffer
  try {
    // Bytes, not text: a result may be longer than a JS string can be.
    bytes = Buffer.from(await res.arrayBuffer())
  } catch (err) {
    // The answer was cut part way: the run stopped (its stop closes connections still open after a few seconds).
    const timedOut = (err as Error).name === 'TimeoutError'
    throw new RateflowError(
      ErrorCode.Internal,
      `query: the rateflow run (pid ${run.pid}) at ${run.http} ${timedOut ? 'did not finish answering' : 'stopped while answering'}: ${answerFailure(err, timeoutMs, true)}`,
    )
  }
  if (res.status === 200) return bytes
  const answer = bytes.toString('utf8')
  const message = (() => {
    try {
      return (JSON.parse(answer) as { error?: string }).error ?? answer
    } catch {
      // Not the API's JSON (a proxy, or Node refusing the request before the API saw it): its status says what.
      return `query: the rateflow run (pid ${run.pid}) at ${run.http} answered HTTP ${res.status}${answer.trim() ? `: ${answer.trim()}` : ''}`
    }
  })()
  // 400: a refused statement; 413: SQL longer than the run reads. Both are the input's, as without a run.
  throw new RateflowError(res.status === 400 || res.status === 413 ? ErrorCode.BadInput : ErrorCode.Internal, message)
}

/** Why a request to a run failed, a time limit named as such (fetch's own words are "The operation was aborted"). */
function answerFailure(err: unknown, timeoutMs: number | undefined, started = false): string {
  if ((err as Error).name !== 'TimeoutError' || timeoutMs === undefined) return (err as Error).message
  return `no ${started ? 'full ' : ''}answer within ${timeoutMs / 1000} s`
}
