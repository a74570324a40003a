import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { committedBatches, committedBatchLines, DDL, fileType, MAX_PARAM_BYTES, MIN_SERVER_VERSION, openStore, paramChunks, PRUNE_INTENTS, serverVersionProblem, type Store } from './store.js'
import { fromTsv, tsv, tsvArray, tsvMap } from './tsv.js'

/** Runs `f` on an embedded store in a new temp directory, then closes the store and removes the directory. */
async function withStore(f: (store: Store) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rateflow-store-'))
  const store = await openStore({ dataDir: dir })
  try {
    await f(store)
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('fileType', () => {
  it('reads LowCardinality columns as their inner type, nested or not, and leaves other types alone', () => {
    expect(fileType('LowCardinality(String)')).toBe('String')
    expect(fileType('LowCardinality(Nullable(String))')).toBe('Nullable(String)')
    expect(fileType('Map(LowCardinality(String), String)')).toBe('Map(String, String)')
    expect(fileType('Tuple(LowCardinality(Nullable(FixedString(16))), UInt8)')).toBe('Tuple(Nullable(FixedString(16)), UInt8)')
    expect(fileType("DateTime64(3, 'UTC')")).toBe("DateTime64(3, 'UTC')")
    expect(fileType('Decimal(38, 9)')).toBe('Decimal(38, 9)')
  })

  it('leaves no LowCardinality in any file structure of the DDL', () => {
    const types = DDL.flatMap((ddl) => [...ddl.matchAll(/LowCardinality\([^)]*\)/g)].map((m) => m[0]))
    expect(types.length).toBeGreaterThan(0)
    for (const t of types) expect(fileType(t)).not.toContain('LowCardinality')
  })
})

describe('serverVersionProblem', () => {
  it("refuses a server older than MIN_SERVER_VERSION, naming its version, the one needed and CLICKHOUSE_URL", () => {
    // Debian bookworm's clickhouse-server: its first CREATE TABLE fails on DateTime64, which says nothing of versions.
    const p = serverVersionProblem('18.16.1')
    expect(p).toContain('version 18.16.1')
    expect(p).toContain(`needs ${MIN_SERVER_VERSION.join('.')} or later`)
    expect(p).toContain('CLICKHOUSE_URL')
    expect(serverVersionProblem('23.2.7.32')).toMatch(/version 23\.2\.7\.32/)
    expect(serverVersionProblem('22.12.1.1')).toBeDefined()
    expect(serverVersionProblem('9.99')).toBeDefined()
  })

  it('accepts 23.3 and every later release, whatever follows the minor number', () => {
    for (const v of ['23.3', '23.3.1.2823', '23.10.1.1', '24.8.4.13', '25.3.1.2703-lts', '26.7.2.1', ' 24.8.4.13\n', '100.0.0']) {
      expect(serverVersionProblem(v), v).toBeUndefined()
    }
  })

  it('says nothing of a text that is no version number (the failure is then reported as it came)', () => {
    for (const v of ['', 'unknown', 'v24.8', '24']) expect(serverVersionProblem(v), v).toBeUndefined()
  })

  it("passes embedded ClickHouse's own version (chDB)", () =>
    withStore(async (store) => {
      const [row] = await store.rows<{ v: string }>('SELECT version() AS v')
      expect(serverVersionProblem(row!.v)).toBeUndefined()
    }))
})

describe('insertTsv on embedded ClickHouse', () => {
  it('with unique keys, inserts every row as written; without, the engine replaces rows of one key within the insert', () =>
    withStore(async (store) => {
      await store.command('CREATE TABLE t (k String, v LowCardinality(String)) ENGINE = ReplacingMergeTree ORDER BY k')
      // Two rows of one key in one insert: only a caller that breaks its promise would send this.
      await store.insertTsv('t', 'a\t1\na\t2\nb\t3\n', { uniqueKeys: true })
      expect(await store.rows('SELECT k, v FROM t ORDER BY k, v')).toEqual([{ k: 'a', v: '1' }, { k: 'a', v: '2' }, { k: 'b', v: '3' }])
      await store.command('TRUNCATE TABLE t')
      await store.insertTsv('t', 'a\t1\na\t2\nb\t3\n')
      expect(await store.rows('SELECT k, v FROM t ORDER BY k, v')).toEqual([{ k: 'a', v: '2' }, { k: 'b', v: '3' }])
    }))
})

describe('readOnlyBytes on embedded ClickHouse', () => {
  it("refuses an analyst's write, and leaves the writer able to insert (a `rateflow run` serves both)", () =>
    withStore(async (store) => {
      await store.command('CREATE TABLE t (k String) ENGINE = MergeTree ORDER BY k')
      await store.insertTsv('t', 'a\n')
      expect((await store.readOnlyBytes('SELECT count() FROM t', 'TabSeparated')).toString()).toBe('1\n')
      // Refused before the engine sees it; readonly=1 still stops the reads that write (EXPLAIN PIPELINE builds the
      // insert) and settings changes.
      await expect(store.readOnlyBytes('INSERT INTO t VALUES (1)', 'TabSeparated')).rejects.toThrow(/INSERT is not allowed for read-only queries/)
      await expect(store.readOnlyBytes("EXPLAIN PIPELINE INSERT INTO t SELECT 'x'", 'TabSeparated')).rejects.toThrow(/readonly/i)
      await expect(store.readOnlyBytes('SELECT 1 SETTINGS readonly = 0', 'TabSeparated')).rejects.toThrow(/readonly/i)
      // The writer's session is not the analysts': it goes on inserting, and analysts see what it wrote.
      await store.insertTsv('t', 'b\n', { uniqueKeys: true })
      await store.command("INSERT INTO t VALUES ('c')")
      expect((await store.readOnlyBytes('SELECT count() FROM t', 'TabSeparated')).toString()).toBe('3\n')
    }))
})

describe('TabSeparated text back from the store', () => {
  // The rater reads its dedupe keys back as TabSeparated (fromTsv): every string it stored must come back as it was,
  // whatever characters an event id holds.
  it('gives back every string written with tsv(), once unescaped by fromTsv', () =>
    withStore(async (store) => {
      await store.command('CREATE TABLE t (n UInt32, k LowCardinality(String), v String) ENGINE = MergeTree ORDER BY n')
      const special = ['a\tb', 'line\nbreak', 'back\\slash', "quo'te", 'nul\0byte', '\r\f\b\x07\v', 'ünïcødé €', '\\t literal', '😀', '']
      const random = fc.sample(fc.string({ unit: 'binary', maxLength: 24 }), 300)
      const values = [...special, ...random]
      await store.insertTsv('t', values.map((v, n) => `${n}\t${tsv(v)}\t${tsv(v)}\n`).join(''))
      const text = await store.text('SELECT k, v FROM t WHERE n >= {from:UInt32} ORDER BY n', 'TabSeparated', { from: 0 })
      const rows = text.split('\n').slice(0, -1).map((line) => line.split('\t').map(fromTsv))
      expect(rows).toEqual(values.map((v) => [v, v]))
    }))
})

describe('Map and Array fields of TabSeparated input', () => {
  // usage_events and suspended_usage store an event's dimensions as Map(String, String); the flush intents and commits
  // name their batches as Array(String). Dimension keys and values come from devices and files: any character.
  it('store every key, value and element as written (tsvMap, tsvArray)', () =>
    withStore(async (store) => {
      await store.command('CREATE TABLE t (n UInt32, m Map(String, String), a Array(String)) ENGINE = MergeTree ORDER BY n')
      const special = ["o'brien", 'back\\slash', "\\'", "'", '\\', 'a\tb', 'line\nbreak', 'cr\r', "{'x':'y'}", 'a,b:c]', 'ünïcødé €', '😀', '']
      const random = fc.sample(fc.string({ unit: 'grapheme', maxLength: 16 }), 200)
      const values = [...special, ...random]
      const rows = values.map((v, n) => ({ n, m: { [v]: v, k: `${v}|${n}` }, a: [v, `${n}`, v] }))
      await store.insertTsv('t', rows.map((r) => `${r.n}\t${tsvMap(r.m)}\t${tsvArray(r.a)}\n`).join(''))
      const text = await store.text('SELECT n, m, a FROM t ORDER BY n', 'JSONEachRow')
      const back = text.trim().split('\n').map((l) => JSON.parse(l) as { n: number; m: Record<string, string>; a: string[] })
      expect(back).toEqual(rows)
    }))
})

/** A `flushes` row (the commit) of `flush` naming `batches`, as TabSeparated. */
const commit = (flush: string, batches: string[]) =>
  `${flush}\t2026-10-01 00:00:00.000\t[${batches.map((b) => `'${b}'`).join(',')}]\t0\t0\t0\t0\t0\n`

describe('recover() on embedded ClickHouse', () => {
  const usage = (batch: string, id: string) => `csv:t\t${id}\t2026-10-01 00:00:00.000\tfw-1\t\t\tapi_calls\t1\t{}\t2026-10-01 00:00:00.000\t${batch}\n`
  const intent = (flush: string, batches: string[]) => `${flush}\t2026-10-01 00:00:00.000\t[${batches.map((b) => `'${b}'`).join(',')}]\n`
  const ids = async (store: Store) => (await store.rows<{ event_id: string }>('SELECT event_id FROM usage_events ORDER BY event_id')).map((r) => r.event_id)
  /** What a flush writes before its commit row (committed_batches), then the commit row, as the rater does. */
  const commitFlushes = async (store: Store, flushes: Array<[string, string[]]>) => {
    await store.insertTsv('committed_batches', flushes.map(([f, b]) => committedBatchLines(f, b)).join(''))
    await store.insertTsv('flushes', flushes.map(([f, b]) => commit(f, b)).join(''))
  }

  it('deletes the rows of a flush whose intent has no commit, keeps a batch a later flush committed, and clears the intent', () =>
    withStore(async (store) => {
      await store.migrate()
      // f1 committed b1. f2 wrote b2 and b3, and their committed_batches rows, and crashed before its commit row; b3
      // was then redelivered and committed by f3.
      await store.insertTsv('flush_intents', intent('f1', ['b1']) + intent('f2', ['b2', 'b3']) + intent('f3', ['b3']))
      await store.insertTsv('usage_events', usage('b1', 'e1') + usage('b2', 'e2') + usage('b3', 'e3'))
      await store.insertTsv('committed_batches', committedBatchLines('f2', ['b2', 'b3']))
      await commitFlushes(store, [['f1', ['b1']], ['f3', ['b3']]])
      expect(await store.recover()).toBe(1)
      expect(await ids(store)).toEqual(['e1', 'e3'])
      expect(await store.rows('SELECT flush_id FROM flush_intents ORDER BY flush_id')).toEqual([{ flush_id: 'f1' }, { flush_id: 'f3' }])
      // The torn flush's committed_batches rows went with it: b2 is not committed, b3 is (by f3).
      expect(await store.rows('SELECT batch_id, flush_id FROM committed_batches ORDER BY batch_id, flush_id')).toEqual([
        { batch_id: 'b1', flush_id: 'f1' },
        { batch_id: 'b3', flush_id: 'f3' },
      ])
      expect([...(await committedBatches(store, ['b1', 'b2', 'b3', 'b4']))].sort()).toEqual(['b1', 'b3'])
      // Nothing torn now: nothing to do.
      expect(await store.recover()).toBe(0)
      expect(await ids(store)).toEqual(['e1', 'e3'])
    }))

  // Intents of committed flushes used to be kept for good, and every start compared all of them with all flushes:
  // 1.1–1.5 s against 3,000,000 of each.
  it('prunes the intents of committed flushes to the newest once there are more than PRUNE_INTENTS, and still finds a torn flush after', () =>
    withStore(async (store) => {
      await store.migrate()
      const n = PRUNE_INTENTS + 5
      const at = (i: number) => `toDateTime64('2026-10-01 00:00:00', 3, 'UTC') + toIntervalSecond(${i})`
      await store.command(`INSERT INTO flush_intents SELECT concat('c-', toString(number)), ${at('number')}, [concat('cb-', toString(number))] FROM numbers(${n})`)
      await store.command(`INSERT INTO committed_batches SELECT concat('cb-', toString(number)), concat('c-', toString(number)) FROM numbers(${n})`)
      await store.command(`INSERT INTO flushes SELECT concat('c-', toString(number)), ${at('number')}, [concat('cb-', toString(number))], 0, 0, 0, 0, 0 FROM numbers(${n})`)
      await store.insertTsv('usage_events', usage(`cb-${n - 1}`, 'kept') + usage('cb-0', 'kept-0'))
      // One torn flush among them, with its row. It also names cb-0, which the oldest flush committed (a batch whose ack
      // was lost comes again): that batch's rows stay.
      await store.insertTsv('flush_intents', intent('t-1', ['tb-1', 'cb-0']))
      await store.insertTsv('usage_events', usage('tb-1', 'torn-1'))
      expect(await store.recover()).toBe(1)
      expect(await store.rows('SELECT flush_id FROM flush_intents')).toEqual([{ flush_id: `c-${n - 1}` }])
      expect(await ids(store)).toEqual(['kept', 'kept-0'])
      // Later: another torn flush, and a row of a batch no intent names (only a scan of every batch would find it). The
      // kept intent marks the store as one that writes intents, so the start reads intents, not every batch.
      await store.insertTsv('flush_intents', intent('t-2', ['tb-2']))
      await store.insertTsv('usage_events', usage('tb-2', 'torn-2') + usage('no-intent', 'stray'))
      expect(await store.recover()).toBe(1)
      expect(await ids(store)).toEqual(['kept', 'kept-0', 'stray'])
    }))

  it('scans every batch id of a store written before intents (no intent at all), and deletes what no flush committed', () =>
    withStore(async (store) => {
      await store.migrate()
      await store.insertTsv('usage_events', usage('b1', 'e1') + usage('b2', 'e2'))
      await store.insertTsv('flushes', commit('f1', ['b1']))
      expect(await store.recover()).toBe(1)
      expect(await ids(store)).toEqual(['e1'])
    }))
})

describe('committed_batches on embedded ClickHouse', () => {

  it('committedBatchLines writes one row per batch, any characters kept', () =>
    withStore(async (store) => {
      await store.migrate()
      const odd = ['tab\there', 'new\nline', "quo'te", 'back\\slash', 'ünï€']
      await store.insertTsv('committed_batches', committedBatchLines('f\t1', odd))
      expect([...(await committedBatches(store, [...odd, 'other']))].sort()).toEqual([...odd].sort())
      expect(await store.rows('SELECT DISTINCT flush_id FROM committed_batches')).toEqual([{ flush_id: 'f\t1' }])
    }))

  it('migrate() indexes the batches of flushes committed before the table existed, once', () =>
    withStore(async (store) => {
      await store.migrate()
      // A store as an older release left it: flushes, no committed_batches rows, no migration done.
      await store.insertTsv('flushes', commit('old-1', ['a', 'b']) + commit('old-2', ['c']) + commit('old-3', []))
      await store.command('TRUNCATE TABLE store_migrations')
      expect(await committedBatches(store, ['a', 'b', 'c', 'd'])).toEqual(new Set())
      await store.migrate()
      expect([...(await committedBatches(store, ['a', 'b', 'c', 'd']))].sort()).toEqual(['a', 'b', 'c'])
      expect(await store.rows('SELECT batch_id, flush_id FROM committed_batches ORDER BY batch_id')).toEqual([
        { batch_id: 'a', flush_id: 'old-1' },
        { batch_id: 'b', flush_id: 'old-1' },
        { batch_id: 'c', flush_id: 'old-2' },
      ])
      // Done once: a later start does not index `flushes` again (the rater writes each flush's rows itself).
      await store.insertTsv('flushes', commit('new-1', ['e']))
      await store.migrate()
      expect(await committedBatches(store, ['e'])).toEqual(new Set())
      expect(await store.rows('SELECT name FROM store_migrations')).toEqual([{ name: 'committed_batches' }])
    }))
})

describe('long lists of ids asked in parts', () => {
  it('paramChunks: runs of at most the bound, in order, every value once; a value past it alone', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 300 }), fc.integer({ min: 1, max: 200 }), (values, max) => {
        const runs = paramChunks(values, max)
        expect(runs.flat()).toEqual(values)
        for (const run of runs) {
          expect(run.length).toBeGreaterThan(0)
          const bytes = run.reduce((n, v) => n + Buffer.byteLength(v) + 3, 0)
          expect(run.length === 1 || bytes <= max).toBe(true)
        }
      }),
    )
  })

  it('committedBatches asks about 40,000 batch ids in parts of at most MAX_PARAM_BYTES, and answers all of them', () =>
    withStore(async (store) => {
      // A page of a source of small batches names this many (a 500,000-row page of 12-record syslog batches): asked in
      // one parameter of 1.9 MB, the engine took 23 s of CPU over it, and a start stalled all rating that long per page.
      const ids = Array.from({ length: 40_000 }, (_, i) => `syslog:edge:0123456789abcdef:${String(i).padStart(12, '0')}:17`)
      await store.migrate()
      await store.insertTsv('committed_batches', committedBatchLines('f1', ids.filter((_, i) => i % 3 !== 0)))
      const asked: number[] = []
      const rows = store.rows.bind(store)
      const spy: Store = Object.assign(Object.create(store) as Store, {
        rows: (sql: string, params?: Record<string, unknown>) => {
          asked.push(JSON.stringify(params?.batches ?? []).length)
          return rows(sql, params)
        },
      })
      const got = await committedBatches(spy, [...ids, 'not-a-batch'])
      expect(got.size).toBe(ids.length - Math.ceil(ids.length / 3))
      expect(got.has(ids[1]!) && !got.has(ids[0]!) && !got.has('not-a-batch')).toBe(true)
      expect(asked.length).toBeGreaterThan(1)
      for (const n of asked) expect(n).toBeLessThanOrEqual(MAX_PARAM_BYTES)
    }))
})
