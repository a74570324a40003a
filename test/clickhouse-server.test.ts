import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sampleAccounts, sampleCatalog, sampleCsvLines } from '../bench/sample-data.js'
import { serverVersionProblem } from '../pipeline/store.js'
import { json, killStrayChildren, rateflow, tempDir, writeJson } from './helpers/cli.js'

/**
 * Server mode: the same data path with CLICKHOUSE_URL set, so the store is a ClickHouse server over HTTP
 * (same DDL, same SQL). Runs only when CLICKHOUSE_URL points at a server; each run uses a database of its own
 * (the URL's path names the database, as @clickhouse/client reads it) and drops it after. nats-server is still started by the CLI.
 */
const SERVER = process.env.CLICKHOUSE_URL
if (!SERVER) {
  console.warn('test/clickhouse-server.test.ts: skipped, CLICKHOUSE_URL is not set (set it to a ClickHouse server, e.g. http://127.0.0.1:8123)')
}

describe.skipIf(!SERVER)('server-mode ClickHouse (CLICKHOUSE_URL)', () => {
  const EVENTS = 2000
  const size = { customers: 4, devicesPerAccount: 2 }
  // Made only when the suite runs: a skipped describe runs no afterAll, and left an empty directory per run.
  const tmp = SERVER ? tempDir('rateflow-server-') : { dir: '', cleanup: () => undefined }
  const database = `rateflow_test_${process.pid}_${Date.now()}`
  let admin: ClickHouseClient
  let env: Record<string, string>
  const d = ['--data', tmp.dir]
  type Counts = { read: number; rated: number; duplicates: number; rejected: number; suspended: number }

  beforeAll(async () => {
    admin = createClient({ url: SERVER })
    // A server too old for the store fails every statement; say so first, as rateflow does (serverVersionProblem).
    const [{ v }] = (await (await admin.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })).json()) as [{ v: string }]
    const tooOld = serverVersionProblem(v)
    if (tooOld !== undefined) throw new Error(tooOld)
    await admin.command({ query: `CREATE DATABASE ${database}` })
    const url = new URL(SERVER!)
    url.pathname = `/${database}`
    env = { CLICKHOUSE_URL: url.toString() }
    await json(['catalog', 'apply', writeJson(join(tmp.dir, 'catalog.json'), sampleCatalog()), ...d], env)
    await json(['accounts', 'apply', writeJson(join(tmp.dir, 'accounts.json'), sampleAccounts(size)), ...d], env)
  })
  afterEach(() => {
    killStrayChildren()
  })
  afterAll(async () => {
    await admin?.command({ query: `DROP DATABASE IF EXISTS ${database}` })
    await admin?.close()
    tmp.cleanup()
  })

  it('rates a file into the server, reconciles, dedupes a second ingest, and serves read-only queries', async () => {
    const csv = join(tmp.dir, 'usage.csv')
    writeFileSync(csv, [...sampleCsvLines({ events: EVENTS, size, withFaults: true, seed: 7 })].join('\n') + '\n')
    const first = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:s', '--wait', ...d], env)
    expect(first).toEqual({ read: EVENTS + 6, rated: EVENTS, duplicates: 0, rejected: 4, suspended: 2 })
    const again = await json<Counts>(['ingest', 'csv', csv, '--source', 'csv:s', '--wait', ...d], env)
    expect(again).toMatchObject({ rated: 0, duplicates: EVENTS + 2, rejected: 4 })

    // The rows are in the server's database, not in an embedded store under --data.
    const rs = await admin.query({
      query: `SELECT count() AS n, toString(sum(amount)) AS total FROM ${database}.rated_usage`,
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_64bit_integers: 1 },
    })
    const [row] = (await rs.json()) as Array<{ n: string; total: string }>
    expect(Number(row!.n)).toBe(EVENTS)
    const q = await rateflow(['query', 'SELECT toString(sum(amount)) AS total FROM rated_usage', ...d], env)
    expect(q.code).toBe(0)
    expect(JSON.parse(q.stdout).total).toBe(row!.total)
    const drop = await rateflow(['query', 'DROP TABLE rated_usage', ...d], env)
    expect(drop.code).toBe(2)
    expect(drop.stderr).toMatch(/DROP is not allowed for read-only queries/)
  })
})
