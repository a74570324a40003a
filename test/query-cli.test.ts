import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { sampleCatalog } from '../bench/sample-data.js'
import { cliDataDir, json, rateflow, writeJson } from './helpers/cli.js'
import { freePort } from '../common/net.js'

const { data, d } = cliDataDir()

beforeAll(async () => {
  // A store, as any data directory in use has: `catalog apply` makes it.
  await json(['catalog', 'apply', writeJson(join(data, 'catalog-file.json'), sampleCatalog()), ...d])
}, 60_000)

describe('rateflow query on a data directory without a store', () => {
  it('exits 2 naming the directory, and creates nothing: neither the directory nor a store in an empty one', async () => {
    const missing = join(data, 'typo')
    const r = await rateflow(['query', 'SELECT count() FROM rated_usage', '--data', missing])
    expect([r.code, r.stdout, r.stderr]).toEqual([
      2,
      '',
      `rateflow: no Rateflow store in ${missing} (it has no clickhouse/): give --data the data directory your Rateflow writes (the default is ./.rateflow)\n`,
    ])
    expect(existsSync(missing)).toBe(false)
    const empty = join(data, 'empty')
    mkdirSync(empty)
    const e = await rateflow(['query', 'SELECT count() FROM rated_usage', '--data', empty])
    expect([e.code, e.stderr, readdirSync(empty)]).toEqual([2, expect.stringContaining(`no Rateflow store in ${empty}`), []])
    // The store that exists answers.
    const ok = await rateflow(['query', 'SELECT count() AS n FROM rated_usage', ...d])
    expect([ok.code, ok.stdout, ok.stderr]).toEqual([0, '{"n":"0"}\n', ''])
  }, 60_000)
})

describe('rateflow query: its arguments', () => {
  it('a query with no rows prints nothing in JSONEachRow and Pretty (a blank line was one row no JSON parser reads)', async () => {
    for (const format of ['JSONEachRow', 'Pretty']) {
      const r = await rateflow(['query', 'SELECT source FROM rated_usage WHERE 0', '--format', format, ...d])
      expect([r.code, r.stdout], format).toEqual([0, ''])
    }
    const one = await rateflow(['query', 'SELECT 1 AS n', ...d])
    expect([one.code, one.stdout]).toEqual([0, '{"n":1}\n'])
  })

  it('no SQL, or SQL in more than one argument, exits 2 naming the command and what it takes', async () => {
    const usage = 'rateflow query "SELECT …" [--format JSONEachRow|CSV|Pretty]'
    const none = await rateflow(['query', ...d])
    expect([none.code, none.stderr]).toEqual([2, `rateflow: query: expected the SQL as one argument, got 0: ${usage}\n`])
    const two = await rateflow(['query', 'SELECT', '1', ...d])
    expect([two.code, two.stderr]).toEqual([2, `rateflow: query: expected the SQL as one argument, got 2 (quote the SQL): ${usage}\n`])
  })
})

describe('rateflow query: analysts\' limits', () => {
  it('a query past RATEFLOW_QUERY_TIMEOUT_S stops at the limit and exits 2 naming it and its variable', async () => {
    const t0 = Date.now()
    const r = await rateflow(['query', 'SELECT count() FROM numbers(1e11)', ...d], { RATEFLOW_QUERY_TIMEOUT_S: '1' })
    // Unbounded, this query ran for hours.
    expect(Date.now() - t0).toBeLessThan(20_000)
    expect([r.code, r.stdout, r.stderr]).toEqual([
      2,
      '',
      expect.stringMatching(/^rateflow: query: the query ran longer than the analysts' limit of 1 s \(RATEFLOW_QUERY_TIMEOUT_S; set it higher for a longer query, or narrow the query\): Timeout exceeded/),
    ])
  }, 60_000)

  it('a result past RATEFLOW_QUERY_MAX_RESULT_MB, and a query past RATEFLOW_QUERY_MAX_MEMORY_MB, exit 2 naming the limit', async () => {
    const big = await rateflow(['query', 'SELECT number FROM numbers(1000000)', ...d], { RATEFLOW_QUERY_MAX_RESULT_MB: '1' })
    expect([big.code, big.stdout, big.stderr]).toEqual([
      2,
      '',
      expect.stringMatching(/^rateflow: query: the result is larger than the analysts' limit of 1 MiB \(RATEFLOW_QUERY_MAX_RESULT_MB; aggregate, filter or add a LIMIT, or set it higher\): Limit for result exceeded/),
    ])
    const mem = await rateflow(['query', 'SELECT uniqExact(number) FROM numbers(1e8)', ...d], { RATEFLOW_QUERY_MAX_MEMORY_MB: '16' })
    expect([mem.code, mem.stderr]).toEqual([2, expect.stringMatching(/^rateflow: query: the query needed more memory than allowed \(RATEFLOW_QUERY_MAX_MEMORY_MB=16 MiB a query; set it higher, or aggregate or filter more\): /)])
    // Aggregating the same rows is no large result: the limit is on what is returned, not what is read.
    const sum = await rateflow(['query', 'SELECT count() AS n FROM (SELECT number FROM numbers(1000000))', ...d], { RATEFLOW_QUERY_MAX_RESULT_MB: '1' })
    expect([sum.code, sum.stdout]).toEqual([0, '{"n":"1000000"}\n'])
  }, 60_000)

  it('a bad limit exits 2 naming each variable before anything runs', async () => {
    const r = await rateflow(['query', 'SELECT 1', ...d], { RATEFLOW_QUERY_TIMEOUT_S: '5s', RATEFLOW_QUERY_MAX_MEMORY_MB: '1', RATEFLOW_QUERY_MAX_RESULT_MB: '' })
    expect([r.code, r.stdout, r.stderr]).toEqual([
      2,
      '',
      'rateflow: environment: 2 problems\n' +
        '  RATEFLOW_QUERY_TIMEOUT_S: must be a whole number of s from 1 to 86400, got "5s"\n' +
        '  RATEFLOW_QUERY_MAX_MEMORY_MB: must be a whole number of MiB from 16 to 1048576, got "1"\n',
    ])
  })

  it('a CLICKHOUSE_URL that is no http(s) URL exits 2 naming it; a server that does not answer exits 1 naming it, once', async () => {
    // They came as the client's error with its stack (exit 1), and as bad input with the client's dump (exit 2).
    for (const url of ['notaurl', 'ftp://127.0.0.1/x']) {
      const r = await rateflow(['query', 'SELECT 1', ...d], { CLICKHOUSE_URL: url })
      expect([r.code, r.stderr]).toEqual([2, `rateflow: CLICKHOUSE_URL: ${JSON.stringify(url)} is not an http:// or https:// URL of a ClickHouse server (e.g. http://127.0.0.1:8123)\n`])
    }
    const closed = await freePort()
    const r = await rateflow(['query', 'SELECT 1', ...d], { CLICKHOUSE_URL: `http://127.0.0.1:${closed}` })
    expect([r.code, r.stderr]).toEqual([1, `rateflow: query: the ClickHouse server of CLICKHOUSE_URL does not answer: connect ECONNREFUSED 127.0.0.1:${closed}\n`])
    // Every other command names it too (it said only "create table: connect ECONNREFUSED …"); an apply says that what
    // it applied is stored (exit 1 alone read as "not applied", and the same apply again answered "unchanged").
    const down = { CLICKHOUSE_URL: `http://127.0.0.1:${closed}` }
    const nowhere = `the ClickHouse server of CLICKHOUSE_URL does not answer: connect ECONNREFUSED 127.0.0.1:${closed}`
    const other = join(data, 'server-down')
    const csv = join(data, 'down.csv')
    writeFileSync(csv, 'event_id,event_time,device_id,account_id,subscription_id,metric,quantity\n')
    const i = await rateflow(['ingest', 'csv', csv, '--wait', '--data', other], down)
    expect([i.code, i.stderr]).toEqual([1, `rateflow: create table: ${nowhere}\n`])
    const accounts = writeJson(join(data, 'down-accounts.json'), { customers: [] })
    for (let round = 0; round < 2; round++) {
      const a = await rateflow(['accounts', 'apply', accounts, '--data', other], down)
      expect([a.code, a.stdout, a.stderr]).toEqual([
        1,
        '',
        `rateflow: the accounts are stored, but held usage was not released (the next rater to start, or the next apply, releases it): create table: ${nowhere}\n`,
      ])
    }
    const c = await rateflow(['catalog', 'apply', join(data, 'catalog-file.json'), '--data', other], down)
    expect([c.code, JSON.parse(c.stdout).status, c.stderr]).toEqual([
      1,
      'stored',
      expect.stringContaining(`rateflow: the catalog version is stored, but held usage was not released (the next rater to start, or the next apply, releases it): create table: ${nowhere}\n`),
    ])
  })
})
