import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CSV_HEADER, sampleAccounts, sampleCatalog } from '../bench/sample-data.js'
import { json, query, rateflow, tempDir, writeJson, type CliResult, killStrayChildren } from './helpers/cli.js'
import { startMosquitto, type LocalMosquitto } from '../pipeline/services/mosquitto.js'
import { makeTestPki } from './helpers/certs.js'

const run = promisify(execFile)

let broker: LocalMosquitto
let mqttPort = 0
const tmp = tempDir('rateflow-run-')

beforeAll(async () => {
  // The broker keeps running across the kill -9, so its in-memory persistent session holds the unacked QoS 1 messages.
  broker = await startMosquitto(tmp.dir, ['max_inflight_messages 100', 'max_queued_messages 100000'], 5000)
  mqttPort = broker.port
})

// A test that timed out must not leave a process holding its data directory for the tests after it.
afterEach(() => {
  killStrayChildren()
})
afterAll(async () => {
  await broker?.stop()
  tmp.cleanup()
})

interface Ready { status: string; http: string; syslog: Array<{ source: string; udp: number | null; tcp: number | null }> }
interface Stats { adapters: Array<{ kind: string; source: string; stats: Record<string, number> }>; outcomes: Record<string, number> }

async function setup(name: string, mqtt?: Record<string, unknown>): Promise<{ data: string; config: string; inbox: string }> {
  const data = join(tmp.dir, name)
  const inbox = join(tmp.dir, `${name}-inbox`)
  await json(['catalog', 'apply', writeJson(join(tmp.dir, `${name}-catalog.json`), sampleCatalog()), '--data', data])
  await json(['accounts', 'apply', writeJson(join(tmp.dir, `${name}-accounts.json`), sampleAccounts({ customers: 2, devicesPerAccount: 2 })), '--data', data])
  const config = writeJson(join(tmp.dir, `${name}-rateflow.json`), {
    adapters: {
      mqtt: [mqtt ?? { url: `mqtt://127.0.0.1:${mqttPort}`, topics: ['devices/+/usage'], source: 'mqtt:plant', client_id: `rateflow-${name}` }],
      syslog: [{ udp_port: 0, tcp_port: 0, host: '127.0.0.1', source: 'syslog:edge' }],
      csv: [{ watch: inbox, source: 'csv:drop' }],
    },
    http: { port: 0 },
  })
  return { data, config, inbox }
}

function start(config: string, data: string, env: Record<string, string> = {}): { done: Promise<CliResult>; child: ChildProcess; ready: Promise<Ready> } {
  const p = rateflow(['run', '--config', config, '--data', data], env)
  const ready = new Promise<Ready>((resolve, reject) => {
    let buf = ''
    p.child.stdout!.on('data', (d: Buffer) => {
      buf += d
      const line = buf.split('\n').find((l) => l.includes('"status":"running"'))
      if (line) resolve(JSON.parse(line) as Ready)
    })
    p.then((r) => reject(new Error(`run exited ${r.code} before ready: ${r.stderr}`)))
  })
  return { done: p, child: p.child, ready }
}

async function stats(http: string): Promise<Stats> {
  const r = await fetch(`${http}/v1/stats`)
  return (await r.json()) as Stats
}

async function until(what: string, fn: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

function mqttLines(ids: string[], port = mqttPort): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', 'devices/fw-001-1/usage', '-l'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    p.stderr!.on('data', (d) => (err += d))
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}: ${err}`))))
    for (const id of ids) p.stdin!.write(JSON.stringify({ event_id: id, event_time: '2026-10-05T10:00:00Z', metric: 'api_calls', quantity: '3' }) + '\n')
    p.stdin!.end()
  })
}

describe('rateflow run', () => {
  it('rates MQTT, syslog and CSV inbox usage, serves /health and /v1/stats, drains on SIGINT with exit 0', async () => {
    const { data, config, inbox } = await setup('all')
    const r = start(config, data)
    const ready = await r.ready
    expect(ready.status).toBe('running')
    expect(await (await fetch(`${ready.http}/health`)).json()).toEqual({ status: 'ok' })
    // An analyst's read before anything is rated: it must leave the running rater able to write.
    expect(await query<{ n: string }>(data, 'SELECT count() AS n FROM rated_usage')).toEqual([{ n: '0' }])
    const tcp = ready.syslog[0]!.tcp!
    await mqttLines(Array.from({ length: 50 }, (_, i) => `m${i + 1}`))
    for (const id of ['s1', 's2']) {
      await run('logger', ['--server', '127.0.0.1', '--port', String(tcp), '--tcp', '--rfc5424', `event_id=${id} device_id=fw-002-1 metric=api_calls quantity=2`])
    }
    writeFileSync(join(inbox, 'drop.csv.tmp'), `${CSV_HEADER}\nc1,2026-10-05T11:00:00Z,fw-002-2,,,bytes_out,1000,eu\nc2,2026-10-05T11:01:00Z,fw-002-2,,,bytes_out,2000,eu\nc3,2026-10-05T11:02:00Z,fw-001-2,,,api_calls,4,\n`)
    await run('mv', [join(inbox, 'drop.csv.tmp'), join(inbox, 'drop.csv')])
    await until('55 rated', async () => (await stats(ready.http)).outcomes.rated! >= 55)
    const s = await stats(ready.http)
    expect(s.outcomes).toMatchObject({ read: 55, rated: 55, rejected: 0, suspended: 0, duplicates: 0 })
    expect(s.adapters.map((a) => a.source).sort()).toEqual(['csv:drop', 'mqtt:plant', 'syslog:edge'])

    // Analysts query while the pipeline runs: the running process answers for the data directory it owns.
    expect(await query<{ n: string }>(data, 'SELECT count() AS n FROM rated_usage')).toEqual([{ n: '55' }])
    const csv = await rateflow(['query', "SELECT source, count() AS n FROM rated_usage WHERE source = 'csv:drop' GROUP BY source", '--format', 'CSV', '--data', data])
    expect([csv.code, csv.stdout.trim()]).toEqual([0, '"source","n"\n"csv:drop",3'])
    // Still read-only, and a bad statement is bad input (exit 2) with the store's reason.
    const drop = await rateflow(['query', 'DROP TABLE rated_usage', '--data', data])
    expect(drop.code).toBe(2)
    expect(drop.stderr).toMatch(/DROP is not allowed for read-only queries/)
    const bad = await rateflow(['query', 'SELECT nope FROM rated_usage', '--data', data])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/nope/)
    const format = await rateflow(['query', 'SELECT 1', '--format', 'XML', '--data', data])
    expect([format.code, format.stderr]).toEqual([2, expect.stringMatching(/--format must be one of JSONEachRow, CSV, Pretty/)])
    // What readonly=1 let through is refused by the running process too, before its store sees it: no file is
    // written, and the rater's inserts are not killed (the counts below).
    const outfile = join(tmp.dir, 'all-outfile.txt')
    const into = await rateflow(['query', `SELECT * FROM rated_usage INTO OUTFILE '${outfile}'`, '--data', data])
    expect([into.code, into.stderr, existsSync(outfile)]).toEqual([2, expect.stringContaining('query: INTO OUTFILE is not allowed for read-only queries'), false])
    const kill = await fetch(`${ready.http}/v1/query?sql=${encodeURIComponent('KILL QUERY WHERE 1')}`)
    expect([kill.status, await kill.json()]).toEqual([
      400,
      { error: 'query: KILL is not allowed for read-only queries: give one SELECT (or WITH … SELECT), SHOW, DESCRIBE, EXPLAIN or EXISTS statement' },
    ])
    expect(await query<{ n: string }>(data, 'SELECT count() AS n FROM rated_usage')).toEqual([{ n: '55' }])
    // A parameter given twice: the first was taken silently.
    const twice = await fetch(`${ready.http}/v1/query?sql=${encodeURIComponent('SELECT 1')}&sql=${encodeURIComponent('SELECT 2')}`)
    expect([twice.status, await twice.json()]).toEqual([400, { error: 'query: sql is given more than once' }])
    // An empty SQL is worded as without a running process: the CLI forwards it here.
    const empty = await rateflow(['query', '', '--data', data])
    expect([empty.code, empty.stderr]).toEqual([2, expect.stringContaining('the SQL is empty: give one SELECT')])
    // A gzip file cut short goes to failed/ before any of its rows is published: gzip checks its data at its end.
    const gzRows = Array.from({ length: 2000 }, (_, i) => `g${i},2026-10-05T11:00:00Z,fw-001-2,,,api_calls,1,`)
    const gz = gzipSync(`${CSV_HEADER}\n${gzRows.join('\n')}\n`)
    writeFileSync(join(inbox, 'cut.tmp'), gz.subarray(0, Math.floor(gz.length / 2)))
    await run('mv', [join(inbox, 'cut.tmp'), join(inbox, 'cut.csv.gz')])
    await until('cut.csv.gz in failed/', async () => existsSync(join(inbox, 'failed', 'cut.csv.gz.error.txt')))
    expect(readFileSync(join(inbox, 'failed', 'cut.csv.gz.error.txt'), 'utf8')).toMatch(/cut\.csv\.gz: not readable as gzip: unexpected end of file/)
    expect(await query<{ n: string }>(data, 'SELECT count() AS n FROM rated_usage')).toEqual([{ n: '55' }])
    // A catalog version applied beside the run is checked against the usage rated already, asked of the run (it was not
    // checked, and said nothing): the 3 CSV rows of 11:00 and the 2 syslog lines of today are on or after it.
    const later = { ...sampleCatalog(), version: 'run-later', effective_from: '2026-10-05T10:30:00Z' }
    const applied = await rateflow(['catalog', 'apply', writeJson(join(tmp.dir, 'later-catalog.json'), later), '--data', data])
    expect([applied.code, JSON.parse(applied.stdout)]).toEqual([0, { version: 'run-later', effective_from: '2026-10-05T10:30:00Z', status: 'stored', rated_on_earlier_versions: 5 }])
    expect(applied.stderr).toMatch(/^rateflow: warning: 5 rated rows have an event_time at or after 2026-10-05T10:30:00Z .*stay priced by the version that rated them/)

    r.child.kill('SIGINT')
    const res = await r.done
    // The one line on stderr is the inbox's warning about the cut file.
    expect(res.stderr.trim().split('\n').map((l) => (JSON.parse(l) as { msg: string; file?: string }))).toEqual([
      expect.objectContaining({ msg: 'CSV inbox: invalid file moved to failed/', file: 'cut.csv.gz' }),
    ])
    expect(res.code).toBe(0)
    const rows = await query<{ source: string; n: string; ids: string }>(data, 'SELECT source, count() AS n, uniqExact(event_id) AS ids FROM rated_usage GROUP BY source ORDER BY source')
    expect(rows.map((x) => [x.source, Number(x.n), Number(x.ids)])).toEqual([
      ['csv:drop', 3, 3],
      ['mqtt:plant', 50, 50],
      ['syslog:edge', 2, 2],
    ])
  }, 180_000)

  it('kill -9 midway loses and doubles nothing: the broker redelivers unacked QoS 1 messages to the restarted run', async () => {
    const N = 200
    const { data, config } = await setup('crash')
    const first = start(config, data)
    const ready = await first.ready
    const pub = (async () => {
      for (let i = 0; i < N; i += 10) await mqttLines(Array.from({ length: 10 }, (_, j) => `k${i + j + 1}`))
    })()
    await until('some rated', async () => (await stats(ready.http)).outcomes.rated! >= 30)
    first.child.kill('SIGKILL')
    const res1 = await first.done
    expect(res1.signal).toBe('SIGKILL')
    await pub
    const second = start(config, data)
    const ready2 = await second.ready
    // Rated rows so far (first run) + this run's rated must reach N; read the store's view after drain.
    await until('all rated', async () => {
      const s = await stats(ready2.http)
      return s.outcomes.rated! + s.outcomes.duplicates! >= 1 && (await mqttAcked(ready2.http))
    })
    second.child.kill('SIGINT')
    const res2 = await second.done
    if (res2.code !== 0) console.error(res2.stderr)
    expect(res2.code).toBe(0)
    const rows = await query<{ n: string; ids: string }>(data, "SELECT count() AS n, uniqExact(event_id) AS ids FROM rated_usage WHERE source = 'mqtt:plant'")
    expect(Number(rows[0]!.ids)).toBe(N)
    expect(Number(rows[0]!.n)).toBe(N)
  }, 240_000)
})

describe('rateflow run and a CSV file read when it is killed', () => {
  it('kill -9 mid-file: the restarted run reads the file left in processing/ again, and every row is rated once', async () => {
    const N = 100_000
    const { data, config, inbox } = await setup('csv-crash')
    // Half the rows without event_id: their content ids must not change with the folder the file is read from.
    const rows = Array.from({ length: N }, (_, i) => `${i % 2 ? `x${i}` : ''},2026-10-05T11:00:00Z,fw-001-1,,,api_calls,${i + 1},`)
    writeFileSync(join(tmp.dir, 'csv-crash.tmp'), `${CSV_HEADER}\n${rows.join('\n')}\n`)
    const first = start(config, data)
    const ready = await first.ready
    await run('mv', [join(tmp.dir, 'csv-crash.tmp'), join(inbox, 'usage.csv')])
    const processing = join(inbox, 'processing', 'usage.csv')
    const end = Date.now() + 60_000
    for (;;) {
      const csv = (await stats(ready.http)).adapters.find((a) => a.kind === 'csv')!.stats
      if (csv.batches! >= 2) break
      if (Date.now() > end) throw new Error('timed out waiting for the file to be published')
      await new Promise((r) => setTimeout(r, 20))
    }
    first.child.kill('SIGKILL')
    expect((await first.done).signal).toBe('SIGKILL')
    // Killed while it was read: the file waits in processing/, not in the folder, and not in done/.
    expect([existsSync(processing), existsSync(join(inbox, 'done', 'usage.csv'))]).toEqual([true, false])
    const second = start(config, data)
    const ready2 = await second.ready
    await until('usage.csv in done/', async () => existsSync(join(inbox, 'done', 'usage.csv')), 180_000)
    // The batches the first run published but did not rate come first, then the file's N rows again: done when the
    // store holds N rows and the stream has nothing more (the rater's count stays still).
    let last = -1
    await until('the stream drained', async () => {
      const read = (await stats(ready2.http)).outcomes.read!
      const still = read === last && read >= N
      last = read
      if (!still) await new Promise((r) => setTimeout(r, 1_000))
      return still && (await query<{ n: string }>(data, "SELECT count() AS n FROM rated_usage WHERE source = 'csv:drop'"))[0]!.n === String(N)
    }, 180_000)
    second.child.kill('SIGINT')
    const res2 = await second.done
    expect([res2.code, res2.stderr]).toEqual([0, ''])
    const n = await query<{ n: string; ids: string; qty: string }>(data, "SELECT count() AS n, uniqExact(event_id) AS ids, toString(sum(quantity)) AS qty FROM rated_usage WHERE source = 'csv:drop'")
    expect(n).toEqual([{ n: String(N), ids: String(N), qty: String((N * (N + 1)) / 2) }])
    expect(existsSync(processing)).toBe(false)
  }, 400_000)
})

describe('rateflow run and its HTTP API', () => {
  it('answers `rateflow query` of any length, and stops on SIGINT with idle HTTP connections open', async () => {
    const { data, config } = await setup('http')
    const r = start(config, data, { RATEFLOW_QUERY_TIMEOUT_S: '1' })
    const ready = await r.ready
    const port = Number(new URL(ready.http).port)
    // A web page's requests: by a name its site points at 127.0.0.1 (DNS rebinding), or from its origin. Refused with a
    // JSON error before anything is read; asked by IP address or localhost, the API answers, as `rateflow query` asks.
    const sql = `/v1/query?sql=${encodeURIComponent('SELECT count() AS n FROM rated_usage')}`
    const forbidden = (what: string) => ({ status: 403, body: { error: expect.stringMatching(new RegExp(`^forbidden: ${what}`)) as unknown } })
    expect(await get(port, sql, { host: `attacker.example:${port}` })).toEqual(forbidden(`Host "attacker\\.example:${port}" is not this API's`))
    expect(await get(port, '/health', { host: 'attacker.example' })).toEqual(forbidden('Host "attacker\\.example" is not this API\'s'))
    expect(await get(port, sql, { host: `127.0.0.1:${port}`, origin: 'http://attacker.example' })).toEqual(forbidden('Origin "http://attacker\\.example" is not this API\'s own'))
    expect(await get(port, sql, { host: `127.0.0.1:${port}`, origin: 'null' })).toEqual(forbidden('Origin "null"'))
    expect(await get(port, sql, { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` })).toEqual({ status: 200, body: { n: '0' } })
    expect(await get(port, sql, { host: `localhost:${port}` })).toEqual({ status: 200, body: { n: '0' } })
    expect(await get(port, sql, { host: `localhost.:${port}` })).toEqual({ status: 200, body: { n: '0' } })
    // A page's plain GET carries no Origin: it cannot read the answer, but timed it (sleep() on a condition of the
    // totals). Its browser names the site; another site's, and a same-site page's, are refused before the query runs.
    for (const site of ['cross-site', 'same-site']) {
      expect(await get(port, sql, { host: `127.0.0.1:${port}`, 'sec-fetch-site': site })).toEqual(forbidden(`Sec-Fetch-Site "${site}"`))
    }
    for (const site of ['same-origin', 'none']) {
      expect(await get(port, sql, { host: `127.0.0.1:${port}`, 'sec-fetch-site': site })).toEqual({ status: 200, body: { n: '0' } })
    }
    // The run's analysts' limit (its environment) holds for queries it answers: 400 naming the limit, at the limit.
    const asked = Date.now()
    const slow = await rateflow(['query', 'SELECT count() FROM numbers(1e11)', '--data', data])
    expect([slow.code, slow.stderr]).toEqual([2, expect.stringContaining("query: the query ran longer than the analysts' limit of 1 s (RATEFLOW_QUERY_TIMEOUT_S")])
    expect(Date.now() - asked).toBeLessThan(20_000)
    // ~40 KB of SQL: past Node's 16 KiB limit on request headers once in a URL (it failed with an empty message).
    const ids = Array.from({ length: 3000 }, (_, i) => `'m-${i}'`).join(',')
    const long = await rateflow(['query', `SELECT count() AS n FROM rated_usage WHERE event_id IN (${ids})`, '--data', data])
    expect([long.code, long.stdout.trim(), long.stderr]).toEqual([0, '{"n":"0"}', ''])
    // Clients that connected and sent nothing, or half a request's headers: they must not hold the stop.
    const idle = await new Promise<Socket>((resolve) => { const s = connect(port, '127.0.0.1', () => resolve(s)) })
    const half = await new Promise<Socket>((resolve) => { const s = connect(port, '127.0.0.1', () => resolve(s)) })
    half.write('GET /health HTTP/1.1\r\nHost: x\r\n')
    for (const s of [idle, half]) s.on('error', () => {})
    const t0 = Date.now()
    r.child.kill('SIGINT')
    const res = await r.done
    expect(res.code).toBe(0)
    expect(Date.now() - t0).toBeLessThan(30_000)
    idle.destroy()
    half.destroy()
  }, 120_000)
})

describe('rateflow run stopping during an analyst\'s query', () => {
  it('cancels the query once the HTTP drain is over, and exits 0 within seconds', async () => {
    const { data, config } = await setup('stop-query')
    const r = start(config, data)
    const ready = await r.ready
    // It would run for hours; the default limit ends it after 300 s, which the stop waited for (the test's timeout is less).
    const long = fetch(`${ready.http}/v1/query?sql=${encodeURIComponent('SELECT count() FROM numbers(1e14)')}`).then(
      (res) => res.status,
      (err: unknown) => (err as Error).message,
    )
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const t0 = Date.now()
    r.child.kill('SIGINT')
    const res = await r.done
    expect([res.code, res.signal]).toEqual([0, null])
    // 5 s of HTTP drain, then the cancel: ~20 ms here.
    expect(Date.now() - t0).toBeLessThan(20_000)
    // The client's connection was closed with the rest after the drain.
    expect(await long).toBe('fetch failed')
  }, 120_000)
})

/**
 * `n` analysts' queries of an hour or so each, sent at once to the run, a second before this returns: each answer as
 * [status, the API's error], or [0, fetch's message] when the connection was cut.
 */
async function slowQueries(http: string, n: number): Promise<Array<Promise<readonly [number, string]>>> {
  const slow = encodeURIComponent('SELECT sleepEachRow(0.00004) FROM numbers(100000000)')
  const answers = Array.from({ length: n }, () =>
    fetch(`${http}/v1/query?sql=${slow}`).then(
      async (res) => [res.status, ((await res.json()) as { error?: string }).error ?? ''] as const,
      (err: unknown) => [0, (err as Error).message] as const,
    ),
  )
  await new Promise((resolve) => setTimeout(resolve, 1000))
  return answers
}

/** Drops a one-row CSV (event `id` of fw-001-1) into the inbox and waits up to `ms` for the run to have rated a row. */
async function dropAndRate(http: string, inbox: string, id: string, ms: number): Promise<void> {
  writeFileSync(join(inbox, `${id}.csv.tmp`), `${CSV_HEADER}\n${id},2026-10-05T11:00:00Z,fw-001-1,,,api_calls,4,\n`)
  await run('mv', [join(inbox, `${id}.csv.tmp`), join(inbox, `${id}.csv`)])
  await until(`${id} rated`, async () => ((await stats(http)).outcomes.rated ?? 0) >= 1, ms)
}

describe('rateflow run under several long analysts\' queries', () => {
  it('rates on while they wait their turn, refuses more than can wait, and a stop refuses those waiting at once', async () => {
    // Each query waiting for the analysts' session held one of libuv's 4 threads: four held them all, and a CSV dropped
    // meanwhile waited for their whole limit; a stop then waited for each waiting query to run to its limit in turn.
    const { data, config, inbox } = await setup('many-queries')
    const r = start(config, data, { RATEFLOW_QUERY_TIMEOUT_S: '60' })
    const ready = await r.ready
    // One runs, 16 wait, the 18th is refused at once: the store is busy.
    const answers = await slowQueries(ready.http, 18)
    await dropAndRate(ready.http, inbox, 'q1', 15_000)
    // 405 says which methods are taken.
    const put = await fetch(`${ready.http}/v1/query`, { method: 'PUT' })
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'GET, POST'])
    r.child.kill('SIGINT')
    const res = await r.done
    expect([res.code, res.signal]).toEqual([0, null])
    // The one running was cancelled; the 16 waiting were answered at the stop, none run to its limit.
    const got = await Promise.all(answers)
    const busy = 'query: the store is busy: 16 analysts\' queries are waiting for the one running (the embedded store runs one at a time); try again later'
    const closing = 'query: the store is closing (rateflow run is stopping): the query did not run'
    expect([got.filter((g) => g[0] === 503 && g[1] === busy).length, got.filter((g) => g[0] === 503 && g[1] === closing).length]).toEqual([1, 16])
  }, 120_000)
})

describe('rateflow run answering apply commands while analysts\' queries run', () => {
  it('accounts apply and catalog apply get their answers from the run at once, not behind the analysts', async () => {
    // Their questions went through /v1/query, onto the analysts' session behind a long query: accounts apply exited 1
    // after 30 s ("cannot tell whether account … has rated usage"), catalog apply lost its warning.
    const { data, config, inbox } = await setup('asks')
    const r = start(config, data, { RATEFLOW_QUERY_TIMEOUT_S: '60' })
    const ready = await r.ready
    try {
      await dropAndRate(ready.http, inbox, 'a1', 30_000)
      const answers = await slowQueries(ready.http, 2)
      const accounts = sampleAccounts({ customers: 2, devicesPerAccount: 2 })
      const owner = accounts.customers.flatMap((c) => c.accounts).find((a) => a.subscriptions.some((s) => s.devices.some((d) => d.device_id === 'fw-001-1')))!
      owner.bill_cycle_day = 5
      const t0 = Date.now()
      const a = await rateflow(['accounts', 'apply', writeJson(join(tmp.dir, 'asks-cycle.json'), accounts), '--data', data])
      expect([a.code, a.stderr]).toEqual([2, expect.stringContaining(`"${owner.id}"`)])
      const c = await rateflow(['catalog', 'apply', writeJson(join(tmp.dir, 'asks-v2.json'), { ...sampleCatalog(), version: 'asks-v2', effective_from: '2026-10-02T00:00:00Z' }), '--data', data])
      expect([c.code, JSON.parse(c.stdout)]).toEqual([0, expect.objectContaining({ status: 'stored', rated_on_earlier_versions: 1 })])
      // Both well before the analysts' queries end (60 s each, one after the other).
      expect(Date.now() - t0).toBeLessThan(25_000)
      void answers
    } finally {
      r.child.kill('SIGINT')
      await r.done
    }
  }, 120_000)
})

describe('rateflow run and late guiding data', () => {
  it('rates held usage once `accounts apply` binds its device, while run owns the data directory', async () => {
    const { data, config, inbox } = await setup('late')
    const r = start(config, data)
    const ready = await r.ready
    writeFileSync(join(inbox, 'late.csv.tmp'), `${CSV_HEADER}\nl1,2026-10-05T11:00:00Z,fw-new-9,,,api_calls,4,\nl2,2026-10-05T11:01:00Z,fw-001-1,,,api_calls,2,\n`)
    await run('mv', [join(inbox, 'late.csv.tmp'), join(inbox, 'late.csv')])
    await until('one rated, one held', async () => {
      const o = (await stats(ready.http)).outcomes
      return o.rated === 1 && o.suspended === 1
    })
    // Bind the device. The command writes the guiding data and leaves the release to the running rater.
    const accounts = sampleAccounts({ customers: 2, devicesPerAccount: 2 })
    accounts.customers[0]!.accounts[0]!.subscriptions[0]!.devices!.push({ device_id: 'fw-new-9', from: '2026-10-01T00:00:00Z', to: null })
    const applied = await rateflow(['accounts', 'apply', writeJson(join(tmp.dir, 'late-accounts-2.json'), accounts), '--data', data])
    expect(applied.code).toBe(0)
    expect(JSON.parse(applied.stdout)).toMatchObject({ released: 0 })
    // Not this command's release, and it says whose: "released": 0 alone read as "nothing was held".
    expect(applied.stderr).toMatch(/held usage this data owns is released by the rateflow run on this data directory \(pid \d+; its \/v1\/stats counts it\)/)
    await until('the held event rated', async () => (await query<{ n: string }>(data, "SELECT count() AS n FROM rated_usage WHERE event_id = 'l1'"))[0]!.n === '1')
    expect(await query(data, "SELECT event_id, account_id FROM rated_usage WHERE source = 'csv:drop' ORDER BY event_id")).toEqual([
      { event_id: 'l1', account_id: 'a-001' },
      { event_id: 'l2', account_id: 'a-001' },
    ])
    expect(await query(data, 'SELECT event_id, status FROM suspended_usage FINAL')).toEqual([{ event_id: 'l1', status: 'released' }])
    // The stream's batches still reconcile (read = rated + duplicates + rejected + suspended); the release is apart.
    await until('the release counted', async () => (await stats(ready.http)).outcomes.released === 1)
    expect((await stats(ready.http)).outcomes).toEqual({ batches: 1, read: 2, rated: 1, duplicates: 0, rejected: 0, suspended: 1, released: 1 })
    r.child.kill('SIGINT')
    const res = await r.done
    expect([res.code, res.stderr]).toEqual([0, ''])
  }, 120_000)
})

describe('rateflow run with a secured MQTT broker', () => {
  it('connects over TLS with username and password_env, and rates what the broker delivers', async () => {
    const dir = join(tmp.dir, 'secure-broker')
    mkdirSync(dir)
    const pki = await makeTestPki(dir)
    const secure = await startMosquitto(dir, [], 10_000, [{ users: { rateflow: 'e2e-secret' }, tls: { ca: pki.ca, ...pki.server } }])
    try {
      const { data, config } = await setup('secure', {
        url: `mqtts://127.0.0.1:${secure.listenerPorts[0]!}`, topics: ['devices/+/usage'], source: 'mqtt:plant', client_id: 'rateflow-secure',
        username: 'rateflow', password_env: 'RATEFLOW_E2E_MQTT_PASSWORD', tls: { ca: pki.ca },
      })
      const r = start(config, data, { RATEFLOW_E2E_MQTT_PASSWORD: 'e2e-secret' })
      const ready = await r.ready
      // Published on the broker's anonymous listener; the broker routes it to the TLS + password subscriber.
      await mqttLines(Array.from({ length: 20 }, (_, i) => `tls${i + 1}`), secure.port)
      await until('20 rated', async () => (await stats(ready.http)).outcomes.rated! >= 20)
      r.child.kill('SIGINT')
      const res = await r.done
      expect(res.code).toBe(0)
      const rows = await query<{ n: string }>(data, "SELECT count() AS n FROM rated_usage WHERE source = 'mqtt:plant' AND startsWith(event_id, 'tls')")
      expect(Number(rows[0]!.n)).toBe(20)
    } finally {
      await secure.stop()
    }
  }, 180_000)

  it('exits 2 at once when the broker refuses the credentials, and does not stay alive reconnecting', async () => {
    const dir = join(tmp.dir, 'refused-broker')
    mkdirSync(dir)
    const secure = await startMosquitto(dir, [], 10_000, [{ users: { rateflow: 'e2e-secret' } }])
    try {
      const config = writeJson(join(dir, 'rateflow.json'), {
        adapters: {
          mqtt: [{ url: `mqtt://127.0.0.1:${secure.listenerPorts[0]!}`, topics: ['devices/+/usage'], source: 'mqtt:plant', client_id: 'rateflow-refused', username: 'rateflow', password_env: 'RATEFLOW_E2E_WRONG_PASSWORD' }],
        },
        http: { port: 0 },
      })
      const run = rateflow(['run', '--config', config, '--data', join(dir, 'data')], { RATEFLOW_E2E_WRONG_PASSWORD: 'not-it' })
      // It printed the refusal and stopped the rest, then stayed alive reconnecting once a second (mqtt.js set its
      // reconnect timer up again after end()): a supervisor saw a live process.
      const stuck = setTimeout(() => run.child.kill('SIGKILL'), 30_000)
      const res = await run.finally(() => clearTimeout(stuck))
      expect(res.signal, 'still running 30 s after the refusal').toBeNull()
      expect(res.code).toBe(2)
      expect(res.stderr).toMatch(/refused the connection: Not authorized \(reason code 135;/)
      // Nothing was connected, so nothing was lost, and nothing reconnects.
      expect(res.stderr).not.toMatch(/connection lost|reconnecting/)
    } finally {
      await secure.stop()
    }
  }, 60_000)

  it('exits 1 naming http.port, without a stack trace, when the HTTP port is taken', async () => {
    const dir = join(tmp.dir, 'busy-http')
    mkdirSync(dir)
    const busy = createServer()
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
    const port = (busy.address() as AddressInfo).port
    try {
      const config = writeJson(join(dir, 'rateflow.json'), { adapters: {}, http: { port, host: '127.0.0.1' } })
      const res = await rateflow(['run', '--config', config, '--data', join(dir, 'data')])
      expect(res.code).toBe(1)
      expect(res.stderr).toContain(`http: cannot listen on 127.0.0.1 port ${port} (config http.port / http.host): listen EADDRINUSE`)
      expect(res.stderr).not.toMatch(/\n\s+at /)
    } finally {
      busy.close()
    }
  }, 60_000)

  it('exits 2 before starting anything when a secret or TLS file is missing, naming each by its JSON path', async () => {
    const dir = join(tmp.dir, 'missing-secrets')
    mkdirSync(dir)
    const config = writeJson(join(dir, 'rateflow.json'), {
      adapters: {
        mqtt: [
          { url: 'mqtts://127.0.0.1:8883', topics: ['a/+'], source: 'mqtt:a', username: 'u', password_env: 'RATEFLOW_E2E_UNSET_PASSWORD', tls: { ca: join(dir, 'ca.pem') } },
          { url: 'mqtt://127.0.0.1:1883', topics: ['b/+'], source: 'mqtt:b', username: 'u', password_file: join(dir, 'password.txt') },
        ],
      },
    })
    const res = await rateflow(['run', '--config', config, '--data', join(dir, 'data')])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('$.adapters.mqtt[0].password_env: environment variable RATEFLOW_E2E_UNSET_PASSWORD is not set (or empty)')
    expect(res.stderr).toContain(`$.adapters.mqtt[0].tls.ca: cannot read ${join(dir, 'ca.pem')}: ENOENT`)
    expect(res.stderr).toContain(`$.adapters.mqtt[1].password_file: cannot read ${join(dir, 'password.txt')}: ENOENT`)
    expect(res.stderr).toMatch(/3 problems/)
  }, 60_000)

  it('exits 2 when the config file gives a key twice, is not UTF-8 or not JSON, naming the path and file, or the line and column', async () => {
    const dir = join(tmp.dir, 'twice-key')
    mkdirSync(dir)
    const config = join(dir, 'rateflow.json')
    writeFileSync(config, '{"adapters": {}, "http": {"port": 0, "host": "127.0.0.1", "host": "0.0.0.0"}, "bogus key": 1}\n')
    const res = await rateflow(['run', '--config', config, '--data', join(dir, 'data')])
    expect([res.code, res.stderr]).toEqual([2, expect.stringContaining(`${config}: 2 problems\n  $.http.host: key "host" is given twice (lines 1 and 1): keep one\n  $["bogus key"]: unknown`)])
    writeFileSync(config, Buffer.from('{"adapters": {"csv": [{"watch": "./inbo\xe9", "source": "csv:a"}]}}', 'latin1'))
    const bad = await rateflow(['run', '--config', config, '--data', join(dir, 'data')])
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining(`${config}: not UTF-8 (at byte 39)`)])
    writeFileSync(config, '{\n  "adapters": {\n    "mqtt" [\n  ]}}\n')
    const syntax = await rateflow(['run', '--config', config, '--data', join(dir, 'data')])
    expect([syntax.code, syntax.stderr]).toEqual([2, `rateflow: ${config}: not valid JSON at line 3, column 12: Expected ':' after property name in JSON\n`])
    expect(existsSync(join(dir, 'data'))).toBe(false)
  }, 60_000)

  it('exits 2 when --config is given twice, naming it (the last one was taken silently)', async () => {
    const res = await rateflow(['run', '--config', join(tmp.dir, 'a.json'), '--config', join(tmp.dir, 'b.json'), '--data', join(tmp.dir, 'twice')])
    expect([res.code, res.stderr]).toEqual([2, expect.stringContaining('run: --config is given more than once')])
    const empty = await rateflow(['run', '--config=', '--data', join(tmp.dir, 'twice')])
    expect([empty.code, empty.stderr]).toEqual([2, 'rateflow: run: --config needs a file (rateflow.json)\n'])
  })
})

/** GET `path` from 127.0.0.1:`port` with these headers (fetch cannot set Host); the status and the JSON body. */
function get(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** True once the broker has nothing left to deliver: no message arrived in the last 2 s and every message is acked. */
let lastMessages = -1
let stableSince = 0
async function mqttAcked(http: string): Promise<boolean> {
  const s = await stats(http)
  const m = s.adapters.find((a) => a.kind === 'mqtt')!.stats
  if (m.messages !== lastMessages) {
    lastMessages = m.messages!
    stableSince = Date.now()
    return false
  }
  return m.acked === m.messages && Date.now() - stableSince > 2000 && s.outcomes.batches! > 0
}
