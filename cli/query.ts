import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { lockOwner } from '../pipeline/data-dir-lock.js'
import type { QueryFormat, Store } from '../pipeline/store.js'
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
 * Runs an analyst's SQL read-only and returns the text: the store runs one read statement and refuses anything else
 * (INTO OUTFILE, KILL, writes, DDL, settings changes, a second statement, a FORMAT clause; see readOnlyStatement).
 * Any error the store gives is bad input (exit 2; HTTP 400 on /v1/query), with the store's message after `query: `.
 */
export async function readOnlyQuery(store: Store, sql: string, format: QueryFormat): Promise<string> {
  try {
    return await store.readOnlyText(sql, format)
  } catch (err) {
    throw new RateflowError(ErrorCode.BadInput, `query: ${(err as Error).message.trim()}`, { cause: err })
  }
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
 * another process cannot open it while it runs.
 */
export async function queryRun(run: RunInfo, sql: string, format: string): Promise<string> {
  const url = new URL('/v1/query', run.http)
  url.searchParams.set('format', format)
  let res: Response
  try {
    res = await fetch(url, { method: 'POST', body: sql, headers: { 'content-type': 'text/plain; charset=utf-8' } })
  } catch (err) {
    throw new RateflowError(ErrorCode.Internal, `query: the rateflow run (pid ${run.pid}) at ${run.http} did not answer: ${(err as Error).message}`)
  }
  let body: string
  try {
    body = await res.text()
  } catch (err) {
    // The answer was cut part way: the run stopped (its stop closes connections still open after a few seconds).
    throw new RateflowError(ErrorCode.Internal, `query: the rateflow run (pid ${run.pid}) at ${run.http} stopped while answering: ${(err as Error).message}`)
  }
  if (res.status === 200) return body
  const message = (() => {
    try {
      return (JSON.parse(body) as { error?: string }).error ?? body
    } catch {
      // Not the API's JSON (a proxy, or Node refusing the request before the API saw it): its status says what.
      return `query: the rateflow run (pid ${run.pid}) at ${run.http} answered HTTP ${res.status}${body.trim() ? `: ${body.trim()}` : ''}`
    }
  })()
  // 400: a refused statement; 413: SQL longer than the run reads. Both are the input's, as without a run.
  throw new RateflowError(res.status === 400 || res.status === 413 ? ErrorCode.BadInput : ErrorCode.Internal, message)
}
