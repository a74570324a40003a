import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ErrorCode, RateflowError } from '../common/errors.js'
import { openStore, type Store } from '../pipeline/store.js'
import { TABLE_FUNCTIONS } from '../pipeline/read-only-sql.js'
import { parseAsk, queryFormat, queryRun, readOnlyQuery } from './query.js'

describe('queryFormat', () => {
  it('maps the CLI names to ClickHouse formats, JSONEachRow by default', () => {
    expect([queryFormat(undefined), queryFormat('JSONEachRow'), queryFormat('CSV'), queryFormat('Pretty')]).toEqual([
      'JSONEachRow',
      'JSONEachRow',
      'CSVWithNames',
      'PrettyCompactMonoBlock',
    ])
  })

  it('any other name is a usage error naming the choices, names of Object.prototype included', () => {
    for (const name of ['XML', 'toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      let err: unknown
      try {
        queryFormat(name)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(RateflowError)
      expect([name, (err as RateflowError).code, (err as Error).message]).toEqual([name, ErrorCode.BadUsage, 'query: --format must be one of JSONEachRow, CSV, Pretty'])
    }
  })
})

/** Runs `f` on an embedded store in a new temp directory (also given), then closes the store and removes the directory. */
async function withStore(f: (store: Store, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-query-'))
  const store = await openStore({ dataDir: dir })
  try {
    await store.migrate()
    await f(store, dir)
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The error readOnlyQuery rejects with, as [code, message]. */
async function refusal(store: Store, sql: string): Promise<[string, string]> {
  const err = await readOnlyQuery(store, sql, queryFormat(undefined)).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err, sql).toBeInstanceOf(RateflowError)
  return [(err as RateflowError).code, (err as Error).message]
}

const READS = 'give one SELECT (or WITH … SELECT), SHOW, DESCRIBE, EXPLAIN or EXISTS statement'

describe('readOnlyQuery on embedded ClickHouse', () => {
  it('refuses INTO OUTFILE as bad input, and writes no file: a new one is not created, an existing one keeps its bytes', () =>
    withStore(async (store, dir) => {
      const created = join(dir, 'out.txt')
      // What the store keeps as JSON files, e.g. <data>/catalog/accounts.json: TRUNCATE would have emptied it.
      const kept = join(dir, 'accounts.json')
      writeFileSync(kept, '{"customers":[]}\n')
      for (const sql of [
        `SELECT 1 INTO OUTFILE '${created}'`,
        `SELECT 1 INTO OUTFILE '${created}' AND STDOUT`,
        `SELECT 1 INTO OUTFILE '${created}.gz' COMPRESSION 'gzip'`,
        `select count() from rated_usage into outfile '${kept}' truncate`,
        `SELECT 1 INTO OUTFILE '${kept}' APPEND`,
        `SELECT 1 INTO/**/OUTFILE '${kept}' TRUNCATE; -- after`,
      ]) {
        expect(await refusal(store, sql)).toEqual([
          ErrorCode.BadInput,
          'query: INTO OUTFILE is not allowed for read-only queries: they write no file (redirect the printed result instead)',
        ])
      }
      expect([existsSync(created), existsSync(`${created}.gz`), readFileSync(kept, 'utf8')]).toEqual([false, false, '{"customers":[]}\n'])
    }))

  it('refuses KILL, SET, a second statement, a FORMAT clause and an empty text, each naming what it refused', () =>
    withStore(async (store) => {
      expect(await refusal(store, 'KILL QUERY WHERE 1')).toEqual([ErrorCode.BadInput, `query: KILL is not allowed for read-only queries: ${READS}`])
      expect(await refusal(store, 'SET readonly = 0')).toEqual([ErrorCode.BadInput, `query: SET is not allowed for read-only queries: ${READS}`])
      expect(await refusal(store, 'SYSTEM FLUSH LOGS')).toEqual([ErrorCode.BadInput, `query: SYSTEM is not allowed for read-only queries: ${READS}`])
      expect(await refusal(store, 'SELECT 1; SELECT 2')).toEqual([
        ErrorCode.BadInput,
        'query: more than one statement is not allowed: give one statement per query (a trailing ; alone is fine)',
      ])
      expect(await refusal(store, 'SELECT 1 FORMAT CSV')).toEqual([
        ErrorCode.BadInput,
        'query: a FORMAT clause is not allowed in the SQL: choose the output format with --format (format= on /v1/query)',
      ])
      expect(await refusal(store, '  ')).toEqual([ErrorCode.BadInput, `query: the SQL is empty: ${READS}`])
    }))

  it('refuses reads that reach outside the store (a file, the network, a program), and knows every table function the engine has', () =>
    withStore(async (store) => {
      const outside = (name: string) => `query: ${name}() is not allowed for read-only queries: it reads files or the network, or runs programs, outside the store's tables`
      expect(await refusal(store, "SELECT file('/etc/hostname')")).toEqual([ErrorCode.BadInput, outside('file')])
      expect(await refusal(store, "DESC url('http://127.0.0.1:9/x.csv', 'CSVWithNames')")).toEqual([ErrorCode.BadInput, outside('url')])
      expect((await refusal(store, 'SELECT * FROM system.models'))[1]).toMatch(/system\.models is not allowed/)
      // A table function of a newer engine must be judged (safe or not) before analysts can call it.
      const names = (await store.text('SELECT name FROM system.table_functions', 'TabSeparated')).split('\n').filter(Boolean)
      expect(names.filter((n) => !TABLE_FUNCTIONS.has(n.toLowerCase()))).toEqual([])
      expect(JSON.parse(await readOnlyQuery(store, 'SELECT count() AS n FROM numbers(3)', queryFormat(undefined)))).toEqual({ n: '3' })
    }))

  it('runs reads whose literals, heredocs and comments hold those keywords: the engine reads them as the check does', () =>
    withStore(async (store) => {
      const run = async (sql: string) => JSON.parse(await readOnlyQuery(store, sql, queryFormat(undefined))) as unknown
      expect(await run("SELECT 'INTO OUTFILE' AS s")).toEqual({ s: 'INTO OUTFILE' })
      expect(await run("SELECT 'it''s; KILL', 'a\\'; INTO OUTFILE' AS s")).toMatchObject({ s: "a'; INTO OUTFILE" })
      expect(await run("SELECT $$; INTO OUTFILE 'x'$$ AS s")).toEqual({ s: "; INTO OUTFILE 'x'" })
      expect(await run("SELECT $q$it's; FORMAT CSV$q$ AS s")).toEqual({ s: "it's; FORMAT CSV" })
      expect(await run('SELECT ‘; KILL QUERY WHERE 1’ AS s')).toEqual({ s: '; KILL QUERY WHERE 1' })
      expect(await run('SELECT 1 /* a /* nested */ INTO OUTFILE; */ + 1 AS n')).toEqual({ n: 2 })
      expect(await run('SELECT 1 AS n // ; KILL QUERY WHERE 1')).toEqual({ n: 1 })
      expect(await run('SELECT 1 AS n # ; KILL QUERY WHERE 1')).toEqual({ n: 1 })
      expect(await run('SELECT 1 AS n; -- done')).toEqual({ n: 1 })
      expect(await run("SELECT format('{}-{}', 'a', 'b') AS format")).toEqual({ format: 'a-b' })
      expect(await run('WITH 2 AS x SELECT x AS n')).toEqual({ n: 2 })
      expect(await run('SELECT count() AS n FROM rated_usage')).toEqual({ n: '0' })
    }))
})

describe('queryRun (a query answered by a running `rateflow run`)', () => {
  /** A stand-in for the run's HTTP API that answers every request with `answer`, and its RunInfo. */
  async function standIn(answer: (res: import('node:http').ServerResponse) => void) {
    const { createServer } = await import('node:http')
    const server = createServer((req, res) => {
      req.resume()
      req.on('end', () => answer(res))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as import('node:net').AddressInfo).port
    return { run: { pid: 1, http: `http://127.0.0.1:${port}` }, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }) }
  }
  const errorOf = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as RateflowError)

  it('an answer cut part way (the run stopped) is a runtime error that says so, not a stack trace', async () => {
    const s = await standIn((res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('x'.repeat(8192))
      setTimeout(() => res.socket?.destroy(), 50)
    })
    try {
      const err = await errorOf(queryRun(s.run, 'SELECT 1', 'JSONEachRow'))
      expect(err).toBeInstanceOf(RateflowError)
      expect([err!.code, err!.message]).toEqual([ErrorCode.Internal, expect.stringMatching(/^query: the rateflow run \(pid 1\) at http:\/\/127\.0\.0\.1:\d+ stopped while answering: /)])
    } finally {
      await s.close()
    }
  })

  it('SQL longer than the run reads (413) is bad input, as a refused statement (400) is; other answers are named by status', async () => {
    for (const [status, body, code] of [
      [413, '{"error":"query: the SQL is longer than 1048576 bytes"}', ErrorCode.BadInput],
      [400, '{"error":"query: KILL is not allowed"}', ErrorCode.BadInput],
      [431, '', ErrorCode.Internal],
    ] as const) {
      const s = await standIn((res) => {
        res.writeHead(status)
        res.end(body)
      })
      try {
        const err = await errorOf(queryRun(s.run, 'SELECT 1', 'JSONEachRow'))
        expect(err!.code).toBe(code)
        if (status === 431) expect(err!.message).toMatch(/answered HTTP 431$/)
      } finally {
        await s.close()
      }
    }
  })
})

describe('readOnlyQuery against a server that never answers', () => {
  it('is a runtime failure naming CLICKHOUSE_URL once the client gives up, not bad input', async () => {
    // A server that takes the connection and the request and says nothing. The client's plain "Timeout error." (no
    // code) was read as the store refusing the SQL: exit 2 after five minutes, blaming the analyst's query.
    const sockets = new Set<import('node:net').Socket>()
    const silent = createServer((s) => {
      sockets.add(s)
      s.on('data', () => undefined)
    })
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok))
    const port = (silent.address() as AddressInfo).port
    const dir = mkdtempSync(join(tmpdir(), 'rateflow-query-'))
    const store = await openStore({ dataDir: dir, url: `http://127.0.0.1:${port}`, requestTimeoutMs: 300 })
    try {
      const err = await readOnlyQuery(store, 'SELECT 1', queryFormat(undefined)).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(RateflowError)
      expect([(err as RateflowError).code, (err as Error).message]).toEqual([
        ErrorCode.ServiceUnavailable,
        'query: the ClickHouse server of CLICKHOUSE_URL does not answer: Timeout error.',
      ])
    } finally {
      await store.close()
      for (const s of sockets) s.destroy()
      await new Promise((ok) => silent.close(ok))
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('readOnlyQuery on a store whose files are damaged', () => {
  it('is a runtime failure of the store (exit 1), not bad input: the SQL is fine', () =>
    withStore(async (store) => {
      // A part's data file overwritten in the middle: "Unknown codec family code" or a checksum error was exit 2, as if
      // the analyst's SQL were wrong.
      await store.command('CREATE TABLE damaged (x UInt64) ENGINE = MergeTree ORDER BY x')
      await store.command('INSERT INTO damaged SELECT number FROM numbers(200000)')
      const [part] = await store.rows<{ path: string }>("SELECT path FROM system.parts WHERE table = 'damaged' AND active")
      const file = ['data.bin', 'x.bin'].map((f) => join(part!.path, f)).find((f) => existsSync(f))!
      const bytes = readFileSync(file)
      bytes.fill(0xd8, 0, Math.min(bytes.length, 4096))
      writeFileSync(file, bytes)
      const err = await readOnlyQuery(store, 'SELECT sum(x) FROM damaged', queryFormat(undefined)).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(RateflowError)
      expect([(err as RateflowError).code, (err as Error).message]).toEqual([ErrorCode.StoreFailure, expect.stringMatching(/^query: the store failed reading: /)])
    }))
})

describe('parseAsk', () => {
  it('takes the named questions only, so /v1/ask runs no SQL it is sent', () => {
    expect(parseAsk('{"ask":"rated_after","at":"2026-10-01T00:00:00Z"}')).toEqual({ ask: 'rated_after', at: '2026-10-01T00:00:00Z' })
    expect(parseAsk('{"accounts":["a-1","x\\u0027y"],"ask":"accounts_with_rated_usage"}')).toEqual({ ask: 'accounts_with_rated_usage', accounts: ['a-1', "x'y"] })
    for (const body of ['SELECT 1', '{"ask":"rated_after","at":"tomorrow"}', '{"ask":"rated_after","at":"x","sql":"DROP TABLE rated_usage"}', '{"ask":"query","sql":"SELECT 1"}', '{"ask":"accounts_with_rated_usage","accounts":[1]}', '[]', 'null']) {
      expect(() => parseAsk(body), body).toThrow(expect.objectContaining({ code: ErrorCode.BadInput }))
    }
  })
})

describe('readOnlyQuery, several at once on the embedded store', () => {
  it('a query that waited its turn runs with the same limits, and answers', () =>
    withStore(async (store) => {
      // It was sent a shorter time limit (what was left of its own), which chDB refuses on a read-only session:
      // "Cannot modify 'max_execution_time' setting in readonly mode", exit 2, for any query that waited a second.
      const first = readOnlyQuery(store, 'SELECT sleepEachRow(0.5) FROM numbers(4)', queryFormat(undefined))
      const second = readOnlyQuery(store, 'SELECT 42 AS answer', queryFormat(undefined))
      await first
      expect(JSON.parse((await second).toString())).toEqual({ answer: 42 })
    }))
})
